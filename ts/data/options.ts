// Options of the data readers, their checks and the shared sample transforms.
import { describe, invalidArgType, invalidArgValue } from '../util/errors';
import { optionalBoolean, optionalInteger, optionalObject } from '../util/is';

/** Options every reader takes. */
export interface DataOptions {
  /** Samples per batch; default 64. */
  batchSize?: number;
  /** Keep at most this many samples (after shuffling, so a shuffled limit is a random subset). */
  limit?: number;
  /** Visit the samples in a seeded random order; default false. */
  shuffle?: boolean;
  /** Seed of the shuffle (a non-negative integer); default 0. The same seed gives the same order. */
  seed?: number;
  /** Leave out a last batch that has fewer than batchSize samples; default false. */
  dropLast?: boolean;
}

/** Per-channel mean and standard deviation, applied as (x - mean) / std after scaling to [0, 1]. */
export interface MeanStd {
  readonly mean: readonly number[];
  readonly std: readonly number[];
}

/**
 * `'imagenet'`, `'cifar10'` and `'mnist'` are the usual statistics of those
 * data sets; a one-value mean/std applies to every channel.
 */
export type NormalizeOption = 'none' | 'imagenet' | 'cifar10' | 'mnist' | MeanStd;

export const NORMALIZE_PRESETS: Readonly<Record<'imagenet' | 'cifar10' | 'mnist', MeanStd>> = {
  imagenet: { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
  cifar10: { mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616] },
  mnist: { mean: [0.1307], std: [0.3081] },
};

export type NpyOptions = DataOptions;

/** Options of {@link readNpz}. */
export interface NpzOptions extends DataOptions {
  /**
   * The arrays to read, in the order of each batch's tensors (the model's
   * inputs), by name with or without `.npy` (`['input_ids', 'attention_mask']`);
   * default: every array, in the archive's order. Other formats ignore it.
   */
  inputs?: readonly string[];
}

export interface Cifar10Options extends DataOptions {
  /** For a folder: `'train'` (data_batch_N.bin), `'test'` (test_batch.bin) or `'all'` (default, train then test). */
  split?: 'train' | 'test' | 'all';
  normalize?: NormalizeOption;
}

export interface IdxOptions extends DataOptions {
  normalize?: NormalizeOption;
}

/** A size: one number, or `[height, width]`. */
export type SizeOption = number | readonly [number, number];

export interface ImageFolderOptions extends DataOptions {
  /** A number scales the shorter side to it, keeping the aspect ratio (torchvision `Resize(int)`); `[h, w]` is exact. */
  resize?: SizeOption;
  /** Cuts the centre `[h, w]` (a number: a square) after resizing; pads with black when the image is smaller. */
  centerCrop?: SizeOption;
  normalize?: NormalizeOption;
  /** 3 (default; grey images are repeated to RGB) or 1 (grey). Alpha is dropped. */
  channels?: 1 | 3;
}

/** What {@link openDataset} takes: every reader's options. Those that do not apply to the format found are ignored. */
export interface OpenDatasetOptions extends Cifar10Options, ImageFolderOptions, NpzOptions {}

/** @internal */
export interface ResolvedDataOptions {
  batchSize: number;
  limit: number | undefined;
  shuffle: boolean;
  seed: number;
  dropLast: boolean;
}

/** @internal Checks the options every reader takes; returns them with defaults, and the options object. */
export function resolveDataOptions(options: unknown): { opts: Record<string, unknown>; data: ResolvedDataOptions } {
  const opts = optionalObject(options, 'options');
  const data: ResolvedDataOptions = {
    batchSize: optionalInteger(opts.batchSize, 'options.batchSize', 1) ?? 64,
    limit: optionalInteger(opts.limit, 'options.limit', 1),
    shuffle: optionalBoolean(opts.shuffle, 'options.shuffle') ?? false,
    seed: optionalInteger(opts.seed, 'options.seed', 0) ?? 0,
    dropLast: optionalBoolean(opts.dropLast, 'options.dropLast') ?? false,
  };
  for (const key of ['batchSize', 'limit', 'seed'] as const) {
    const value = data[key];
    if (value !== undefined && !Number.isSafeInteger(value)) {
      throw invalidArgValue(`Expected a safe integer for options.${key} but received ${value}`);
    }
  }
  return { opts, data };
}

const isPositiveInteger = (value: unknown): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value) && value > 0;

