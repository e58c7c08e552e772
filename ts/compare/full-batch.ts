// The full-batch mode (docs/full-batch.md): the first N samples of the data
// form one evaluation set; the engine forwards it chunk by chunk, keeps each
// layer's N x N Gram and computes every chosen measure from those Grams. Here
// are its option checks, the read of the sources into the engine, the run
// with its progress and abort, and the warnings of its result.
import type { TensorLike } from '../model/tensor';
import { toNativeBatch } from '../model/tensor';
import type { NativeCKA, NativeFullResult, NativeFullStats } from '../native/binding';
import { describe, ErrorCodes, invalidArgType, invalidArgValue, makeError } from '../util/errors';
import { type BatchIterator, openSources } from './sources';
import type { CKAWarning, CompareProgress, DataSource, Measure, RankDeficientLayer } from './types';

/** fullBatch, checked and with its defaults. */
export interface FullBatchSettings {
  samples: number;
  svccaVariance: number;
  mknnK: number;
  ccaRidge: number;
  /** Bytes; 0: the engine's default (3/4 of the available memory). */
  memoryBudget: number;
}

/** What the full-batch engine held and did; see {@link CKA.fullBatchStats}. */
export type FullBatchStats = NativeFullStats;

const isPositiveInteger = (value: unknown): value is number =>
  typeof value === 'number' && Number.isInteger(value) && value > 0;

/** @internal options.fullBatch checked: a sample count (>= 4) or a FullBatchOptions object. */
export function fullBatchSettings(value: unknown, name: string): FullBatchSettings | undefined {
  if (value === undefined) return undefined;
  const opts: Record<string, unknown> =
    typeof value === 'number' ? { samples: value } : (value as Record<string, unknown>);
  if (typeof value !== 'number' && (value === null || typeof value !== 'object' || Array.isArray(value))) {
    throw invalidArgType(
      `Expected ${name} to be a sample count or an object { samples, svccaVariance?, mknnK?, ccaRidge?, memoryBudget? } but received ${describe(value)}`,
    );
  }
  const samplesName = typeof value === 'number' ? name : `${name}.samples`;
  const known = ['samples', 'svccaVariance', 'mknnK', 'ccaRidge', 'memoryBudget'];
  for (const key of Object.keys(opts)) {
    if (!known.includes(key)) throw invalidArgValue(`${name} has no option '${key}': it takes ${known.join(', ')}`);
  }
  const { samples, svccaVariance, mknnK, ccaRidge, memoryBudget } = opts;
  if (!isPositiveInteger(samples) || samples < 4) {
    throw invalidArgValue(
      `Expected ${samplesName} to be an integer of at least 4 (the samples of the evaluation set) but received ${describe(samples)}`,
    );
  }
  if (
    svccaVariance !== undefined &&
    (typeof svccaVariance !== 'number' || !(svccaVariance > 0) || !(svccaVariance <= 1))
  ) {
    throw invalidArgValue(
      `Expected ${name}.svccaVariance to be a fraction in (0, 1] but received ${describe(svccaVariance)}`,
    );
  }
  if (mknnK !== undefined && !isPositiveInteger(mknnK)) {
    throw invalidArgValue(`Expected ${name}.mknnK to be a positive integer but received ${describe(mknnK)}`);
  }
  if (mknnK !== undefined && mknnK >= samples) {
    throw invalidArgValue(
      `Expected ${name}.mknnK to be less than the ${samples} samples (${samplesName}) but received ${mknnK}`,
    );
  }
  if (ccaRidge !== undefined && (typeof ccaRidge !== 'number' || !Number.isFinite(ccaRidge) || ccaRidge < 0)) {
    throw invalidArgValue(`Expected ${name}.ccaRidge to be a finite number >= 0 but received ${describe(ccaRidge)}`);
  }
  if (
    memoryBudget !== undefined &&
    (typeof memoryBudget !== 'number' || !Number.isFinite(memoryBudget) || memoryBudget <= 0)
  ) {
    throw invalidArgValue(
      `Expected ${name}.memoryBudget to be a positive number of bytes but received ${describe(memoryBudget)}`,
    );
  }
  return {
    samples,
    svccaVariance: (svccaVariance as number | undefined) ?? 0.99,
    mknnK: (mknnK as number | undefined) ?? 10,
    ccaRidge: (ccaRidge as number | undefined) ?? 0,
    memoryBudget: memoryBudget === undefined ? 0 : Math.floor(memoryBudget as number),
  };
}

