// Loads the compiled addon and types the raw binding. Nothing else in the
// package touches the .node file.
import path from 'node:path';

import { ErrorCodes, makeError } from '../util/errors';
import { checkLoadedLibtorch, loadFailureMessage } from './libtorch';
import type { DType, TensorData, TensorLike } from '../model/tensor';

export interface NativeLayer {
  name: string;
  type: string;
  callable: boolean;
  outputType: string;
}

export interface NativeTensor {
  data: TensorData;
  shape: number[];
  dtype: DType;
}

export interface NativeModel {
  readonly path: string;
  readonly device: string;
  readonly disposed: boolean;
  layers(): NativeLayer[];
  extract(batch: TensorLike | TensorLike[], layers: string[]): Promise<Array<[string, NativeTensor]>>;
  /** Forward alone, in inference mode, no taps recording: the benchmark's floor. */
  forwardOnly(batch: TensorLike | TensorLike[], threads?: number): Promise<void>;
  dispose(): void;
}

export interface NativeCKAOptions {
  layers1: string[];
  layers2: string[];
  /** One view name per layer of model 1 (its layers() order); absent: all flatten. */
  views1?: string[];
  views2?: string[];
  label1: string;
  label2: string;
  precision?: 'float64' | 'float32';
  threads?: number;
  workers?: number;
  concurrent?: boolean;
  skipNonFinite?: boolean;
  measures?: string[];
  rbfThreshold?: number;
  /** User σ per model layer index (null: from the data). */
  sigmas1?: Array<number | null>;
  sigmas2?: Array<number | null>;
}

export interface NativeTimes {
  /** In the models' forward passes, the taps' own work excluded. */
  forwardMs: number;
  /** In the taps besides the Gram products: views, casts, means, centring. */
  tapMs: number;
  /** Gram products and the pass over each Gram (its row sums and norm). */
  gramMs: number;
  /** Pair products and the HSIC terms of every measure. */
  pairMs: number;
  /** Batches done, waiting for the batches before them to be added. */
  waitMs: number;
  /** Wall-clock time of the native calls (not summed over workers). */
  wallMs: number;
  /** Batches timed. */
  batches: number;
}

export interface NativeStats {
  /** Bytes of the float64 sums: (m·p + m + p) x 8 per measure. */
  accumulatorBytes: number;
  /** Bytes of the last batch's Gram matrices: (m + p) x n² x 4 (once when both sides share them). */
  gramBytes: number;
  /** Bytes of float64 copies of Gram blocks alive at once in the last batch: at most 32 MB. */
  blockBytes: number;
  /** Forward passes run (one per batch for the same model on the same data). */
  forwards: number;
  /** Gram matrices copied from an identical tensor instead of computed. */
  reusedGrams: number;
  /** Intra-op threads per model in the last batch. */
  threads: number;
  /** Whether the last batch ran both models at once. */
  concurrent: boolean;
  /** Batches computed at once in the last call. */
  workers: number;
  /** Where the time went, in milliseconds summed over the batches (and the workers) so far. */
  times: NativeTimes;
}

export interface NativeSteps {
  outcomes: NativeStep[];
  error: Error | null;
}

export interface NativeStep {
  n: number;
  skipped: boolean;
  /** Why a skipped batch was skipped: fewer than 4 samples, or NaN/Inf with skipNonFinite. */
  skipReason?: 'small' | 'non_finite';
  /** Why the batch was skipped, in words (left-out layers come in `leftOut`). */
  warnings: string[];
  /** Layers left out of a default selection by the batch that fixed the rows. */
  leftOut: NativeLeftOut[];
}

export interface NativeLeftOut {
  model: 1 | 2;
  /** The module's dotted path. */
  name: string;
  /** What naming the layer would fail with. */
  code: 'ERR_LAYER_NOT_RUN' | 'ERR_NO_TENSOR_OUTPUT' | 'ERR_LAYER_SHAPE';
  /** Why, e.g. `it did not run during batch 0`. */
  reason: string;
}

/** A row: [layer index, call (1-based), name]. */
export type NativeRow = [number, number, string];

