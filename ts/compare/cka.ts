import {
  binding,
  type NativeCka,
  type NativeLeftOut,
  type NativeState,
  type NativeStats,
  type NativeStep,
} from '../native/binding';
import {
  assertSameIdentity,
  type Checkpoint,
  type CheckpointIdentity,
  checkpointIdentity,
  type CheckpointOptions,
  checkpointOptions,
  readCheckpoint,
  writeCheckpoint,
} from './checkpoint';
import { Dataset } from '../data/dataset';
import {
  type DistributedInfo,
  type DistributedOptions,
  DistributedRun,
  type DistributedTimings,
  type JobProgress,
  resolveDistributed,
  strided,
} from './distributed';
import { describe, ErrorCodes, invalidArgType, makeError } from '../util/errors';
import {
  optionalBoolean,
  optionalFunction,
  optionalInteger,
  optionalObject,
  optionalOneOf,
  optionalString,
  optionalStringArray,
} from '../util/is';
import { expandLayerPatterns } from '../model/layer-patterns';
import { type Model, requireModel } from '../model/model';
import { type Batch, toNativeBatch } from '../model/tensor';

export interface CKAOptions {
  /** Defaults to the model's name (its file's base name). */
  model1Name?: string;
  model2Name?: string;
  /**
   * Layers of model 1, in the row order wanted; default: every submodule that
   * runs. Entries may be glob patterns (`layer1.*`, `layer*.?.relu`, `**.conv1`):
   * `*` stays within one dotted segment, `**` crosses them; matches come in
   * definition order.
   */
  model1Layers?: readonly string[];
  model2Layers?: readonly string[];
  dataset1Name?: string;
  dataset2Name?: string;
  /**
   * Precision of the all-pairs HSIC products. `float64` (default) adds no
   * error to that of the float32 Gram matrices; `float32` is faster for many
   * layers and large batches. The sums are kept in float64 either way.
   */
  precision?: 'float64' | 'float32';
  /**
   * Intra-op threads for each model's work: libtorch's (OpenMP) and the
   * BLAS's own pool (OpenBLAS keeps one apart from libtorch's). Default:
   * libtorch's current setting, `runtimeInfo().threads` (`OMP_NUM_THREADS`).
   */
  threads?: number;
  /**
   * Run model 1 and model 2 at once, each on its own thread (on a GPU, its
   * own CUDA stream), each with `threads` threads. Default: on a GPU, and on
   * a CPU with at least 2 x `threads` cores.
   */
  concurrent?: boolean;
  /**
   * A batch with NaN or Inf in a layer's output: `false` (default) fails
   * compare() with ERR_NON_FINITE naming the layer and batch; `true` skips the
   * batch (it adds nothing) with a TORCH_CKA_SKIPPED_BATCH warning.
   */
  skipNonFinite?: boolean;
  /** Receives warnings; default: `process.emitWarning`. */
  onWarning?: (warning: CkaWarning) => void;
}

export interface CkaWarning {
  code:
    | 'TORCH_CKA_SKIPPED_BATCH'
    | 'TORCH_CKA_LAYER_LEFT_OUT'
    | 'TORCH_CKA_CONSTANT_LAYER'
    | 'TORCH_CKA_SAME_NAMES'
    | 'TORCH_CKA_UNEVEN_DATA';
  message: string;
  /** TORCH_CKA_LAYER_LEFT_OUT (one warning per model): the model whose layers were left out. */
  model?: 'model1' | 'model2';
  /**
   * TORCH_CKA_LAYER_LEFT_OUT: every layer left out, in definition order, each
   * with why (e.g. `it did not run during batch 0`); the message only counts
   * them and names them compactly.
   */
  layers?: LeftOutLayer[];
}

export interface CompareProgress {
  /** Batches compared so far in this call (skipped ones not included). */
  batches: number;
  /** Samples compared so far in this call. */
  samples: number;
  /** Batches skipped so far in this call: fewer than 4 samples, or NaN/Inf with `skipNonFinite`. */
  skipped: number;
  /**
   * Batches of the sources used so far, compared or skipped, counting those
   * restored from a checkpoint. In a distributed run: the index in the whole
   * stream of the next batch this rank would take.
   */
  position: number;
  /**
   * In a distributed run: where this rank sits, and on rank 0 the whole job's
   * progress (summed from the ranks' heartbeats).
   */
  distributed?: { rank: number; worldSize: number; job?: JobProgress };
}

