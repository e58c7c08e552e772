import { binding, type NativeCka, type NativeStats } from './binding';
import { describe, ErrorCodes, invalidArgType, makeError } from './errors';
import {
  optionalBoolean,
  optionalFunction,
  optionalInteger,
  optionalObject,
  optionalOneOf,
  optionalString,
  optionalStringArray,
} from './is';
import { expandLayerPatterns } from './layer-patterns';
import { type Model, requireModel } from './model';
import { type Batch, toNativeBatch } from './tensor';

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
}

export interface CompareProgress {
  /** Batches compared so far in this call (skipped ones not included). */
  batches: number;
  /** Samples compared so far in this call. */
  samples: number;
  /** Batches skipped so far in this call for having fewer than 4 samples. */
  skipped: number;
}

export interface CompareOptions {
  onProgress?: (progress: CompareProgress) => void;
  /** Stops before the next batch; compare() then rejects with an AbortError. */
  signal?: AbortSignal;
}

export interface CompareSummary extends CompareProgress {
  /** Which stream ran out first when the two differ in length, else null. */
  stoppedEarly: 'data1' | 'data2' | null;
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

function iteratorOf(data: unknown, what: string): AsyncIterator<Batch> | Iterator<Batch> {
  if (data !== null && typeof data === 'object') {
    const source = data as Partial<AsyncIterable<Batch> & Iterable<Batch>>;
    const asyncIterator = source[Symbol.asyncIterator];
    if (typeof asyncIterator === 'function') return asyncIterator.call(source);
    const iterator = source[Symbol.iterator];
    if (typeof iterator === 'function' && !ArrayBuffer.isView(source)) return iterator.call(source);
  }
  throw invalidArgType(`Expected ${what} to be an Iterable or AsyncIterable of batches but received ${describe(data)}`);
}

function abortError(signal: AbortSignal): Error {
  const error = makeError(Error, ErrorCodes.ABORTED, 'compare() was aborted');
  error.name = 'AbortError';
  (error as Error & { cause?: unknown }).cause = signal.reason;
  return error;
}

/** A layer list with its glob patterns expanded against the model's submodules. */
function layerList(model: Model, value: unknown, name: string): string[] {
  const entries = optionalStringArray(value, name) ?? [];
  return expandLayerPatterns(entries, model.native.layers(), `model '${model.name}' (${model.path})`);
}

function defaultConcurrent(model: Model, threads: number | undefined): boolean {
  if (!model.device.startsWith('cpu')) return true;
  const info = binding().runtimeInfo();
  return info.cores >= 2 * (threads ?? info.threads);
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
  private running = false;

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
    this.native = new (binding().NativeCka)(this.model1.native, this.model2.native, {
      layers1: layerList(this.model1, opts.model1Layers, 'options.model1Layers'),
      layers2: layerList(this.model2, opts.model2Layers, 'options.model2Layers'),
      label1: this.model1Name,
      label2: this.model2Name,
      ...(precision ? { precision } : {}),
      ...(threads ? { threads } : {}),
      concurrent,
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
    const first = iteratorOf(data1, 'data1');
    const second = data2 === undefined ? undefined : iteratorOf(data2, 'data2');
    if (second !== undefined) this.sameData = false;

    this.running = true;
    const summary: CompareSummary = { batches: 0, samples: 0, skipped: 0, stoppedEarly: null };
    const fetch = (): Promise<[IteratorResult<Batch>, IteratorResult<Batch> | undefined]> => {
      // Async, so that a source that throws synchronously rejects instead.
      const next = (async () => Promise.all([first.next(), second?.next()]))();
      next.catch(() => undefined); // handled where it is awaited
      return next;
    };
    let step = 0;
    let running: Promise<unknown> | undefined;
    try {
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
        running = stepping;
        upcoming = fetch();
        const result = await stepping;
        running = undefined;
        for (const message of result.warnings) {
          this.warnOnce({
            code: result.skipped ? 'TORCH_CKA_SKIPPED_BATCH' : 'TORCH_CKA_LAYER_LEFT_OUT',
            message,
          });
        }
        if (result.skipped) {
          summary.skipped += 1;
        } else {
          summary.batches += 1;
          summary.samples += result.n;
        }
        step += 1;
        onProgress?.({ batches: summary.batches, samples: summary.samples, skipped: summary.skipped });
      }
    } catch (error) {
      // A batch still running finishes (adding to the sums or not) before this rejects.
      await Promise.allSettled([running, first.return?.(), second?.return?.()]);
      throw error;
    } finally {
      this.running = false;
    }
    return summary;
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

  private warnOnce(warning: CkaWarning): void {
    if (this.warned.has(warning.message)) return;
    this.warned.add(warning.message);
    this.warn(warning);
  }
}
