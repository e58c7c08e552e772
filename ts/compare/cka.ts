// The CKA class: two models, their chosen layers, and the native sums that
// the batches add to. A compare() call reads top-down: check its options,
// prepare (a checkpoint to resume, or the ranks of a distributed job), iterate
// over the batches, finish (the last checkpoint, or the all-reduce). Its
// option and result types are in types.ts, the sources in sources.ts.
import { performance } from 'node:perf_hooks';

import { type Model, requireModel } from '../model/model';
import { expandLayerPatterns } from '../model/layer-patterns';
import { toNativeBatch } from '../model/tensor';
import {
  binding,
  type NativeCKA,
  type NativeFullResult,
  type NativeState,
  type NativeStep,
  type NativeSteps,
} from '../native/binding';
import { describe, ErrorCodes, invalidArgType, invalidArgValue, makeError } from '../util/errors';
import {
  optionalBoolean,
  optionalFunction,
  optionalInteger,
  optionalObject,
  optionalOneOf,
  optionalString,
  optionalStringArray,
} from '../util/is';
import {
  assertSameIdentity,
  type Checkpoint,
  type CheckpointIdentity,
  checkpointIdentity,
  checkpointOptions,
  CheckpointSaver,
  rankCheckpoint,
  readCheckpoint,
} from './checkpoint';
import { type DistributedInfo, DistributedRun, type JobProgress, resolveDistributed } from './distributed';
import { track, untrack } from './in-flight';
import { leftOutMessage } from './left-out';
import { optionalViews, resolveViews, rowViews, type View, viewSettings } from './views';
import {
  type FullBatchSettings,
  type FullBatchStats,
  fullBatchSettings,
  fullBatchWarnings,
  runFullBatch,
} from './full-batch';
import { measureList, rbfThreshold, STREAMING_MEASURES, sigmaMap, sigmasPerLayer } from './measures';
import { type BatchIterator, checkSource, openSources } from './sources';
import type {
  CKAOptions,
  CKAResult,
  CKAStats,
  CKAWarning,
  CompareOptions,
  CompareProgress,
  CompareSummary,
  DataSource,
  FullBatchInfo,
  Measure,
  NullReason,
} from './types';

/** What a checkpoint and the ranks check of the measures (absent for the default `['cka']`). */
interface MeasureSettings {
  ids: Measure[];
  rbfThreshold?: number;
  sigmas1?: Array<number | null>;
  sigmas2?: Array<number | null>;
}

/** compare()'s options, checked. */
interface CompareSettings {
  onProgress: ((progress: CompareProgress) => void) | undefined;
  signal: AbortSignal | undefined;
  checkpoint: ReturnType<typeof checkpointOptions> | undefined;
  distributed: DistributedInfo | undefined;
}

/** What one pass over the batches needs; see CKA.iterate(). */
interface Iteration {
  first: BatchIterator;
  second: BatchIterator | undefined;
  /** Counts of this call, updated batch by batch. */
  summary: CompareSummary;
  /** The index in the whole stream of the first batch taken. */
  start: number;
  /** Batches between two taken ones: the number of ranks (1 alone). */
  stride: number;
  settings: CompareSettings;
  saver: CheckpointSaver | undefined;
  job: DistributedRun | undefined;
}

const emptySummary = (): CompareSummary => ({
  batches: 0,
  samples: 0,
  skipped: 0,
  position: 0,
  stoppedEarly: null,
  resumed: 0,
});

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
  return expandLayerPatterns(entries ?? [], model.native.layers(), modelLabel(model));
}

const modelLabel = (model: Model): string => `model '${model.name}' (${model.path})`;

/** Both models of a batch at once: on a GPU (two streams); on the CPU the cores go to batches in flight. */
const defaultConcurrent = (model: Model): boolean => !model.device.startsWith('cpu');

