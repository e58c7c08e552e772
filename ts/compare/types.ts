// The public option and result types of a comparison: what `new CKA()`,
// `compare()` and `export()` take and give. No code here.
import type { NativeLeftOut, NativeStats } from '../native/binding';
import type { Batch } from '../model/tensor';
import type { CheckpointOptions } from './checkpoint';
import type { DistributedOptions, DistributedTimings, JobProgress } from './distributed';
import type { View } from './views';

/** Options of `new CKA(model1, model2, options)`. */
export interface CKAOptions {
  /**
   * Defaults to the model's name (its file's base name). Two models with one
   * name get a TORCH_CKA_SAME_NAMES warning.
   */
  model1Name?: string;
  /** Defaults to model 2's name. */
  model2Name?: string;
  /**
   * Layers of model 1, in the row order wanted; default: every submodule that
   * runs. Entries may be glob patterns (`layer1.*`, `layer*.?.relu`, `**.conv1`):
   * `*` stays within one dotted segment, `**` crosses them; matches come in
   * definition order.
   */
  model1Layers?: readonly string[];
  /** Layers of model 2, in the column order wanted; the same rules as model1Layers. */
  model2Layers?: readonly string[];
  /**
   * Feature views of model 1's layers: `{ [layerPattern]: view }`, with the
   * patterns of model1Layers (a plain name matches that layer exactly; the
   * first matching entry wins; a `#k` suffix is ignored, every call of a
   * module shares its view). Layers matched by none are `flatten`.
   * `spatial-mean` pools a conv's `(N, C, H, W)` output over H and W,
   * `token-mean` and `token:K` take the mean or one token of a transformer's
   * `(N, T, D)` output, so that layers whose token count changes between
   * batches can be compared. A view that does not fit the output fails at the
   * first batch with ERR_VIEW_SHAPE. See docs/views.md.
   */
  model1Views?: Readonly<Record<string, View>>;
  /** Feature views of model 2's layers; the same rules as model1Views. */
  model2Views?: Readonly<Record<string, View>>;
  /** The name of data1 in the results; default `'data1'`. */
  dataset1Name?: string;
  /** The name of data2; default `'data2'`, or data1's name when model 2 sees data1. */
  dataset2Name?: string;
  /**
   * Precision of the all-pairs HSIC products. `float64` (default) adds no
   * error to that of the float32 Gram matrices; `float32` is faster for many
   * layers and large batches. The sums are kept in float64 either way.
   */
  precision?: 'float64' | 'float32';
  /**
   * Intra-op threads for each batch's work: libtorch's (OpenMP) and the
   * BLAS's own pool (OpenBLAS keeps one apart from libtorch's). Default on
   * the CPU: 1, with a batch in flight on every core (`workers`); on a GPU,
   * libtorch's setting, `runtimeInfo().threads`.
   */
  threads?: number;
  /**
   * Batches computed at once, each on a worker thread of its own (both
   * models, its Grams and HSIC terms; on a GPU, its own CUDA stream). They
   * are added in batch order, so the result does not depend on this number,
   * bit for bit. Default on the CPU: the cores this process may use
   * (`runtimeInfo().cores`: its CPU affinity and cgroup quota) divided by
   * `threads` (and by `LOCAL_WORLD_SIZE`, the ranks launched on this
   * machine, in a distributed run); on a GPU, 2. An abort keeps the batches
   * in flight when it came (all of them are added and counted). The memory for Grams grows with it:
   * (layers1 + layers2) x n² x 4 bytes per batch in flight.
   */
  workers?: number;
  /**
   * Run model 1 and model 2 of a batch at once, each on its own thread (on a
   * GPU, its own CUDA stream), each with `threads` threads. Default: on a GPU
   * only (on the CPU, batches in flight keep the cores busy).
   */
  concurrent?: boolean;
  /**
   * A batch with NaN or Inf in a layer's output: `false` (default) fails
   * compare() with ERR_NON_FINITE naming the layer and batch; `true` skips the
   * batch (it adds nothing) with a TORCH_CKA_SKIPPED_BATCH warning.
   */
  skipNonFinite?: boolean;
  /**
   * The similarity measures to compute, each at most once (docs/measures.md):
   * `'cka'` linear minibatch CKA (default `['cka']`), `'rbf_cka'` CKA with a
   * Gaussian kernel, `'dcor'` the bias-corrected distance correlation. Each
   * extra measure costs one more all-pairs product and an n² float64 kernel
   * pass per layer and batch. With `fullBatch` every id of {@link Measure}
   * may be chosen (docs/full-batch.md); without it, only cka, rbf_cka and dcor.
   */
  measures?: readonly Measure[];
  /**
   * The full-batch mode (docs/full-batch.md): compare() takes the first N
   * samples of the data as one evaluation set and computes every measure on
   * its N x N Gram matrices, as one forward pass over all N samples would.
   * A number is `{ samples: N }`. Not with compare()'s `checkpoint` or
   * `distributed` (one set needs neither), and one compare() per object.
   */
  fullBatch?: number | FullBatchOptions;
  /**
   * rbf_cka (and rbf_cka_biased in the full-batch mode, over the whole set): σ of a row = rbfThreshold x √(median squared distance between
   * the samples of the first compared batch), fixed for the whole run.
   * Default 0.5 (Kornblith et al.).
   */
  rbfThreshold?: number;
  /**
   * rbf_cka: a fixed σ for model 1's layers, by layer name or pattern (the
   * same patterns as model1Layers); the first matching entry wins, and
   * layers matched by none get σ from the data.
   */
  model1Sigmas?: Readonly<Record<string, number>>;
  /** rbf_cka: a fixed σ for model 2's layers; the same rules as model1Sigmas. */
  model2Sigmas?: Readonly<Record<string, number>>;
  /** Receives warnings; default: `process.emitWarning`. */
  onWarning?: (warning: CKAWarning) => void;
}