/** The sums and counts of a comparison, for checkpoints. */
export interface NativeState {
  rows1: NativeRow[];
  rows2: NativeRow[];
  xy: Float64Array;
  xx: Float64Array;
  yy: Float64Array;
  /** RBF σ per row (NaN: undefined); absent or empty without rbf_cka. */
  sigma1?: Float64Array;
  sigma2?: Float64Array;
  steps: number;
  batches: number;
  samples: number;
  skipped: number;
}

export interface NativeResult {
  rows1: string[];
  rows2: string[];
  /** One matrix per measure, in the order of the config's measures. */
  matrices: Array<Array<Array<number | null>>>;
  sigma1: Array<number | null>;
  sigma2: Array<number | null>;
  self1: number[];
  self2: number[];
  samples: number;
  batches: number;
  skipped: number;
  warnings: string[];
}

/** The settings of one full-batch run (`fullRun`); see docs/full-batch.md. */
export interface NativeFullBatchOptions {
  /**
   * Full-batch measure ids, each at most once, in the order of the result: `cka`, `linear_cka_biased`,
   * `rbf_cka`, `rbf_cka_biased`, `dcor`, `cca_rho`, `cca_r2`, `svcca`, `procrustes`, `rsa`, `mknn`.
   */
  measures: string[];
  /** RBF σ = rbfThreshold x √(median d²) over the set, per layer (unless the layer has a user σ): 0.5. */
  rbfThreshold: number;
  /** The share of each side's variance that SVCCA's leading directions keep, in (0, 1]: 0.99. */
  svccaVariance: number;
  /** Neighbours per sample of `mknn`, an integer with 1 <= k < N: 10. */
  mknnK: number;
  /** Ridge CCA's ε (>= 0): 0 is plain CCA, whose cells of a layer filling the sample space are null. */
  ccaRidge: number;
  /** Bytes the run may hold; 0: 3/4 of MemAvailable (/proc/meminfo), or of the physical memory. */
  memoryBudget: number;
}

/** What a full-batch run held and did. */
export interface NativeFullStats {
  /** Model forward passes run, the discovery pass on chunk 0 included. */
  forwards: number;
  /** Chunks appended. */
  chunks: number;
  /** Groups of chunks whose features were held at once; more than 1 runs chunks again. */
  groups: number;
  /** inputBytes + gramBytes + featureBytes + measureBytes, estimated before the passes past chunk 0. */
  estimateBytes: number;
  /** The budget the estimate was held against. */
  budgetBytes: number;
  /** The Grams: distinct layer outputs x N² x 4 (plus N x 8 for their dots), once when both sides share them. */
  gramBytes: number;
  /** The largest group's float32 features plus one layer's working copies. */
  featureBytes: number;
  /** What the measure phase allocates at once beyond the Grams. */
  measureBytes: number;
  /** The appended chunks' inputs. */
  inputBytes: number;
  /** Time in the models' forward passes, the Gram work in the taps excluded. */
  forwardMs: number;
  /** Time shifting features and making the Gram blocks. */
  gramMs: number;
  /** Time computing the measures from the Grams. */
  measureMs: number;
}

/** The result of a full-batch run. */
export interface NativeFullResult {
  rows1: string[];
  rows2: string[];
  /** The measure ids in the order asked. */
  measures: string[];
  /** Per measure, rows1 x rows2 (null: no value; the reason is in `reasons`). */
  matrices: Array<Array<Array<number | null>>>;
  /** Per measure, rows1 x rows2: null where there is a value, else `constant`, `rank_deficient`, `no_sigma` or `zero_norm`. */
  reasons: Array<Array<Array<string | null>>>;
  /** RBF σ per row (null: undefined); [] without an rbf measure. */
  sigma1: Array<number | null>;
  sigma2: Array<number | null>;
  /** Numerical rank of each row's centred features; [] without an eigen measure (cca_rho, cca_r2, svcca, procrustes). */
  rank1: number[];
  rank2: number[];
  /** Whether each row fills the centred sample space (d >= N - 1 or rank >= N - 1). */
  fills1: boolean[];
  fills2: boolean[];
  /** d per row after its view. */
  features1: number[];
  features2: number[];
  /** Directions SVCCA kept per row; [] without svcca. */
  svccaDims1: number[];
  svccaDims2: number[];
  /** Eigenvalues below eigenTolerance x λmax of a centred Gram were dropped. */
  eigenTolerance: number;
  /** N, the samples of the set. */
  samples: number;
  /** Layers left out of a default selection by the pass on chunk 0. */
  leftOut: NativeLeftOut[];
  /** Constant layers and layers without an RBF σ, in words. */
  warnings: string[];
  stats: NativeFullStats;
}

