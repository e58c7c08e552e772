// Checkpoints of a running comparison: the float64 sums, the counts, and what
// they were computed from, so that a killed run resumes where it stopped and
// gives the matrix an uninterrupted run gives. One JSON file, written
// atomically, with a SHA-256 over its contents; JSON keeps every float64
// exactly (numbers print as the shortest text that reads back the same).
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';

import { writeFileAtomic } from '../util/atomic-file';
import type { NativeCKA, NativeRow, NativeState } from '../native/binding';
import { Dataset } from '../data/dataset';
import { NpzDataset, type NpzInput } from '../data/npz';
import { describe, ErrorCodes, invalidArgType, invalidArgValue, makeError } from '../util/errors';
import type { Model } from '../model/model';

const FORMAT = 'torch-cka-checkpoint';
const VERSION = 1;

export interface CheckpointOptions {
  /** The checkpoint file. If it exists, compare() resumes from it; it is rewritten as the run goes. */
  path: string;
  /** Write after every this many batches (default 10), and when compare() ends, however it ends. */
  every?: number;
  /**
   * Names the data for sources that are not torch-cka Datasets (whose files and
   * options are recorded by themselves): a resumed run must give the same key.
   */
  key?: string;
}

/** @internal What a checkpoint's sums were computed from; all of it must match to resume. */
export interface CheckpointIdentity {
  model1: ModelIdentity;
  model2: ModelIdentity;
  layers1: string[];
  layers2: string[];
  precision: string;
  skipNonFinite: boolean;
  /** The layers whose feature view is not flatten (absent when none). */
  views1?: Record<string, string>;
  views2?: Record<string, string>;
  /** The measures, threshold and user σ when not the default `['cka']`. */
  measures?: unknown;
  data1: DataIdentity | null;
  data2: DataIdentity | null | 'same';
  key: string | null;
}

interface ModelIdentity {
  file: string;
  bytes: number;
  sha256: string;
}

type DataIdentity = Record<string, string | number | boolean | number[] | string[]>;

interface SavedState {
  rows1: NativeRow[];
  rows2: NativeRow[];
  xy: number[];
  xx: number[];
  yy: number[];
  /** RBF σ per row (null: undefined); absent without rbf_cka. */
  sigma1?: Array<number | null>;
  sigma2?: Array<number | null>;
  steps: number;
  batches: number;
  samples: number;
  skipped: number;
}

interface CheckpointBody {
  identity: CheckpointIdentity;
  /** Batches of the sources used so far: compared or skipped. A resumed run starts after them. */
  position: number;
  state: SavedState;
}

/** @internal A checkpoint read back and checked. */
export interface Checkpoint {
  identity: CheckpointIdentity;
  position: number;
  state: NativeState;
}

/** @internal */
export function checkpointOptions(value: unknown): Required<Omit<CheckpointOptions, 'key'>> & { key: string | null } {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalidArgType(
      `Expected an object { path, every?, key? } for options.checkpoint but received ${describe(value)}`,
    );
  }
  const { path: file, every, key } = value as Record<string, unknown>;
  if (typeof file !== 'string' || file.length === 0) {
    throw invalidArgType(`Expected a file path for options.checkpoint.path but received ${describe(file)}`);
  }
  if (every !== undefined && (typeof every !== 'number' || !Number.isInteger(every) || every < 1)) {
    throw invalidArgValue(`Expected a positive integer for options.checkpoint.every but received ${describe(every)}`);
  }
  if (key !== undefined && typeof key !== 'string') {
    throw invalidArgType(`Expected a string for options.checkpoint.key but received ${describe(key)}`);
  }
  return { path: file, every: every ?? 10, key: key ?? null };
}

const hashCache = new Map<string, { mtimeMs: number; size: number; sha256: string }>();

async function modelIdentity(model: Model): Promise<ModelIdentity> {
  const file = path.resolve(model.path);
  const info = await stat(file);
  const cached = hashCache.get(file);
  if (cached && cached.mtimeMs === info.mtimeMs && cached.size === info.size) {
    return { file: path.basename(file), bytes: info.size, sha256: cached.sha256 };
  }
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  const sha256 = hash.digest('hex');
  hashCache.set(file, { mtimeMs: info.mtimeMs, size: info.size, sha256 });
  return { file: path.basename(file), bytes: info.size, sha256 };
}

function dataIdentity(source: unknown): DataIdentity | null {
  if (!(source instanceof Dataset)) return null;
  // An .npz data set: which arrays feed the model, in which order (the
  // sampleShape and dtype below are the first one's).
  const inputs: DataIdentity = source instanceof NpzDataset ? { inputs: source.inputs.map(npzInput) } : {};
  return {
    ...inputs,
    path: path.resolve(source.path),
    format: source.format,
    samples: source.length,
    batchSize: source.batchSize,
    shuffle: source.shuffle,
    seed: source.seed,
    dropLast: source.dropLast,
    sampleShape: [...source.sampleShape],
    dtype: source.dtype,
  };
}