/** @internal A positive integer or a [height, width] pair of them, or undefined. */
export function optionalSize(value: unknown, name: string): SizeOption | undefined {
  if (value === undefined) return undefined;
  if (isPositiveInteger(value)) return value;
  if (Array.isArray(value) && value.length === 2 && value.every(isPositiveInteger)) {
    return [value[0] as number, value[1] as number];
  }
  const message = `Expected a positive integer or [height, width] of positive integers for ${name} but received ${describe(value)}`;
  throw typeof value === 'number' || Array.isArray(value) ? invalidArgValue(message) : invalidArgType(message);
}

/** @internal 1 or 3, or undefined. */
export function optionalChannels(value: unknown, name: string): 1 | 3 | undefined {
  if (value === undefined || value === 1 || value === 3) return value;
  const message = `Expected 1 or 3 for ${name} but received ${describe(value)}`;
  throw typeof value === 'number' ? invalidArgValue(message) : invalidArgType(message);
}

/** @internal Checks a normalize option's form; {@link channelStats} checks it against the channels. */
export function optionalNormalize(value: unknown, name: string): NormalizeOption | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string') {
    if (value === 'none' || value in NORMALIZE_PRESETS) return value as NormalizeOption;
    throw invalidArgValue(
      `Expected 'none', 'imagenet', 'cifar10', 'mnist' or { mean, std } for ${name} but received ${describe(value)}`,
    );
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalidArgType(
      `Expected 'none', 'imagenet', 'cifar10', 'mnist' or { mean, std } for ${name} but received ${describe(value)}`,
    );
  }
  const { mean, std } = value as { mean?: unknown; std?: unknown };
  const numbers = (list: unknown, field: string, positive: boolean): number[] => {
    const ok =
      Array.isArray(list) &&
      list.length > 0 &&
      list.every((v) => typeof v === 'number' && Number.isFinite(v) && (!positive || v > 0));
    if (!ok) {
      const what = positive ? 'positive finite numbers' : 'finite numbers';
      throw invalidArgType(`Expected a non-empty array of ${what} for ${name}.${field} but received ${describe(list)}`);
    }
    return [...(list as number[])];
  };
  const m = numbers(mean, 'mean', false);
  const s = numbers(std, 'std', true);
  if (m.length !== s.length) {
    throw invalidArgValue(
      `Expected ${name}.mean and ${name}.std to have the same length but received ${m.length} and ${s.length}`,
    );
  }
  return { mean: m, std: s };
}

/** @internal Per-channel statistics for `channels` channels, or null for no normalisation. */
export function channelStats(
  option: NormalizeOption | undefined,
  channels: number,
  name: string,
): { mean: Float64Array; std: Float64Array } | null {
  if (option === undefined || option === 'none') return null;
  const stats = typeof option === 'string' ? NORMALIZE_PRESETS[option] : option;
  const label = typeof option === 'string' ? `'${option}'` : `{ mean, std }`;
  if (stats.mean.length !== 1 && stats.mean.length !== channels) {
    const wanted = channels === 1 ? '1 value' : `1 or ${channels} values`;
    const data = `${channels} channel${channels === 1 ? '' : 's'}`;
    throw invalidArgValue(
      `Expected ${name} to have ${wanted} per statistic for data with ${data} but received ${label} with ${stats.mean.length}`,
    );
  }
  const pick = (list: readonly number[]): Float64Array =>
    Float64Array.from({ length: channels }, (_, c) => list[list.length === 1 ? 0 : c] as number);
  return { mean: pick(stats.mean), std: pick(stats.std) };
}

/** @internal Applies (x - mean[c]) / std[c] in place to `samples` samples of `channels` planes of `plane` values. */
export function normalizeInPlace(
  data: Float32Array,
  samples: number,
  channels: number,
  plane: number,
  stats: { mean: Float64Array; std: Float64Array } | null,
): void {
  if (stats === null) return;
  for (let s = 0; s < samples; s += 1) {
    for (let c = 0; c < channels; c += 1) {
      const mean = stats.mean[c] as number;
      const std = stats.std[c] as number;
      const start = (s * channels + c) * plane;
      for (let i = start; i < start + plane; i += 1) data[i] = ((data[i] as number) - mean) / std;
    }
  }
}

/** @internal mulberry32: a small seeded uniform generator in [0, 1). */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** @internal A seeded random permutation of 0..n-1 (Fisher–Yates). */
export function shuffledIndices(n: number, seed: number): Uint32Array {
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i += 1) order[i] = i;
  // Fold the high bits of seeds above 2^32 in, so that they still matter.
  const random = mulberry32((seed % 4294967296) ^ Math.floor(seed / 4294967296));
  for (let i = n - 1; i > 0; i -= 1) {
    const j = Math.floor(random() * (i + 1));
    const t = order[i] as number;
    order[i] = order[j] as number;
    order[j] = t;
  }
  return order;
}