/** Where a full-batch run is: chunk forward passes done of all, or units of the measure phase. */
export interface NativeFullProgress {
  phase: 'idle' | 'forward' | 'measures';
  done: number;
  total: number;
}

export interface NativeCKA {
  readonly busy: boolean;
  step(inputs1: TensorLike | TensorLike[], inputs2: TensorLike | TensorLike[] | null): Promise<NativeStep>;
  /**
   * Several batches, up to `workers` computed at once and added in order:
   * the outcomes of those added or skipped, then the first failure (or null).
   */
  steps(batches: Array<[TensorLike | TensorLike[], TensorLike | TensorLike[] | null]>): Promise<NativeSteps>;
  /** Batches this comparison computes at once. */
  readonly workers: number;
  /** Frees the Gram buffers kept for the next batches (end of a compare() call). */
  trim(): void;
  result(): NativeResult;
  stats(): NativeStats;
  /** The running step adds nothing and rejects with ABORT_ERR. */
  cancel(): void;
  state(): NativeState;
  restore(state: NativeState): void;
  /** Drops the sums, counts and planned rows. */
  reset(): void;
  /** Fixes the rows and RBF σ from one batch without adding it (a distributed rank's batch 0). */
  calibrate(inputs1: TensorLike | TensorLike[], inputs2: TensorLike | TensorLike[] | null): Promise<unknown>;
  /** The RBF σ per row once fixed (NaN: undefined), else empty arrays. */
  sigmas(): { sigma1: Float64Array; sigma2: Float64Array };
  /**
   * Copies one chunk of the evaluation set (the first `count` samples of these inputs) into the engine.
   * Both sides need the same n >= count >= 1; ERR_BUSY while a run is in flight.
   */
  fullAppend(inputs1: TensorLike | TensorLike[], inputs2: TensorLike | TensorLike[] | null, count: number): void;
  /**
   * Runs the full-batch comparison on the appended chunks (off the main thread). Rejects with
   * ERR_INVALID_ARG (no chunks, N < 4, mknnK >= N, an unknown measure), ERR_MEMORY_BUDGET (not even one
   * chunk's features fit the budget), ERR_NON_FINITE, ABORT_ERR after cancel().
   */
  fullRun(options: NativeFullBatchOptions): Promise<NativeFullResult>;
  /** Where fullRun is: phase 'forward' (chunk forward passes done/total) or 'measures' (units done/total). */
  fullProgress(): NativeFullProgress;
  /** Drops the appended chunks (after fullRun, or to start over). */
  fullClear(): void;
}

export interface NativeGroupConfig {
  rank: number;
  worldSize: number;
  masterAddr: string;
  masterPort: number;
  timeoutMs: number;
  backend: string;
  /** NCCL: the rank's GPU index; -1 otherwise. */
  cudaDevice: number;
  /** Gloo's network interface; '' picks it by address. */
  ifname: string;
  /** Without ifname: this host's address towards masterAddr; '' for the host name's. */
  localAddr: string;
}

/** A c10d rendezvous store plus collective backend; every method runs off the main thread. */
export interface NativeGroup {
  set(key: string, value: string): Promise<void>;
  /** null for keys not set; does not wait for them. */
  get(keys: string[]): Promise<Array<string | null>>;
  add(key: string, delta: number): Promise<number>;
  connectBackend(): Promise<void>;
  allreduce(values: Float64Array): Promise<Float64Array>;
  /** Rank 0 first waits (up to lingerMs) for the counter finishedKey to reach expected. */
  close(finishedKey: string, lingerMs: number, expected: number): Promise<void>;
}