function compareSettings(options: CompareOptions | undefined): CompareSettings {
  const opts = optionalObject(options, 'options');
  const onProgress = optionalFunction<(p: CompareProgress) => void>(opts.onProgress, 'options.onProgress');
  const signal = opts.signal as AbortSignal | undefined;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw invalidArgType(`Expected an AbortSignal for options.signal but received ${describe(signal)}`);
  }
  return {
    onProgress,
    signal,
    checkpoint: opts.checkpoint === undefined ? undefined : checkpointOptions(opts.checkpoint),
    distributed:
      opts.distributed === undefined || opts.distributed === false ? undefined : resolveDistributed(opts.distributed),
  };
}

/** The first batch at or after `position` that is rank `rank`'s of `stride` ranks. */
const firstOwnBatch = (position: number, rank: number, stride: number): number =>
  position + ((((rank - position) % stride) + stride) % stride);

const defaultWarning = (warning: CKAWarning): void => {
  process.emitWarning(warning.message, { type: 'TorchCkaWarning', code: warning.code });
};

/**
 * Minibatch linear CKA (Nguyen, Raghu & Kornblith 2021) between every chosen
 * layer of two models, computed natively as the batches stream through; or,
 * with `fullBatch`, every measure of docs/full-batch.md on one evaluation set.
 */
export class CKA {
  /** The model whose layers are the rows. */
  readonly model1: Model;
  /** The model whose layers are the columns (may be model1 itself). */
  readonly model2: Model;
  /** Names in the results: CKAOptions.model1Name, else the model's name. */
  readonly model1Name: string;
  readonly model2Name: string;
  /** CKAOptions.dataset1Name, else `'data1'`. */
  readonly dataset1Name: string;
  private dataset2NameOption: string | undefined;
  private sameData = true;
  private readonly native: NativeCKA;
  private readonly warn: (warning: CKAWarning) => void;
  private readonly warned = new Set<string>();
  private readonly leftOutWarned = new Set<'model1' | 'model2'>();
  private running = false;
  /** The batch in native code, if any: an abort cancels it, a failure waits for it. */
  private stepping: Promise<unknown> | undefined;
  private readonly settings: {
    layers1: string[];
    layers2: string[];
    precision: string;
    skipNonFinite: boolean;
    /** The non-flatten views by layer name (absent when none), so a checkpoint with other views is refused. */
    views1?: Record<string, View>;
    views2?: Record<string, View>;
    measures?: MeasureSettings;
  };
  /** Each layer's view, indexed like model.native.layers(), and those layers' names. */
  private readonly layerViews: [View[], View[]];
  private readonly layerNames: [string[], string[]];
  private readonly measureIds: Measure[];
  private readonly threshold: number;
  /** options.fullBatch, checked; undefined in the streaming mode. */
  private readonly fullBatch: FullBatchSettings | undefined;
  /** The full-batch result, once compare() has run. */
  private fullResult: NativeFullResult | undefined;