export interface CompareOptions {
  onProgress?: (progress: CompareProgress) => void;
  /**
   * Stops compare(), which rejects with an AbortError. A batch running when
   * the signal fires adds nothing: the sums stay as they were after the last
   * completed batch, and the object stays usable.
   */
  signal?: AbortSignal;
  /**
   * Saves the sums to a file as the run goes, and resumes from it: if the
   * file exists, its batches are restored and that many batches of the
   * sources are passed over (torch-cka Datasets are not even read there).
   * Needs a CKA object that has compared nothing yet; the file must come from
   * the same models, layers, data and settings.
   */
  checkpoint?: CheckpointOptions;
  /**
   * Shares the batches among processes (and hosts) with PyTorch's c10d: rank
   * r takes batches r, r + W, r + 2W, ... of the sources, and at the end the
   * sums of all ranks are added with one all-reduce, so that every rank holds
   * the whole matrix. `true` reads torchrun's RANK, WORLD_SIZE, LOCAL_RANK,
   * MASTER_ADDR and MASTER_PORT (as `torch-cka launch` sets them); an object
   * gives them (or some of them, the rest from the environment). Every rank
   * must compare the same models, layers, data and settings.
   */
  distributed?: boolean | DistributedOptions;
}

export interface CompareSummary extends CompareProgress {
  /** Which stream ran out first when the two differ in length, else null. */
  stoppedEarly: 'data1' | 'data2' | null;
  /** Batches restored from the checkpoint (compared in an earlier run), else 0. */
  resumed: number;
  /**
   * In a distributed run: `batches`, `samples` and `skipped` above are the
   * whole job's; this rank's own share and timings are here.
   */
  distributed?: {
    rank: number;
    worldSize: number;
    backend: string;
    local: { batches: number; samples: number; skipped: number };
    /** Milliseconds. */
    timings: DistributedTimings;
  };
}

/** The result of {@link CKA.export}; the same shape as torch_cka's export(). */
export interface CKAResult {
  model1Name: string;
  model2Name: string;
  /** Row names: model 1's layers, with `#k` for the k-th call of a module run several times. */
  model1Layers: string[];
  /** Column names: model 2's layers. */
  model2Layers: string[];
  dataset1Name: string;
  dataset2Name: string;
  /** Minibatch CKA, rows = model1Layers; null where a layer does not vary over the data. */
  cka: Array<Array<number | null>>;
  /** Samples compared (skipped batches not included). */
  samples: number;
  /** Batches compared. */
  batches: number;
}

/** What a comparison holds and did; see {@link CKA.stats}. */
export type CKAStats = NativeStats;

export type DataSource = Iterable<Batch> | AsyncIterable<Batch>;

function iterableMethod(data: unknown, what: string): () => AsyncIterator<Batch> | Iterator<Batch> {
  if (data !== null && typeof data === 'object') {
    const source = data as Partial<AsyncIterable<Batch> & Iterable<Batch>>;
    const asyncIterator = source[Symbol.asyncIterator];
    if (typeof asyncIterator === 'function') return () => asyncIterator.call(source);
    const iterator = source[Symbol.iterator];
    if (typeof iterator === 'function' && !ArrayBuffer.isView(source)) return () => iterator.call(source);
  }
  throw invalidArgType(`Expected ${what} to be an Iterable or AsyncIterable of batches but received ${describe(data)}`);
}

const iteratorOf = (data: unknown, what: string): AsyncIterator<Batch> | Iterator<Batch> =>
  iterableMethod(data, what)();

function abortError(signal: AbortSignal): Error {
  const error = makeError(Error, ErrorCodes.ABORTED, 'compare() was aborted');
  error.name = 'AbortError';
  (error as Error & { cause?: unknown }).cause = signal.reason;
  return error;
}

/** A layer list with its glob patterns expanded against the model's submodules. */
function layerList(model: Model, value: unknown, name: string): string[] {
  const entries = optionalStringArray(value, name);
  if (entries?.length === 0) {
    throw makeError(
      RangeError,
      ErrorCodes.NO_LAYERS,
      `${name} is an empty list: name at least one layer of model '${model.name}', or leave it out to compare every layer`,
    );
  }
  return expandLayerPatterns(entries ?? [], model.native.layers(), `model '${model.name}' (${model.path})`);
}

/**
 * Iterators over the sources, past the first `skip` batches of each; with a
 * `stride` above 1, over every stride-th batch from `first` (>= skip) on.
 */