const npzInput = (input: NpzInput): string => `${input.name} ${input.dtype} [${input.sampleShape.join(', ')}]`;

/** @internal */
export async function checkpointIdentity(
  models: [Model, Model],
  settings: Pick<
    CheckpointIdentity,
    'layers1' | 'layers2' | 'precision' | 'skipNonFinite' | 'views1' | 'views2' | 'measures'
  >,
  data1: unknown,
  data2: unknown,
  key: string | null,
): Promise<CheckpointIdentity> {
  const [model1, model2] = await Promise.all([modelIdentity(models[0]), modelIdentity(models[1])]);
  return {
    model1,
    model2,
    ...settings,
    data1: dataIdentity(data1),
    data2: data2 === undefined ? 'same' : dataIdentity(data2),
    key,
  };
}

const stable = (value: unknown): string => JSON.stringify(value);

function describeValue(value: unknown): string {
  if (value === undefined) return "the default (measures ['cka'])";
  if (value !== null && typeof value === 'object' && 'sha256' in value) {
    const model = value as ModelIdentity;
    return `${model.file} (${model.bytes} bytes, sha256 ${model.sha256.slice(0, 12)}…)`;
  }
  const text = (stable(value) as string | undefined) ?? 'none'; // an absent setting (views1: all flatten)
  return text.length > 120 ? `${text.slice(0, 120)}…` : text;
}

/** @internal Refuses a checkpoint made from anything other than `current`, naming the first difference. */
export function assertSameIdentity(saved: CheckpointIdentity, current: CheckpointIdentity, file: string): void {
  const labels: Record<keyof CheckpointIdentity, string> = {
    model1: 'model 1',
    model2: 'model 2',
    layers1: "model 1's layers",
    layers2: "model 2's layers",
    precision: 'precision',
    skipNonFinite: 'skipNonFinite',
    views1: "model 1's views",
    views2: "model 2's views",
    measures: 'measures',
    data1: 'data 1',
    data2: 'data 2',
    key: 'checkpoint key',
  };
  for (const field of Object.keys(labels) as Array<keyof CheckpointIdentity>) {
    if (stable(saved[field]) === stable(current[field])) continue;
    let label = labels[field];
    let [was, is] = [saved[field] as unknown, current[field] as unknown];
    const plain = (value: unknown): value is Record<string, unknown> =>
      value !== null && typeof value === 'object' && !Array.isArray(value) && !('sha256' in value);
    if (plain(was) && plain(is)) {
      // Name the first part that differs: "data 1's seed 5, but ... 6".
      const [wasObject, isObject] = [was, is];
      const key = [...new Set([...Object.keys(wasObject), ...Object.keys(isObject)])].find(
        (k) => stable(wasObject[k]) !== stable(isObject[k]),
      );
      if (key !== undefined) [label, was, is] = [`${label}'s ${key}`, wasObject[key], isObject[key]];
    }
    throw makeError(
      Error,
      ErrorCodes.CHECKPOINT_MISMATCH,
      `Checkpoint '${file}' was made with ${label} ${describeValue(was)}, but this comparison has ` +
        `${describeValue(is)}; resume with the same models, layers, data and settings, or delete the ` +
        'checkpoint to start over',
    );
  }
}

function damaged(file: string, why: string): Error {
  return makeError(
    Error,
    ErrorCodes.CHECKPOINT_FORMAT,
    `Checkpoint '${file}' ${why}; delete it to start over (torch-cka writes checkpoints atomically, so a checkpoint ` +
      'it wrote is whole)',
  );
}

const isCount = (value: unknown): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
const isNumbers = (value: unknown): value is number[] =>
  Array.isArray(value) && value.every((item) => typeof item === 'number' && Number.isFinite(item));
const isRows = (value: unknown): value is NativeRow[] =>
  Array.isArray(value) &&
  value.every(
    (row) => Array.isArray(row) && row.length === 3 && isCount(row[0]) && isCount(row[1]) && typeof row[2] === 'string',
  );