  /**
   * Chooses the layers of both models (expanding patterns) and prepares the
   * native sums. Unknown, duplicated or unusable layer names throw here,
   * before any data is read.
   */
  constructor(model1: Model, model2: Model, options?: CKAOptions) {
    this.model1 = requireModel(model1, 'model1');
    this.model2 = requireModel(model2, 'model2');
    const opts = optionalObject(options, 'options');
    this.model1Name = optionalString(opts.model1Name, 'options.model1Name') ?? model1.name;
    this.model2Name = optionalString(opts.model2Name, 'options.model2Name') ?? model2.name;
    this.dataset1Name = optionalString(opts.dataset1Name, 'options.dataset1Name') ?? 'data1';
    this.dataset2NameOption = optionalString(opts.dataset2Name, 'options.dataset2Name');
    this.warn = optionalFunction<(w: CKAWarning) => void>(opts.onWarning, 'options.onWarning') ?? defaultWarning;
    const precision = optionalOneOf(opts.precision, ['float64', 'float32'] as const, 'options.precision');
    const threads = optionalInteger(opts.threads, 'options.threads', 1);
    const workers = optionalInteger(opts.workers, 'options.workers', 1);
    const concurrent = optionalBoolean(opts.concurrent, 'options.concurrent') ?? defaultConcurrent(this.model1);
    const skipNonFinite = optionalBoolean(opts.skipNonFinite, 'options.skipNonFinite') ?? false;
    const names1 = this.model1.native.layers().map((layer) => layer.name);
    const names2 = this.model2.native.layers().map((layer) => layer.name);
    this.layerViews = [
      resolveViews(
        optionalViews(opts.model1Views, 'options.model1Views'),
        names1,
        'options.model1Views',
        modelLabel(this.model1),
      ),
      resolveViews(
        optionalViews(opts.model2Views, 'options.model2Views'),
        names2,
        'options.model2Views',
        modelLabel(this.model2),
      ),
    ];
    this.layerNames = [names1, names2];
    const views1 = viewSettings(names1, this.layerViews[0]);
    const views2 = viewSettings(names2, this.layerViews[1]);
    this.fullBatch = fullBatchSettings(opts.fullBatch, 'options.fullBatch');
    this.measureIds = measureList(opts.measures, 'options.measures', this.fullBatch !== undefined);
    this.threshold = rbfThreshold(opts.rbfThreshold, 'options.rbfThreshold');
    const sigmas1 = sigmasPerLayer(
      sigmaMap(opts.model1Sigmas, 'options.model1Sigmas'),
      this.model1.native.layers(),
      'options.model1Sigmas',
      modelLabel(this.model1),
    );
    const sigmas2 = sigmasPerLayer(
      sigmaMap(opts.model2Sigmas, 'options.model2Sigmas'),
      this.model2.native.layers(),
      'options.model2Sigmas',
      modelLabel(this.model2),
    );
    const rbf = this.measureIds.includes('rbf_cka') || this.measureIds.includes('rbf_cka_biased');
    // The streaming sums take only their own measures; fullRun() gets the whole list.
    const streaming = this.measureIds.filter((id) => STREAMING_MEASURES.includes(id));
    if (this.fullBatch && rbf && !streaming.includes('rbf_cka')) streaming.push('rbf_cka');
    const measures: MeasureSettings | undefined =
      this.measureIds.length === 1 && this.measureIds[0] === 'cka'
        ? undefined
        : {
            ids: this.measureIds,
            ...(rbf ? { rbfThreshold: this.threshold, sigmas1, sigmas2 } : {}),
          };
    this.settings = {
      layers1: layerList(this.model1, opts.model1Layers, 'options.model1Layers'),
      layers2: layerList(this.model2, opts.model2Layers, 'options.model2Layers'),
      precision: precision ?? 'float64',
      skipNonFinite,
      ...(views1 ? { views1 } : {}),
      ...(views2 ? { views2 } : {}),
      // Only when not the default, so that checkpoints from before measures existed still resume.
      ...(measures ? { measures } : {}),
    };
    this.native = new (binding().NativeCKA)(this.model1.native, this.model2.native, {
      layers1: this.settings.layers1,
      layers2: this.settings.layers2,
      ...(views1 ? { views1: this.layerViews[0] } : {}),
      ...(views2 ? { views2: this.layerViews[1] } : {}),
      label1: this.model1Name,
      label2: this.model2Name,
      ...(precision ? { precision } : {}),
      ...(threads ? { threads } : {}),
      ...(workers ? { workers } : {}),
      concurrent,
      skipNonFinite,
      measures: this.fullBatch ? (streaming.length > 0 ? streaming : ['cka']) : this.measureIds,
      rbfThreshold: this.threshold,
      sigmas1,
      sigmas2,
    });
    if (this.model1Name === this.model2Name) {
      this.warnOnce({
        code: 'TORCH_CKA_SAME_NAMES',
        message: `Both models are named '${this.model1Name}'; pass model1Name and model2Name to tell them apart`,
      });
    }
  }