async function resumedIterators(
  data1: unknown,
  data2: unknown,
  skip: number,
  first = skip,
  stride = 1,
): Promise<[AsyncIterator<Batch> | Iterator<Batch>, AsyncIterator<Batch> | Iterator<Batch> | undefined]> {
  const open = async (data: unknown, what: string): Promise<AsyncIterator<Batch> | Iterator<Batch>> => {
    if ((first > 0 || stride > 1) && data instanceof Dataset) {
      return data.batches(first, stride)[Symbol.asyncIterator]();
    }
    const iterator = iteratorOf(data, what);
    for (let i = 0; i < skip; i += 1) {
      const item = await iterator.next();
      if (item.done) {
        throw makeError(
          Error,
          ErrorCodes.CHECKPOINT_MISMATCH,
          `The checkpoint has used ${skip} batches of ${what}, but ${what} has only ${i}; resume with the same data`,
        );
      }
    }
    return first > skip || stride > 1 ? strided(iterator, first - skip, stride) : iterator;
  };
  return [await open(data1, 'data1'), data2 === undefined ? undefined : await open(data2, 'data2')];
}

function defaultConcurrent(model: Model, threads: number | undefined): boolean {
  if (!model.device.startsWith('cpu')) return true;
  const info = binding().runtimeInfo();
  return info.cores >= 2 * (threads ?? info.threads);
}

/**
 * Writes checkpoints in the background, one at a time: the state is copied
 * between batches (the copy is small: the float64 sums), the write overlaps
 * the next batch.
 */
class CheckpointSaver {
  private since = 0;
  private position: number;
  private writing: Promise<void> = Promise.resolve();
  private failure: unknown;

  constructor(
    private readonly native: NativeCka,
    private readonly file: string,
    private readonly identity: CheckpointIdentity,
    private readonly every: number,
    position: number,
  ) {
    this.position = position;
  }

  /** After each batch compared or skipped; `position` counts the batches used. */
  committed(position: number): void {
    this.position = position;
    this.since += 1;
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
 * Comparisons with a batch in native code. When the process exits (Node waits
 * for running native work), they are cancelled so that it stops at the next
 * layer instead of finishing the batch.
 */
const inFlight = new Set<NativeCka>();
let exitHookInstalled = false;
function track(native: NativeCka): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const running of inFlight) running.cancel();
    });
  }
  inFlight.add(native);
}

/** Names or patterns shown in a TORCH_CKA_LAYER_LEFT_OUT message; the other layers are counted ("and N more"). */
const LEFT_OUT_SHOWN = 12;

/** A layer left out of a default selection, as the warning's `layers` lists it. */
export interface LeftOutLayer {
  /** The module's dotted path. */
  name: string;
  /** The error naming it would give: ERR_LAYER_NOT_RUN, ERR_NO_TENSOR_OUTPUT or ERR_LAYER_SHAPE. */
  code: NativeLeftOut['code'];
  /** Why, e.g. `it did not run during batch 0`. */
  reason: string;
}

/** The heading of a group of left-out layers in the message. */
function reasonGroup(layer: LeftOutLayer): string {
  switch (layer.code) {
    case 'ERR_LAYER_NOT_RUN':
      return layer.reason.replace(/^it /, '');
    case 'ERR_NO_TENSOR_OUTPUT':
      return 'output holds no tensor';
    case 'ERR_LAYER_SHAPE':
      return 'output has no batch dimension';
    default:
      return layer.reason;
  }
}

/**
 * Layer names, compactly: names differing only in numeric segments become one
 * pattern with a count (`encoder.layers.*.linear1 (2)`), and consecutive ones
 * under one parent share it (`encoder.layers.*.{linear1,linear2}`). Shows at
 * most `budget` names or patterns; returns how many layers it left unnamed.
 */