/** The samples of a batch: the first dimension of its (first) input. */
function batchCount(inputs: TensorLike | TensorLike[]): number {
  const first = Array.isArray(inputs) ? inputs[0] : inputs;
  return first?.shape[0] ?? 0;
}

/** What runFullBatch() needs of the CKA object. */
export interface FullBatchRun {
  native: NativeCKA;
  data1: DataSource;
  data2: DataSource | undefined;
  settings: FullBatchSettings;
  measures: readonly Measure[];
  rbfThreshold: number;
  onProgress: ((progress: CompareProgress) => void) | undefined;
  signal: AbortSignal | undefined;
  warn: (warning: CKAWarning) => void;
  /** Called with fullRun's promise while it runs (so that an abort can cancel it), then with undefined. */
  running: (promise: Promise<unknown> | undefined) => void;
}

/** What a full-batch compare() did. */
export interface FullBatchOutcome {
  result: NativeFullResult;
  /** Batches (chunks) read. */
  chunks: number;
  samples: number;
  stoppedEarly: 'data1' | 'data2' | null;
}

function abortIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw makeError(Error, ErrorCodes.ABORTED, 'compare() was aborted');
}

/**
 * Reads the first N samples of the sources into the engine (the batches as
 * they come, the last trimmed), then runs the measures on them, reporting the
 * phases through onProgress (at least every 250 ms during the run).
 */
export async function runFullBatch(run: FullBatchRun): Promise<FullBatchOutcome> {
  const full = run.native;
  const { settings, onProgress, signal } = run;
  const total = settings.samples;
  full.fullClear();
  let chunks = 0;
  let samples = 0;
  let stoppedEarly: 'data1' | 'data2' | null = null;
  const report = (fullBatch: NonNullable<CompareProgress['fullBatch']>): void =>
    onProgress?.({ batches: chunks, samples, skipped: 0, position: chunks, fullBatch });
  try {
    const [first, second] = await openSources(run.data1, run.data2, { skip: 0, first: 0, stride: 1 });
    try {
      stoppedEarly = await readChunks(first, second, run, (inputs1, inputs2, count) => {
        full.fullAppend(inputs1, inputs2, count);
        chunks += 1;
        samples += count;
        report({ phase: 'reading', done: samples, total });
        return samples;
      });
    } finally {
      await Promise.allSettled([first.return?.(), second?.return?.()]);
    }
    if (samples < 4) {
      throw makeError(
        Error,
        ErrorCodes.NO_DATA,
        `The data has ${samples} sample(s); a full-batch comparison needs at least 4`,
      );
    }
    if (samples < total) {
      run.warn({
        code: 'TORCH_CKA_FULL_BATCH_SHORT',
        message: `the data has only ${samples} samples; the full-batch set has ${samples}, not ${total}`,
      });
    }
    if (settings.mknnK >= samples && run.measures.includes('mknn')) {
      throw invalidArgValue(
        `Expected fullBatch.mknnK (${settings.mknnK}) to be less than the ${samples} samples of the evaluation set`,
      );
    }
    abortIfAborted(signal);
    const promise = full.fullRun({
      measures: [...run.measures],
      rbfThreshold: run.rbfThreshold,
      svccaVariance: settings.svccaVariance,
      // Used by mknn alone; without it a default k of 10 must not refuse a set of 10 samples or fewer.
      mknnK: run.measures.includes('mknn') ? settings.mknnK : Math.min(settings.mknnK, samples - 1),
      ccaRidge: settings.ccaRidge,
      memoryBudget: settings.memoryBudget,
    });
    run.running(promise);
    const poll = (): void => {
      const where = full.fullProgress();
      if (where.phase !== 'idle') report({ phase: where.phase, done: where.done, total: where.total });
    };
    const timer = onProgress ? setInterval(poll, 250) : undefined;
    try {
      const result = await promise;
      return { result, chunks, samples, stoppedEarly };
    } finally {
      if (timer) clearInterval(timer);
      run.running(undefined);
    }
  } finally {
    full.fullClear();
  }
}