  /** CKAOptions.dataset2Name; else `'data2'` once model 2 has seen its own data, else dataset1Name. */
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
    const settings = compareSettings(options);
    // Checked now, so that bad sources fail before anything else happens.
    checkSource(data1, 'data1');
    if (data2 !== undefined) checkSource(data2, 'data2');
    if (this.fullBatch) this.checkFullCompare(settings);

    this.running = true;
    track(this.native);
    const { signal } = settings;
    const cancel = (): void => {
      if (this.stepping) this.native.cancel();
    };
    signal?.addEventListener('abort', cancel);
    try {
      if (this.fullBatch) return await this.compareFull(data1, data2, settings, this.fullBatch);
      return settings.distributed
        ? await this.compareDistributed(data1, data2, settings, settings.distributed)
        : await this.compareHere(data1, data2, settings);
    } catch (error) {
      if ((error as { code?: unknown }).code === ErrorCodes.ABORTED && signal?.aborted) throw abortError(signal);
      throw error;
    } finally {
      signal?.removeEventListener('abort', cancel);
      untrack(this.native);
      this.running = false;
    }
  }

  /** The full-batch mode takes one evaluation set, with no checkpoint nor distributed run. */
  private checkFullCompare(settings: CompareSettings): void {
    for (const option of ['checkpoint', 'distributed'] as const) {
      if (settings[option] !== undefined) {
        throw invalidArgValue(
          `compare() options.${option} is not available in the full-batch mode (options.fullBatch): its one ` +
            'evaluation set runs in one call and needs no checkpoint nor ranks; leave it out, or drop fullBatch',
        );
      }
    }
    if (this.fullResult !== undefined) {
      throw invalidArgValue(
        'This full-batch CKA object has compared its evaluation set already (one set per object); ' +
          'create a new CKA object for another compare()',
      );
    }
  }

  /** The full-batch mode: the first N samples into the engine, then every measure on their Grams. */
  private async compareFull(
    data1: DataSource,
    data2: DataSource | undefined,
    settings: CompareSettings,
    full: FullBatchSettings,
  ): Promise<CompareSummary> {
    if (data2 !== undefined) this.sameData = false;
    const outcome = await runFullBatch({
      native: this.native,
      data1,
      data2,
      settings: full,
      measures: this.measureIds,
      rbfThreshold: this.threshold,
      onProgress: settings.onProgress,
      signal: settings.signal,
      warn: (warning) => this.warnOnce(warning),
      running: (promise) => {
        this.stepping = promise;
      },
    });
    this.fullResult = outcome.result;
    for (const warning of fullBatchWarnings(outcome.result, this.measureIds, full.ccaRidge, [
      this.model1Name,
      this.model2Name,
    ])) {
      this.warnOnce(warning);
    }
    this.leftOutWarnings(outcome.result.leftOut);
    return {
      ...emptySummary(),
      batches: outcome.chunks,
      samples: outcome.result.samples,
      position: outcome.chunks,
      stoppedEarly: outcome.stoppedEarly,
    };
  }

  /** One process: resume from the checkpoint if there is one, then every batch. */
  private async compareHere(
    data1: DataSource,
    data2: DataSource | undefined,
    settings: CompareSettings,
  ): Promise<CompareSummary> {
    const summary = emptySummary();
    let saver: CheckpointSaver | undefined;
    if (settings.checkpoint) {
      const identity = await this.identity(data1, data2, settings.checkpoint.key);
      saver = await this.openCheckpoint(settings.checkpoint.path, identity, settings.checkpoint.every, summary);
    }
    const position = summary.position;
    const [first, second] = await this.openSources(data1, data2, { skip: position, first: position, stride: 1 });
    await this.iterate({ first, second, summary, start: position, stride: 1, settings, saver, job: undefined });
    return summary;
  }

  /**
   * One rank of a distributed job: meet the other ranks, resume this rank's
   * checkpoint if there is one, compare this rank's share of the batches, and
   * sum every rank's state. What the object held before is set aside during
   * the run and added back at the end (or restored when the job fails).
   */
  private async compareDistributed(
    data1: DataSource,
    data2: DataSource | undefined,
    settings: CompareSettings,
    dist: DistributedInfo,
  ): Promise<CompareSummary> {
    const startup = performance.now();
    const identity = await this.identity(data1, data2, settings.checkpoint?.key ?? null);
    const job = await DistributedRun.start(dist, identity, this.model1.device, startup);
    const before = this.stateOrNull();
    if (before) this.native.reset();
    try {
      const summary = emptySummary();
      let saver: CheckpointSaver | undefined;
      if (settings.checkpoint) {
        const own = rankCheckpoint(settings.checkpoint.path, identity, dist.rank, dist.worldSize);
        saver = await this.openCheckpoint(own.file, own.identity, settings.checkpoint.every, summary);
      }
      const position = summary.position;
      const start = firstOwnBatch(position, dist.rank, dist.worldSize);
      if (start !== 0 && summary.resumed === 0) await this.calibrate(data1, data2);
      const plan = { skip: position, first: start, stride: dist.worldSize };
      const [first, second] = await this.openSources(data1, data2, plan);
      await this.iterate({ first, second, summary, start, stride: dist.worldSize, settings, saver, job });
      await this.finishDistributed(job, before, summary, settings.onProgress);
      return summary;
    } catch (error) {
      await job.fail(error);
      // A share alone means nothing: back to what the object held before.
      this.native.reset();
      if (before) this.native.restore(before);
      throw error;
    } finally {
      await job.close();
    }
  }

  /**
   * A distributed rank that does not start with the stream's batch 0 runs it
   * once, adding nothing, so that its rows and RBF σ are rank 0's.
   */
  private async calibrate(data1: DataSource, data2: DataSource | undefined): Promise<void> {
    if (!this.measureIds.includes('rbf_cka')) return;
    // A generator or other iterator can be read once: batch 0 here would be
    // gone from the rank's own pass (and closing it would end that pass).
    for (const [source, name] of [
      [data1, 'data1'],
      [data2, 'data2'],
    ] as const) {
      if (typeof (source as { next?: unknown } | undefined)?.next === 'function') {
        throw makeError(
          TypeError,
          ErrorCodes.INVALID_ARG,
          `rbf_cka in a distributed run reads the stream's batch 0 on every rank (to fix σ), but ${name} is an ` +
            'iterator that can be read only once; pass an array, a torch-cka Dataset or an iterable whose ' +
            '[Symbol.iterator]() or [Symbol.asyncIterator]() starts afresh, such as an object wrapping the generator function',
        );
      }
    }
    const [first, second] = await this.openSources(data1, data2, { skip: 0, first: 0, stride: 1 });
    try {
      const [a, b] = await Promise.all([first.next(), second?.next()]);
      if (a.done || (b !== undefined && b.done)) return;
      const inputs1 = toNativeBatch(a.value, 'batch 0 of data1');
      const inputs2 = b === undefined ? null : toNativeBatch(b.value, 'batch 0 of data2');
      this.stepping = this.native.calibrate(inputs1, inputs2);
      await this.stepping;
    } finally {
      this.stepping = undefined;
      await Promise.allSettled([first.return?.(), second?.return?.()]);
    }
  }

  /** What a checkpoint or the ranks check: the models' files, the layers, the data and the settings. */
  private identity(data1: DataSource, data2: DataSource | undefined, key: string | null): Promise<CheckpointIdentity> {
    return checkpointIdentity([this.model1, this.model2], this.settings, data1, data2, key);
  }

  /**
   * Restores the checkpoint `file` if it exists (its position and batches go
   * into `summary`) and returns the saver that keeps writing it.
   */
  private async openCheckpoint(
    file: string,
    identity: CheckpointIdentity,
    every: number,
    summary: CompareSummary,
  ): Promise<CheckpointSaver> {
    const saved = await readCheckpoint(file);
    if (saved) {
      this.resume(saved, identity, file);
      summary.position = saved.position;
      summary.resumed = saved.state.batches;
    }
    return new CheckpointSaver(this.native, file, identity, every, summary.position);
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

  private async openSources(
    data1: DataSource,
    data2: DataSource | undefined,
    plan: Parameters<typeof openSources>[2],
  ): Promise<[BatchIterator, BatchIterator | undefined]> {
    const sources = await openSources(data1, data2, plan);
    if (data2 !== undefined) this.sameData = false;
    return sources;
  }

  /**
   * The batches, one after another: each is fed to native code while the
   * sources fetch the next; counts, checkpoints, heartbeats and progress
   * follow each one. On a failure, the batch running settles, the sources are
   * closed and what was compared is saved before the error goes on.
   */
  private async iterate(run: Iteration): Promise<void> {
    const { first, second, summary, stride, saver, job } = run;
    const { signal, onProgress } = run.settings;
    const fetch = (): Promise<[IteratorResult<unknown>, IteratorResult<unknown> | undefined]> => {
      // Async, so that a source that throws synchronously rejects instead.
      const next = (async () => Promise.all([first.next(), second?.next()]))();
      next.catch(() => undefined); // handled where it is awaited
      return next;
    };
    // Up to `workers` batches at a time go to native code, which computes
    // them at once and adds them in order; the sources fetch the next group meanwhile.
    const workers = this.native.workers;
    const group = Number.isInteger(workers) && workers > 1 ? workers : 1;
    type Pair = [IteratorResult<unknown>, IteratorResult<unknown> | undefined];
    // A source that fails after some batches of a group: those are compared, then its error goes on.
    const fetchGroup = async (): Promise<{ pairs: Pair[]; error?: unknown }> => {
      const pairs: Pair[] = [];
      while (pairs.length < group) {
        try {
          const pair = await fetch();
          pairs.push(pair);
          if (pair[0].done || (pair[1] !== undefined && pair[1].done)) break;
        } catch (error) {
          if (pairs.length === 0) throw error;
          return { pairs, error };
        }
      }
      return { pairs };
    };
    const fetchNext = (): Promise<{ pairs: Pair[]; error?: unknown }> => {
      const next = fetchGroup();
      next.catch(() => undefined); // handled where it is awaited
      return next;
    };
    try {
      let step = run.start;
      let upcoming = fetchNext();
      let ended = false;
      let uneven: 'data1' | 'data2' | undefined;
      while (!ended) {
        if (signal?.aborted) throw abortError(signal);
        const { pairs, error: fetchError } = await upcoming;
        if (fetchError !== undefined || pairs.length === 0) ended = true;
        const batches: Array<[ReturnType<typeof toNativeBatch>, ReturnType<typeof toNativeBatch> | null]> = [];
        for (const [a, b] of pairs) {
          if (a.done || (b !== undefined && b.done)) {
            // The batches before the end still count.
            if (b !== undefined && a.done !== b.done) uneven = a.done ? 'data1' : 'data2';
            ended = true;
            break;
          }
          const index = step + batches.length * stride;
          batches.push([
            toNativeBatch(a.value, `batch ${index} of data1`),
            b === undefined ? null : toNativeBatch(b.value, `batch ${index} of data2`),
          ]);
        }
        if (batches.length > 0) {
          // steps() copies the inputs before it returns, so the sources may
          // prepare the next group (and reuse their buffers) while it runs.
          this.stepping = this.native.steps(batches);
          if (!ended) upcoming = fetchNext();
          const { outcomes, error } = (await this.stepping) as NativeSteps;
          this.stepping = undefined;
          // The sums now hold every batch added in this call: a checkpoint
          // written from here on names the position after the last of them.
          saver?.committed(step + outcomes.length * stride, outcomes.length);
          for (const result of outcomes) {
            this.batchWarnings(result);
            if (result.skipped) {
              summary.skipped += 1;
            } else {
              summary.batches += 1;
              summary.samples += result.n;
            }
            step += stride;
            summary.position = step;
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
          if (error) throw error;
        }
        if (fetchError !== undefined) throw fetchError;
        if (uneven) await this.unevenEnd(uneven, run, step);
      }
      await saver?.final();
    } catch (error) {
      // A batch still running finishes (adding to the sums or not) before this rejects.
      await Promise.allSettled([this.stepping, first.return?.(), second?.return?.()]);
      this.stepping = undefined;
      // Keep what was compared before the failure; a failing write must not hide the first error.
      await saver?.final().catch(() => undefined);
      throw error;
    } finally {
      // The Gram buffers kept between batches are not held past the call.
      if (!this.stepping) this.native.trim();
    }
  }

  /** One source ran out before the other: the rest of the other is not read. */
  private async unevenEnd(ranOut: 'data1' | 'data2', run: Iteration, step: number): Promise<void> {
    run.summary.stoppedEarly = ranOut;
    const other = ranOut === 'data1' ? run.second : run.first;
    await other?.return?.();
    this.warnOnce({
      code: 'TORCH_CKA_UNEVEN_DATA',
      message: `${ranOut} ran out after ${step} batch(es) while the other had more; compared the first ${step}`,
    });
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
    const total = await job.finish(this.stateOrNull(), { ...local, position: summary.position }, report, {
      count: this.measureIds.length,
      ...this.native.sigmas(),
    });
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

  /**
   * The CKA matrix so far, shaped like torch_cka's `export()`. A layer whose
   * output does not vary over the data has no defined CKA: its cells are
   * `null` and a TORCH_CKA_CONSTANT_LAYER warning names it; no NaN ever
   * leaves the native code. Fails with ERR_NO_DATA before any batch was compared.
   * In the full-batch mode (options.fullBatch): every measure's matrix on the
   * one set, with `fullBatch` (N), `nullReasons` and `fullBatchInfo`
   * (docs/full-batch.md); ERR_NO_DATA before compare() ran.
   */
  export(): CKAResult {
    if (this.running) {
      throw makeError(Error, ErrorCodes.BUSY, 'export() was called while compare() is running; await it first');
    }
    if (this.fullBatch) return this.exportFull(this.fullBatch);
    const result = this.native.result();
    for (const message of result.warnings) this.warnOnce({ code: 'TORCH_CKA_CONSTANT_LAYER', message });
    const measures: Record<string, Array<Array<number | null>>> = {};
    this.measureIds.forEach((id, i) => {
      measures[id] = result.matrices[i] ?? [];
    });
    return {
      ...this.resultHead(result.rows1, result.rows2, measures),
      ...(this.measureIds.includes('rbf_cka')
        ? { rbf: { threshold: this.threshold, sigma1: result.sigma1, sigma2: result.sigma2 } }
        : {}),
      samples: result.samples,
      batches: result.batches,
    };
  }

  /** What export() gives in both modes: the names, rows, views and matrices. */
  private resultHead(
    rows1: string[],
    rows2: string[],
    measures: Record<string, Array<Array<number | null>>>,
  ): Pick<
    CKAResult,
    | 'model1Name'
    | 'model2Name'
    | 'model1Layers'
    | 'model2Layers'
    | 'model1Views'
    | 'model2Views'
    | 'dataset1Name'
    | 'dataset2Name'
    | 'cka'
    | 'measures'
  > {
    return {
      model1Name: this.model1Name,
      model2Name: this.model2Name,
      model1Layers: rows1,
      model2Layers: rows2,
      model1Views: rowViews(rows1, this.layerNames[0], this.layerViews[0]),
      model2Views: rowViews(rows2, this.layerNames[1], this.layerViews[1]),
      dataset1Name: this.dataset1Name,
      dataset2Name: this.dataset2Name,
      ...(measures.cka ? { cka: measures.cka } : {}),
      measures,
    };
  }

  /** export() in the full-batch mode. */
  private exportFull(full: FullBatchSettings): CKAResult {
    const result = this.fullResult;
    if (!result) {
      throw makeError(Error, ErrorCodes.NO_DATA, 'No evaluation set compared yet: run compare() before export()');
    }
    const measures: Record<string, Array<Array<number | null>>> = {};
    const nullReasons: Record<string, Array<Array<NullReason | null>>> = {};
    result.measures.forEach((id, i) => {
      measures[id] = result.matrices[i] ?? [];
      const reasons = (result.reasons[i] ?? []) as Array<Array<NullReason | null>>;
      if (reasons.some((row) => row.some((reason) => reason !== null))) nullReasons[id] = reasons;
    });
    const rbf = this.measureIds.includes('rbf_cka') || this.measureIds.includes('rbf_cka_biased');
    const pair = <T>(a: T[], b: T[]): { model1: T[]; model2: T[] } => ({ model1: a, model2: b });
    const eigen = result.rank1.length > 0 || result.rank2.length > 0;
    const info: FullBatchInfo = {
      ...(eigen ? { ranks: pair(result.rank1, result.rank2) } : {}),
      fills: pair(result.fills1, result.fills2),
      features: pair(result.features1, result.features2),
      ...(this.measureIds.includes('svcca') ? { svccaDims: pair(result.svccaDims1, result.svccaDims2) } : {}),
      ...(eigen ? { eigenTolerance: result.eigenTolerance } : {}),
      ccaRidge: full.ccaRidge,
      svccaVariance: full.svccaVariance,
      mknnK: full.mknnK,
    };
    return {
      ...this.resultHead(result.rows1, result.rows2, measures),
      ...(rbf ? { rbf: { threshold: this.threshold, sigma1: result.sigma1, sigma2: result.sigma2 } } : {}),
      fullBatch: result.samples,
      ...(Object.keys(nullReasons).length > 0 ? { nullReasons } : {}),
      fullBatchInfo: info,
      samples: result.samples,
      batches: 1,
    };
  }

  /**
   * The full-batch mode: what the engine did (forward passes, chunk groups),
   * its memory estimate against the budget, the bytes it held and the
   * milliseconds of each phase. Fails with ERR_NO_DATA before compare() ran,
   * and with ERR_INVALID_ARG in the streaming mode (see {@link CKA.stats}).
   */
  fullBatchStats(): FullBatchStats {
    if (!this.fullBatch) {
      throw invalidArgValue('fullBatchStats() needs a CKA object made with options.fullBatch; see stats()');
    }
    if (!this.fullResult) {
      throw makeError(Error, ErrorCodes.NO_DATA, 'No evaluation set compared yet: run compare() first');
    }
    return { ...this.fullResult.stats };
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
    this.leftOutWarnings(result.leftOut);
  }

  /** The layers left out of default selections, one TORCH_CKA_LAYER_LEFT_OUT per model. */
  private leftOutWarnings(leftOut: NativeStep['leftOut']): void {
    for (const [index, model] of [[1, 'model1'] as const, [2, 'model2'] as const]) {
      const layers = leftOut
        .filter((layer) => layer.model === index)
        .map(({ name, code, reason }) => ({ name, code, reason }));
      if (layers.length === 0 || this.leftOutWarned.has(model)) continue;
      this.leftOutWarned.add(model);
      const label = model === 'model1' ? this.model1Name : this.model2Name;
      this.warn({ code: 'TORCH_CKA_LAYER_LEFT_OUT', message: leftOutMessage(label, layers), model, layers });
    }
  }

  private warnOnce(warning: CKAWarning): void {
    if (this.warned.has(warning.message)) return;
    this.warned.add(warning.message);
    this.warn(warning);
  }
}