function compactNames(names: readonly string[], budget: number): { text: string; items: number; hidden: number } {
  const patterns = new Map<string, string[]>();
  for (const name of names) {
    const key = name
      .split('.')
      .map((segment) => (/^\d+$/.test(segment) ? '*' : segment))
      .join('.');
    const same = patterns.get(key);
    if (same) same.push(name);
    else patterns.set(key, [name]);
  }
  const runs: Array<{ prefix: string[]; members: Array<{ suffix: string; count: number }> }> = [];
  for (const [key, matching] of patterns) {
    const count = matching.length;
    const segments = (count > 1 ? key : (matching[0] as string)).split('.');
    const last = runs[runs.length - 1];
    if (
      last &&
      last.prefix.length > 0 &&
      segments.length > last.prefix.length &&
      last.prefix.every((segment, i) => segments[i] === segment)
    ) {
      last.members.push({ suffix: segments.slice(last.prefix.length).join('.'), count });
    } else {
      runs.push({
        prefix: segments.slice(0, -1),
        members: [{ suffix: segments[segments.length - 1] as string, count }],
      });
    }
  }
  const parts: string[] = [];
  const most = Math.max(1, budget);
  let left = most;
  let hidden = 0;
  for (const run of runs) {
    const shown = run.members.slice(0, left);
    left -= shown.length;
    for (const member of run.members.slice(shown.length)) hidden += member.count;
    if (shown.length === 0) continue;
    const head = run.prefix.length > 0 ? `${run.prefix.join('.')}.` : '';
    const counts = new Set(shown.map((member) => member.count));
    const times = (count: number): string => (count > 1 ? ` (${count})` : '');
    if (shown.length === 1) {
      const only = shown[0] as { suffix: string; count: number };
      parts.push(`${head}${only.suffix}${times(only.count)}`);
    } else if (counts.size === 1) {
      const count = shown[0]?.count ?? 1;
      parts.push(`${head}{${shown.map((m) => m.suffix).join(',')}}${count > 1 ? ` (${count} each)` : ''}`);
    } else {
      parts.push(`${head}{${shown.map((m) => `${m.suffix}${times(m.count)}`).join(',')}}`);
    }
  }
  return { text: parts.join(', '), items: most - left, hidden };
}

/**
 * The one TORCH_CKA_LAYER_LEFT_OUT message for a model: how many layers, and
 * per reason their names, compactly, at most LEFT_OUT_SHOWN of them.
 */
function leftOutMessage(label: string, layers: readonly LeftOutLayer[]): string {
  const groups = new Map<string, string[]>();
  for (const layer of layers) {
    const group = reasonGroup(layer);
    const names = groups.get(group);
    if (names) names.push(layer.name);
    else groups.set(group, [layer.name]);
  }
  // Each reason names at least one layer; together they name at most LEFT_OUT_SHOWN.
  let left = LEFT_OUT_SHOWN;
  const sections: string[] = [];
  for (const [group, names] of groups) {
    const compact = compactNames(names, left);
    left = Math.max(0, left - compact.items);
    const more = compact.hidden > 0 ? `, and ${compact.hidden} more` : '';
    sections.push(`${group} (${names.length}): ${compact.text}${more}`);
  }
  const count = layers.length === 1 ? '1 layer' : `${layers.length} layers`;
  const verb = layers.length === 1 ? 'is' : 'are';
  return `${count} of model '${label}' ${verb} left out of the comparison; ${sections.join('; ')}`;
}

const defaultWarning = (warning: CkaWarning): void => {
  process.emitWarning(warning.message, { type: 'TorchCkaWarning', code: warning.code });
};

/**
 * Minibatch linear CKA (Nguyen, Raghu & Kornblith 2021) between every chosen
 * layer of two models, computed natively as the batches stream through.
 */
export class CKA {
  readonly model1: Model;
  readonly model2: Model;
  readonly model1Name: string;
  readonly model2Name: string;
  readonly dataset1Name: string;
  private dataset2NameOption: string | undefined;
  private sameData = true;
  private readonly native: NativeCka;
  private readonly warn: (warning: CkaWarning) => void;
  private readonly warned = new Set<string>();
  private readonly leftOutWarned = new Set<'model1' | 'model2'>();
  private running = false;
  private readonly settings: { layers1: string[]; layers2: string[]; precision: string; skipNonFinite: boolean };