export interface RuntimeInfo {
  /** The libtorch version the addon was built for (the process has the same: it is checked at load). */
  libtorchVersion: string;
  /** The libtorch_cpu library the process loaded (which libtorch: see docs/install.md, Troubleshooting). */
  libtorchFile: string;
  /** Whether the linked libtorch has CUDA and sees a GPU. */
  cudaAvailable: boolean;
  /** GPUs libtorch sees. */
  cudaDeviceCount: number;
  /** libtorch's intra-op threads (OpenMP) on the main thread. */
  threads: number;
  /** libtorch's inter-op threads. */
  interopThreads: number;
  /** CPU cores this process may use: its CPU affinity, capped by its cgroup's CPU quota. */
  cores: number;
  /** Hardware threads the machine reports (std::thread::hardware_concurrency). */
  hardwareThreads: number;
  /** The BLAS found in the process for the Gram matrices, e.g. `openblas (syrk)`. */
  blas: string;
  /** Collective backends of this build for distributed compare(): 'gloo', 'nccl'. */
  distributedBackends: string[];
}

/** Benchmark only: GFLOP/s of the best of several calls on random CPU data (k = 2048). */
export interface NativeBlasRates {
  /** n x k float32 Gram through syrk, counted as n(n+1)·k FLOPs. */
  ssyrkGflops: number;
  /** (m x k)·(k x p) float32. */
  sgemmGflops: number;
  /** The same in float64. */
  dgemmGflops: number;
  threads: number;
  n: number;
  m: number;
  p: number;
  k: number;
}

/** Benchmark only: linear minibatch CKA computed the way pytorch-cka does (native/core/bench_kit.h). */
export interface NativePeerRun {
  rows1: string[];
  rows2: string[];
  /** rows1 x rows2 (null: undefined). */
  cka: Array<Array<number | null>>;
  /** d per row (the output flattened after the batch dimension). */
  features1: number[];
  features2: number[];
  /** Wall time of the whole loop: both forwards and all the arithmetic. */
  seconds: number;
}

export interface Binding {
  loadModel(path: string, device: string, instrument?: boolean): Promise<NativeModel>;
  NativeCKA: new (model1: NativeModel, model2: NativeModel, options: NativeCKAOptions) => NativeCKA;
  runtimeInfo(): RuntimeInfo;
  connectGroup(config: NativeGroupConfig): Promise<NativeGroup>;
  /** Benchmark only: sets libtorch's and the BLAS's threads (0: the current count) and leaves them so. */
  benchBlasRates(n: number, m: number, p: number, threads: number): Promise<NativeBlasRates>;
  /**
   * Benchmark only: the peer-like baseline on tapped models (empty layer lists: every layer); each
   * batch is one input of at least 4 samples. Sets the threads as benchBlasRates does.
   */
  peerBaseline(
    model1: NativeModel,
    model2: NativeModel,
    layers1: string[],
    layers2: string[],
    batches: TensorLike[],
    threads: number,
  ): Promise<NativePeerRun>;
}

let cached: Binding | undefined;

/**
 * The addon: build/Release when built here, else the prebuilt binary for this
 * platform (node-gyp-build picks it). Checks that the libtorch the process
 * loaded is the one the addon was built for.
 */
export function binding(): Binding {
  if (cached) return cached;
  const root = path.join(__dirname, '..', '..');
  let file: string | undefined;
  let loaded: Binding;
  try {
    // TORCH_CKA_NATIVE names another build of the addon (the sanitizer run uses it).
    const override = process.env.TORCH_CKA_NATIVE;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const load = require('node-gyp-build') as { resolve(dir: string): string };
    file = override ? path.resolve(override) : load.resolve(root);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    loaded = require(file) as Binding;
  } catch (cause) {
    const error = makeError(Error, ErrorCodes.NATIVE_LOAD, loadFailureMessage(cause, file));
    (error as Error & { cause?: unknown }).cause = cause;
    throw error;
  }
  const info = loaded.runtimeInfo();
  checkLoadedLibtorch(info.libtorchVersion, info.libtorchFile);
  cached = loaded;
  return cached;
}