/** A warning of a comparison, as `onWarning` receives it (each message once per CKA object). */
export interface CKAWarning {
  /** What kind of warning: the codes are listed in docs/errors.md. */
  code:
    | 'TORCH_CKA_SKIPPED_BATCH'
    | 'TORCH_CKA_LAYER_LEFT_OUT'
    | 'TORCH_CKA_CONSTANT_LAYER'
    | 'TORCH_CKA_SAME_NAMES'
    | 'TORCH_CKA_UNEVEN_DATA'
    | 'TORCH_CKA_RANK_DEFICIENT'
    | 'TORCH_CKA_FULL_BATCH_SHORT';
  /** One line saying what happened and what was done about it. */
  message: string;
  /**
   * TORCH_CKA_LAYER_LEFT_OUT and TORCH_CKA_RANK_DEFICIENT (one warning per
   * model each): the model whose layers the warning names.
   */
  model?: 'model1' | 'model2';
  /**
   * TORCH_CKA_LAYER_LEFT_OUT: every layer left out, in definition order, each
   * with why (e.g. `it did not run during batch 0`); the message only counts
   * them and names them compactly. TORCH_CKA_RANK_DEFICIENT: the rows that
   * fill the sample space, with their feature count and rank.
   */
  layers?: Array<LeftOutLayer | RankDeficientLayer>;
}

/** A row that fills the centred sample space, as TORCH_CKA_RANK_DEFICIENT lists it. */
export interface RankDeficientLayer {
  /** The row's name (`#k` for a later call). */
  name: string;
  /** d, its features after the view. */
  features: number;
  /** Its numerical rank (eigenvalues above the tolerance). */
  rank?: number;
  /** Why, e.g. `it has 4096 features for 500 samples (d >= N - 1)`. */
  reason: string;
}

/** The `fullBatch` option as an object; `fullBatch: N` is `{ samples: N }`. */
export interface FullBatchOptions {
  /** N, the samples of the evaluation set: the first N of the data (an integer >= 4). */
  samples: number;
  /** svcca: the fraction of each layer's variance its kept principal directions explain, in (0, 1]; default 0.99. */
  svccaVariance?: number;
  /** mknn: the neighbours per sample, an integer with 1 <= k < N; default 10. */
  mknnK?: number;
  /**
   * cca_rho, cca_r2, svcca: the ridge ε >= 0 of regularised CCA; each
   * eigen-direction of a layer is weighted by √(λ / (λ + ε·λmax)). Default 0:
   * plain CCA, whose cells are null for a layer that fills the sample space.
   */
  ccaRidge?: number;
  /**
   * Bytes the comparison may hold (Grams, features, the measures' work,
   * inputs); default: 3/4 of the available memory. Above it: ERR_MEMORY_BUDGET.
   */
  memoryBudget?: number;
}

/** The counts of a compare() call so far, as `onProgress` receives them. */
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
  /**
   * In the full-batch mode: the phase, `reading` (samples appended of N),
   * `forward` (chunk forward passes done of all) or `measures` (units of
   * the measures' work done of all). Reported at least every 250 ms while the
   * engine runs.
   */
  fullBatch?: { phase: 'reading' | 'forward' | 'measures'; done: number; total: number };
}