  constructor(model1: Model, model2: Model, options?: CKAOptions) {
    this.model1 = requireModel(model1, 'model1');
    this.model2 = requireModel(model2, 'model2');
    const opts = optionalObject(options, 'options');
    this.model1Name = optionalString(opts.model1Name, 'options.model1Name') ?? model1.name;
    this.model2Name = optionalString(opts.model2Name, 'options.model2Name') ?? model2.name;
    this.dataset1Name = optionalString(opts.dataset1Name, 'options.dataset1Name') ?? 'data1';
    this.dataset2NameOption = optionalString(opts.dataset2Name, 'options.dataset2Name');
    this.warn = optionalFunction<(w: CkaWarning) => void>(opts.onWarning, 'options.onWarning') ?? defaultWarning;
    const precision = optionalOneOf(opts.precision, ['float64', 'float32'] as const, 'options.precision');
    const threads = optionalInteger(opts.threads, 'options.threads', 1);
    const concurrent =
      optionalBoolean(opts.concurrent, 'options.concurrent') ?? defaultConcurrent(this.model1, threads);
    const skipNonFinite = optionalBoolean(opts.skipNonFinite, 'options.skipNonFinite') ?? false;
    this.settings = {
      layers1: layerList(this.model1, opts.model1Layers, 'options.model1Layers'),
      layers2: layerList(this.model2, opts.model2Layers, 'options.model2Layers'),
      precision: precision ?? 'float64',
      skipNonFinite,
    };
    this.native = new (binding().NativeCka)(this.model1.native, this.model2.native, {
      layers1: this.settings.layers1,
      layers2: this.settings.layers2,
      label1: this.model1Name,
      label2: this.model2Name,
      ...(precision ? { precision } : {}),
      ...(threads ? { threads } : {}),
      concurrent,
      skipNonFinite,
    });
    if (this.model1Name === this.model2Name) {
      this.warnOnce({
        code: 'TORCH_CKA_SAME_NAMES',
        message: `Both models are named '${this.model1Name}'; pass model1Name and model2Name to tell them apart`,
      });
    }
  }

  get dataset2Name(): string {
    return this.dataset2NameOption ?? (this.sameData ? this.dataset1Name : 'data2');
  }

  /**
   * Feeds batches through both models and adds their HSIC terms to the
   * running sums. Model 2 sees `data2`, or `data1` when it is omitted. Can be
   * called again to add more batches.
   */
  async compare(data1: DataSource, data2?: DataSource, options?: CompareOptions): Promise<CompareSummary> {
    if (this.running) {
      throw makeError(Error, ErrorCodes.BUSY, 'compare() is already running on this CKA object; await it first');
    }
    const opts = optionalObject(options, 'options');
    const onProgress = optionalFunction<(p: CompareProgress) => void>(opts.onProgress, 'options.onProgress');
    const signal = opts.signal as AbortSignal | undefined;
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw invalidArgType(`Expected an AbortSignal for options.signal but received ${describe(signal)}`);
    }
    const checkpoint = opts.checkpoint === undefined ? undefined : checkpointOptions(opts.checkpoint);
    const dist: DistributedInfo | undefined =
      opts.distributed === undefined || opts.distributed === false ? undefined : resolveDistributed(opts.distributed);
    // Checked now, so that bad sources fail before anything else happens.
    iterableMethod(data1, 'data1');
    if (data2 !== undefined) iterableMethod(data2, 'data2');