/** Appends batches until N samples (or a source ends); returns which source ran out first, if they differ. */
async function readChunks(
  first: BatchIterator,
  second: BatchIterator | undefined,
  run: FullBatchRun,
  append: (inputs1: TensorLike | TensorLike[], inputs2: TensorLike | TensorLike[] | null, count: number) => number,
): Promise<'data1' | 'data2' | null> {
  const total = run.settings.samples;
  let samples = 0;
  for (let step = 0; samples < total; step += 1) {
    abortIfAborted(run.signal);
    const [a, b] = await Promise.all([first.next(), second?.next()]);
    if (a.done || (b !== undefined && b.done)) {
      if (b === undefined || a.done === b.done) return null;
      const ranOut = a.done ? 'data1' : 'data2';
      run.warn({
        code: 'TORCH_CKA_UNEVEN_DATA',
        message: `${ranOut} ran out after ${step} batch(es) while the other had more; compared the first ${step}`,
      });
      return ranOut;
    }
    const inputs1 = toNativeBatch(a.value, `batch ${step} of data1`);
    const inputs2 = b === undefined ? null : toNativeBatch(b.value, `batch ${step} of data2`);
    const count1 = batchCount(inputs1);
    if (inputs2 !== null && batchCount(inputs2) !== count1) {
      throw makeError(
        RangeError,
        ErrorCodes.BATCH_SIZE_MISMATCH,
        `Batch ${step} of data1 has ${count1} samples but batch ${step} of data2 has ${batchCount(inputs2)}; ` +
          'both data sets must give the same samples per batch',
      );
    }
    if (count1 === 0) continue;
    samples = append(inputs1, inputs2, Math.min(count1, total - samples));
  }
  return null;
}

/** The CCA measures whose cells are null for a layer that fills the sample space (without a ridge). */
const CCA_MEASURES: readonly Measure[] = ['cca_rho', 'cca_r2', 'svcca'];

/**
 * The warnings of a full-batch result: TORCH_CKA_RANK_DEFICIENT once per model
 * (when a CCA measure ran without a ridge), and the engine's own warnings
 * (constant layers) as TORCH_CKA_CONSTANT_LAYER.
 */
export function fullBatchWarnings(
  result: NativeFullResult,
  measures: readonly Measure[],
  ccaRidge: number,
  labels: [string, string],
): CKAWarning[] {
  const warnings: CKAWarning[] = result.warnings.map((message) => ({ code: 'TORCH_CKA_CONSTANT_LAYER', message }));
  const cca = CCA_MEASURES.filter((id) => measures.includes(id));
  if (cca.length === 0 || ccaRidge !== 0) return warnings;
  const n = result.samples;
  const sides = [
    ['model1', labels[0], result.rows1, result.fills1, result.features1, result.rank1],
    ['model2', labels[1], result.rows2, result.fills2, result.features2, result.rank2],
  ] as const;
  for (const [model, label, rows, fills, features, ranks] of sides) {
    const filling = rows.map((name, i) => ({ name, i })).filter(({ i }) => fills[i] === true);
    if (filling.length === 0) continue;
    const layers = filling.map(({ name }) => name);
    const plain = cca.filter((id) => id !== 'svcca');
    const what = [
      ...(plain.length > 0 ? [`its ${plain.join(', ')} cells are null`] : []),
      ...(cca.includes('svcca') ? ['its svcca cells are null where a side keeps N - 1 directions or more'] : []),
    ].join(', and ');
    warnings.push({
      code: 'TORCH_CKA_RANK_DEFICIENT',
      message:
        `${layers.length} layer(s) of '${label}' fill the sample space of the ${n} samples ` +
        `(d >= N - 1 or numerical rank >= N - 1: every canonical correlation is 1): ${layers.join(', ')}; ` +
        `${what}; set ccaRidge (--cca-ridge) for ridge CCA`,
      model,
      layers: filling.map(({ name, i }): RankDeficientLayer => {
        const d = features[i] ?? 0;
        const rank = ranks[i];
        return {
          name,
          features: d,
          ...(rank === undefined ? {} : { rank }),
          reason:
            d >= n - 1
              ? `it has ${d} features for ${n} samples (d >= N - 1)`
              : `its numerical rank ${rank ?? '?'} is at least N - 1 = ${n - 1}`,
        };
      }),
    });
  }
  return warnings;
}