/** Options of {@link CKA.compare}. */
export interface CompareOptions {
  /** Called after each batch (compared or skipped) with the counts so far. */
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

/** What a compare() call did, as it resolves. */
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

/**
 * A similarity measure (docs/measures.md): `'cka'` linear minibatch CKA,
 * `'rbf_cka'` RBF-kernel CKA, `'dcor'` bias-corrected distance correlation;
 * in the full-batch mode also (docs/full-batch.md) `'linear_cka_biased'`,
 * `'rbf_cka_biased'`, `'cca_rho'`, `'cca_r2'`, `'svcca'`, `'procrustes'`,
 * `'rsa'` and `'mknn'`.
 */
export type Measure =
  | 'cka'
  | 'rbf_cka'
  | 'dcor'
  | 'linear_cka_biased'
  | 'rbf_cka_biased'
  | 'cca_rho'
  | 'cca_r2'
  | 'svcca'
  | 'procrustes'
  | 'rsa'
  | 'mknn';

/** Why a cell of a full-batch matrix is null. */
export type NullReason = 'constant' | 'rank_deficient' | 'no_sigma' | 'zero_norm';

/** What a full-batch result adds about its rows and settings ({@link CKAResult.fullBatchInfo}). */
export interface FullBatchInfo {
  /** The numerical rank of each row's centred features (with cca_rho, cca_r2, svcca or procrustes). */
  ranks?: { model1: number[]; model2: number[] };
  /** Whether each row fills the centred sample space (d >= N - 1 or rank >= N - 1). */
  fills: { model1: boolean[]; model2: boolean[] };
  /** d, the features of each row after its view. */
  features: { model1: number[]; model2: number[] };
  /** svcca: the principal directions kept per row. */
  svccaDims?: { model1: number[]; model2: number[] };
  /** Eigenvalues below eigenTolerance x λmax were dropped (N x 2^-23). */
  eigenTolerance?: number;
  ccaRidge: number;
  svccaVariance: number;
  mknnK: number;
}

/** The result of {@link CKA.export}; the same shape as torch_cka's export(). */
export interface CKAResult {
  model1Name: string;
  model2Name: string;
  /** Row names: model 1's layers, with `#k` for the k-th call of a module run several times. */
  model1Layers: string[];
  /** Column names: model 2's layers. */
  model2Layers: string[];
  /**
   * The feature view of every row (aligned with model1Layers; a `#k` row has
   * its module's view): `flatten` unless model1Views chose another. Result
   * files written before views existed lack it: read it as all `flatten`.
   */
  model1Views: string[];
  /** The feature view of every column, aligned with model2Layers. */
  model2Views: string[];
  dataset1Name: string;
  dataset2Name: string;
  /**
   * Minibatch (linear) CKA, rows = model1Layers; null where a layer does not
   * vary over the data. Absent when `measures` did not include `'cka'`.
   */
  cka?: Array<Array<number | null>>;
  /**
   * Every measured matrix by measure id (same rows and columns as `cka`);
   * null where a layer does not vary, or (rbf_cka) where its σ is undefined.
   * Result files written before measures existed lack it: read it as
   * `{ cka: result.cka }`.
   */
  measures?: { [id: string]: Array<Array<number | null>> };
  /**
   * Present when rbf_cka was measured: the threshold and the σ actually used
   * per row and column (null where undefined: the median squared distance was 0).
   */
  rbf?: { threshold: number; sigma1: Array<number | null>; sigma2: Array<number | null> };
  /** The full-batch mode: N, the samples of the evaluation set. Absent in the streaming mode. */
  fullBatch?: number;
  /**
   * The full-batch mode: why each null cell is null (`constant`,
   * `rank_deficient`, `no_sigma`, `zero_norm`; null where there is a value),
   * for the measures with at least one null cell.
   */
  nullReasons?: { [id: string]: Array<Array<NullReason | null>> };
  /** The full-batch mode: ranks, features and settings behind the matrices. */
  fullBatchInfo?: FullBatchInfo;
  /** Samples compared (skipped batches not included); in the full-batch mode N. */
  samples: number;
  /** Batches compared; 1 in the full-batch mode (one set). */
  batches: number;
}

/** What a comparison holds and did; see {@link CKA.stats}. */
export type CKAStats = NativeStats;

/** Batches for one model: any Iterable or AsyncIterable (arrays, generators, torch-cka Datasets). */
export type DataSource = Iterable<Batch> | AsyncIterable<Batch>;

/** A layer left out of a default selection, as the warning's `layers` lists it. */
export interface LeftOutLayer {
  /** The module's dotted path. */
  name: string;
  /** The error naming it would give: ERR_LAYER_NOT_RUN, ERR_NO_TENSOR_OUTPUT or ERR_LAYER_SHAPE. */
  code: NativeLeftOut['code'];
  /** Why, e.g. `it did not run during batch 0`. */
  reason: string;
}

/** @deprecated The old spelling of {@link CKAWarning}. */
export type CkaWarning = CKAWarning;