    this.running = true;
    track(this.native);
    const summary: CompareSummary = { batches: 0, samples: 0, skipped: 0, position: 0, stoppedEarly: null, resumed: 0 };
    let running: Promise<unknown> | undefined;
    const cancel = (): void => {
      if (running) this.native.cancel();
    };
    signal?.addEventListener('abort', cancel);
    let first: AsyncIterator<Batch> | Iterator<Batch> | undefined;
    let second: AsyncIterator<Batch> | Iterator<Batch> | undefined;
    let saver: CheckpointSaver | undefined;
    let job: DistributedRun | undefined;
    // A distributed call sums its own batches over the ranks; what the object
    // held before is set aside and added back at the end.
    let before: NativeState | null = null;
    try {
      let position = 0;
      const startup = performance.now();
      const identity =
        checkpoint || dist
          ? await checkpointIdentity([this.model1, this.model2], this.settings, data1, data2, checkpoint?.key ?? null)
          : undefined;
      if (dist && identity) {
        job = await DistributedRun.start(dist, identity, this.model1.device, startup);
        before = this.stateOrNull();
        if (before) this.native.reset();
      }
      if (checkpoint && identity) {
        // Each rank keeps its own share's checkpoint.
        const file = dist ? `${checkpoint.path}.rank${dist.rank}-of-${dist.worldSize}` : checkpoint.path;
        const own = dist
          ? { ...identity, key: [identity.key, `rank ${dist.rank} of ${dist.worldSize}`].filter(Boolean).join(' · ') }
          : identity;
        const saved = await readCheckpoint(file);
        if (saved) {
          this.resume(saved, own, file);
          position = saved.position;
          summary.position = position;
          summary.resumed = saved.state.batches;
        }
        saver = new CheckpointSaver(this.native, file, own, checkpoint.every, position);
      }
      const rank = dist?.rank ?? 0;
      const stride = dist?.worldSize ?? 1;
      // This rank's first batch: the first at or after `position` that is its own.
      const start = position + ((((rank - position) % stride) + stride) % stride);
      [first, second] = await resumedIterators(data1, data2, position, start, stride);
      if (data2 !== undefined) this.sameData = false;
      await this.run(first, second, summary, start, stride, signal, onProgress, saver, job, (p) => (running = p));
      if (job) await this.finishDistributed(job, before, summary, onProgress);
    } catch (error) {
      // A batch still running finishes (adding to the sums or not) before this rejects.
      await Promise.allSettled([running, first?.return?.(), second?.return?.()]);
      // Keep what was compared before the failure; a failing write must not hide the first error.
      await saver?.final().catch(() => undefined);
      if (job) {
        await job.fail(error);
        // A share alone means nothing: back to what the object held before.
        this.native.reset();
        if (before) this.native.restore(before);
      }
      if ((error as { code?: unknown }).code === ErrorCodes.ABORTED && signal?.aborted) throw abortError(signal);
      throw error;
    } finally {
      await job?.close();
      signal?.removeEventListener('abort', cancel);
      inFlight.delete(this.native);
      this.running = false;
    }
    return summary;
  }

  private stateOrNull(): NativeState | null {
    try {
      return this.native.state();
    } catch {
      return null; // ERR_NO_DATA: nothing compared yet
    }
  }

  /** Waits for the other ranks, sums every rank's state into this object, and makes the summary the job's. */
  private async finishDistributed(
    job: DistributedRun,
    before: NativeState | null,
    summary: CompareSummary,
    onProgress: ((p: CompareProgress) => void) | undefined,
  ): Promise<void> {
    const local = { batches: summary.batches, samples: summary.samples, skipped: summary.skipped };
    const where = { rank: job.rank, worldSize: job.worldSize };
    const report =
      onProgress && job.rank === 0
        ? (progress: JobProgress): void =>
            onProgress({ ...local, position: summary.position, distributed: { ...where, job: progress } })
        : undefined;
    const total = await job.finish(this.stateOrNull(), { ...local, position: summary.position }, report);
    let merged = total;
    if (before && total) {
      if (JSON.stringify([before.rows1, before.rows2]) !== JSON.stringify([total.rows1, total.rows2])) {
        throw makeError(
          Error,
          ErrorCodes.DIST_MISMATCH,
          'This CKA object compared batches before, with other layer calls than this distributed run found',
        );
      }
      const add = (a: Float64Array, b: Float64Array): Float64Array => a.map((value, i) => value + (b[i] ?? 0));
      merged = {
        ...total,
        xy: add(before.xy, total.xy),
        xx: add(before.xx, total.xx),
        yy: add(before.yy, total.yy),
        steps: before.steps + total.steps,
        batches: before.batches + total.batches,
        samples: before.samples + total.samples,
        skipped: before.skipped + total.skipped,
      };
    } else if (before) {
      merged = before;
    }
    this.native.reset();
    if (merged) this.native.restore(merged);
    const progress = job.progress;
    summary.batches = progress.batches;
    summary.samples = progress.samples;
    summary.skipped = progress.skipped;
    summary.distributed = { ...where, backend: job.backend, local, timings: { ...job.timings } };
  }

  private resume(saved: Checkpoint, identity: CheckpointIdentity, file: string): void {
    assertSameIdentity(saved.identity, identity, file);
    if (this.stateOrNull() !== null) {
      throw makeError(
        Error,
        ErrorCodes.CHECKPOINT_MISMATCH,
        `Checkpoint '${file}' exists, but this CKA object has already compared batches; resume into a new CKA object, ` +
          'or delete the checkpoint',
      );
    }
    this.native.restore(saved.state);
  }

  private async run(
    first: AsyncIterator<Batch> | Iterator<Batch>,
    second: AsyncIterator<Batch> | Iterator<Batch> | undefined,
    summary: CompareSummary,
    position: number,
    stride: number,
    signal: AbortSignal | undefined,
    onProgress: ((p: CompareProgress) => void) | undefined,
    saver: CheckpointSaver | undefined,
    job: DistributedRun | undefined,
    track: (running: Promise<unknown> | undefined) => void,
  ): Promise<void> {
    const fetch = (): Promise<[IteratorResult<Batch>, IteratorResult<Batch> | undefined]> => {
      // Async, so that a source that throws synchronously rejects instead.
      const next = (async () => Promise.all([first.next(), second?.next()]))();
      next.catch(() => undefined); // handled where it is awaited
      return next;
    };
    let step = position;
    let upcoming = fetch();
    for (;;) {
      if (signal?.aborted) throw abortError(signal);
      const [a, b] = await upcoming;
      if (a.done || (b !== undefined && b.done)) {
        if (b !== undefined && a.done !== b.done) {
          summary.stoppedEarly = a.done ? 'data1' : 'data2';
          const other = a.done ? second : first;
          await other?.return?.();
          this.warnOnce({
            code: 'TORCH_CKA_UNEVEN_DATA',
            message: `${a.done ? 'data1' : 'data2'} ran out after ${step} batch(es) while the other had more; compared the first ${step}`,
          });
        }
        break;
      }
      const inputs1 = toNativeBatch(a.value, `batch ${step} of data1`);
      const inputs2 = b === undefined ? null : toNativeBatch(b.value, `batch ${step} of data2`);
      // step() copies the inputs before it returns, so the sources may
      // prepare the next batch (and reuse their buffers) while it runs.
      const stepping = this.native.step(inputs1, inputs2);
      track(stepping);
      upcoming = fetch();
      const result = await stepping;
      track(undefined);
      this.batchWarnings(result);
      if (result.skipped) {
        summary.skipped += 1;
      } else {
        summary.batches += 1;
        summary.samples += result.n;
      }
      step += stride;
      summary.position = step;
      saver?.committed(step);
      const progress: CompareProgress = {
        batches: summary.batches,
        samples: summary.samples,
        skipped: summary.skipped,
        position: step,
      };
      if (job) {
        await job.batchDone(progress);
        progress.distributed = {
          rank: job.rank,
          worldSize: job.worldSize,
          ...(job.rank === 0 ? { job: job.progress } : {}),
        };
      }
      onProgress?.(progress);
    }
    await saver?.final();
  }

  /** The CKA matrix so far. Fails with ERR_NO_DATA before any batch was compared. */
  export(): CKAResult {
    if (this.running) {
      throw makeError(Error, ErrorCodes.BUSY, 'export() was called while compare() is running; await it first');
    }
    const result = this.native.result();
    for (const message of result.warnings) this.warnOnce({ code: 'TORCH_CKA_CONSTANT_LAYER', message });
    return {
      model1Name: this.model1Name,
      model2Name: this.model2Name,
      model1Layers: result.rows1,
      model2Layers: result.rows2,
      dataset1Name: this.dataset1Name,
      dataset2Name: this.dataset2Name,
      cka: result.cka,
      samples: result.samples,
      batches: result.batches,
    };
  }

  /**
   * What the comparison holds and did: bytes of the float64 sums and of the
   * last batch's Gram matrices and block copies, forward passes run, Grams
   * reused from an identical tensor (a container's output is its last
   * child's), and the threads and concurrency of the last batch.
   */
  stats(): CKAStats {
    return this.native.stats();
  }

  /**
   * A batch's warnings, and the layers it left out of default selections
   * (listed by the batch that fixes the rows) as one TORCH_CKA_LAYER_LEFT_OUT
   * per model; a skipped batch fixes no rows, so the next batch lists them again.
   */
  private batchWarnings(result: NativeStep): void {
    for (const message of result.warnings) this.warnOnce({ code: 'TORCH_CKA_SKIPPED_BATCH', message });
    if (result.skipped) return;
    for (const [index, model] of [[1, 'model1'] as const, [2, 'model2'] as const]) {
      const layers = result.leftOut
        .filter((layer) => layer.model === index)
        .map(({ name, code, reason }) => ({ name, code, reason }));
      if (layers.length === 0 || this.leftOutWarned.has(model)) continue;
      this.leftOutWarned.add(model);
      const label = model === 'model1' ? this.model1Name : this.model2Name;
      this.warn({ code: 'TORCH_CKA_LAYER_LEFT_OUT', message: leftOutMessage(label, layers), model, layers });
    }
  }

  private warnOnce(warning: CkaWarning): void {
    if (this.warned.has(warning.message)) return;
    this.warned.add(warning.message);
    this.warn(warning);
  }
}