/** @internal The checkpoint at `file`, or null if there is none. */
export async function readCheckpoint(file: string): Promise<Checkpoint | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw makeError(
      Error,
      ErrorCodes.CHECKPOINT_FORMAT,
      `Checkpoint '${file}' cannot be read: ${(error as Error).message}`,
    );
  }
  let parsed: { format?: unknown; version?: unknown; sha256?: unknown; body?: unknown };
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    throw damaged(file, 'is not JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || parsed.format !== FORMAT) {
    throw damaged(file, 'is not a torch-cka checkpoint');
  }
  if (parsed.version !== VERSION) {
    throw damaged(file, `has checkpoint version ${describe(parsed.version)}; this torch-cka reads version ${VERSION}`);
  }
  const body = parsed.body as CheckpointBody | undefined;
  const sha256 = createHash('sha256').update(stable(body)).digest('hex');
  if (sha256 !== parsed.sha256) throw damaged(file, 'does not match its checksum (it was changed or damaged)');
  const state = body?.state;
  if (
    !body ||
    !isCount(body.position) ||
    !state ||
    !isRows(state.rows1) ||
    !isRows(state.rows2) ||
    !isNumbers(state.xy) ||
    !isNumbers(state.xx) ||
    !isNumbers(state.yy) ||
    ![state.steps, state.batches, state.samples, state.skipped].every(isCount)
  ) {
    throw damaged(file, 'is incomplete');
  }
  return {
    identity: body.identity,
    position: body.position,
    state: {
      rows1: state.rows1,
      rows2: state.rows2,
      xy: Float64Array.from(state.xy),
      xx: Float64Array.from(state.xx),
      yy: Float64Array.from(state.yy),
      ...(state.sigma1 && state.sigma2
        ? {
            sigma1: Float64Array.from(state.sigma1, (v) => v ?? Number.NaN),
            sigma2: Float64Array.from(state.sigma2, (v) => v ?? Number.NaN),
          }
        : {}),
      steps: state.steps,
      batches: state.batches,
      samples: state.samples,
      skipped: state.skipped,
    },
  };
}

/** @internal */
export async function writeCheckpoint(
  file: string,
  identity: CheckpointIdentity,
  position: number,
  state: NativeState,
): Promise<void> {
  const body: CheckpointBody = {
    identity,
    position,
    state: {
      rows1: state.rows1,
      rows2: state.rows2,
      xy: Array.from(state.xy),
      xx: Array.from(state.xx),
      yy: Array.from(state.yy),
      ...(state.sigma1?.length || state.sigma2?.length
        ? {
            sigma1: Array.from(state.sigma1 ?? [], (v) => (Number.isNaN(v) ? null : v)),
            sigma2: Array.from(state.sigma2 ?? [], (v) => (Number.isNaN(v) ? null : v)),
          }
        : {}),
      steps: state.steps,
      batches: state.batches,
      samples: state.samples,
      skipped: state.skipped,
    },
  };
  const sha256 = createHash('sha256').update(stable(body)).digest('hex');
  await writeFileAtomic(
    file,
    stable({ format: FORMAT, version: VERSION, written: new Date().toISOString(), sha256, body }),
  );
}

/**
 * Writes checkpoints in the background, one at a time: the state is copied
 * between batches (the copy is small: the float64 sums), the write overlaps
 * the next batch.
 */
export class CheckpointSaver {
  private since = 0;
  private position: number;
  private writing: Promise<void> = Promise.resolve();
  private failure: unknown;

  constructor(
    private readonly native: NativeCKA,
    private readonly file: string,
    private readonly identity: CheckpointIdentity,
    private readonly every: number,
    position: number,
  ) {
    this.position = position;
  }

  /** After the batches of one native call were added or skipped: `position` counts the batches used, `batches` those of the call. */
  committed(position: number, batches = 1): void {
    if (batches === 0) return;
    this.position = position;
    this.since += batches;
    if (this.failure) throw this.failure;
    if (this.since >= this.every) this.save();
  }

  /** Writes what is there now (if anything was compared) and waits for every write. */
  async final(): Promise<void> {
    if (this.since > 0) this.save();
    await this.writing;
    if (this.failure) throw this.failure;
  }

  private save(): void {
    this.since = 0;
    let state;
    try {
      state = this.native.state();
    } catch {
      return; // nothing compared yet
    }
    const position = this.position;
    this.writing = this.writing.then(() =>
      writeCheckpoint(this.file, this.identity, position, state).catch((error: unknown) => {
        this.failure ??= error;
      }),
    );
  }
}

/**
 * The file and identity of one rank's checkpoint in a distributed run: each
 * rank keeps its own share's, named `<path>.rank<r>-of-<W>`.
 */
export function rankCheckpoint(
  file: string,
  identity: CheckpointIdentity,
  rank: number,
  worldSize: number,
): { file: string; identity: CheckpointIdentity } {
  return {
    file: `${file}.rank${rank}-of-${worldSize}`,
    identity: { ...identity, key: [identity.key, `rank ${rank} of ${worldSize}`].filter(Boolean).join(' · ') },
  };
}
