/**
 * Stable error codes: the one list. The native side's constants
 * (native/core/error_codes.h) are generated from it by scripts/make-error-codes.js.
 */
export const ErrorCodes = {
  /** The model path does not exist. */
  MODEL_NOT_FOUND: 'ERR_MODEL_NOT_FOUND',
  /** libtorch could not load a file that looked like TorchScript (damaged contents). */
  MODEL_LOAD: 'ERR_MODEL_LOAD',
  /** The model path is a folder, a device or pipe, or cannot be read (permissions). */
  MODEL_UNREADABLE: 'ERR_MODEL_UNREADABLE',
  /** The model file has 0 bytes. */
  MODEL_EMPTY: 'ERR_MODEL_EMPTY',
  /** Not a zip archive, a cut-off or damaged one, or one PyTorch did not write (Git LFS pointers, web pages, ...). */
  MODEL_FORMAT: 'ERR_MODEL_FORMAT',
  /** torch.save output (a state_dict, a checkpoint dict, a pickled module), a pickle or another weights format. */
  MODEL_NOT_TORCHSCRIPT: 'ERR_MODEL_NOT_TORCHSCRIPT',
  /** TorchScript written by a newer PyTorch than the linked libtorch reads. */
  MODEL_VERSION: 'ERR_MODEL_VERSION',
  /** A device string that is not `cpu`, `cuda` or `cuda:N`. */
  INVALID_DEVICE: 'ERR_INVALID_DEVICE',
  /** `cuda` on a libtorch without CUDA or a machine without a GPU, or `cuda:N` beyond the GPUs present. */
  DEVICE_UNAVAILABLE: 'ERR_DEVICE_UNAVAILABLE',
  /** A model's forward uses a device other than the one it was loaded on (code made for a GPU run on the CPU). */
  DEVICE_MISMATCH: 'ERR_DEVICE_MISMATCH',
  /** A layer name or pattern that matches no submodule; the closest names are suggested. */
  UNKNOWN_LAYER: 'ERR_UNKNOWN_LAYER',
  /** A layer listed twice, or a `name#k` already covered by `name`. */
  DUPLICATE_LAYER: 'ERR_DUPLICATE_LAYER',
  /** A layer whose output holds no tensor (by its type, or at run time). */
  NO_TENSOR_OUTPUT: 'ERR_NO_TENSOR_OUTPUT',
  /** A container without `forward` (`ModuleList`, `ModuleDict`). */
  LAYER_NOT_CALLABLE: 'ERR_LAYER_NOT_CALLABLE',
  /** A chosen layer (or `name#k` call) that did not run during a batch. */
  LAYER_NOT_RUN: 'ERR_LAYER_NOT_RUN',
  /** A module runs more often in a later batch than in the first (its rows would change), or a forward pass makes more than 100,000 tapped calls. */
  LAYER_CALL_COUNT: 'ERR_LAYER_CALL_COUNT',
  /** A chosen layer's output does not have the batch as its first dimension. */
  LAYER_SHAPE: 'ERR_LAYER_SHAPE',
  /** A layer's feature view does not fit its output (`token-mean` on a 4-D tensor, a token out of range, `spatial-mean` on 1-D). */
  VIEW_SHAPE: 'ERR_VIEW_SHAPE',
  /** An empty layer list, or a model with no submodules (e.g. frozen with `torch.jit.freeze`). */
  NO_LAYERS: 'ERR_NO_LAYERS',
  /** The model's forward failed on a batch (usually a wrong shape or dtype); libtorch's error without its tracebacks. */
  FORWARD_FAILED: 'ERR_FORWARD_FAILED',
  /** The two data streams gave different sample counts in one step. */
  BATCH_SIZE_MISMATCH: 'ERR_BATCH_SIZE_MISMATCH',
  /** A batch that is not a Tensor or `{ data, shape }`, a shape that does not match its data, or no batch dimension. */
  INVALID_BATCH: 'ERR_INVALID_BATCH',
  /** NaN or Inf in a layer's output; nothing of that batch is added (see `skipNonFinite`). */
  NON_FINITE: 'ERR_NON_FINITE',
  /** `export()` before any batch was compared (skipped batches do not count). */
  NO_DATA: 'ERR_NO_DATA',
  /** A full-batch comparison would need more memory than its budget (`fullBatch.memoryBudget`, `--memory-budget`); the message gives the estimate and what to lower. */
  MEMORY_BUDGET: 'ERR_MEMORY_BUDGET',
  /** A model used after `dispose()`. */
  DISPOSED: 'ERR_DISPOSED',
  /** `compare()` or `export()` while a `compare()` runs on the same object. */
  BUSY: 'ERR_BUSY',
  /** A wrong argument or option: its type (a TypeError) or its value (a RangeError). */
  INVALID_ARG: 'ERR_INVALID_ARG',
  /** `compare()` stopped by its `signal`; `error.name` is `AbortError`, `error.cause` the signal's reason. */
  ABORTED: 'ABORT_ERR',
  /** The native addon could not be loaded (not built, or its libtorch is missing); the message says how to rebuild. */
  NATIVE_LOAD: 'ERR_NATIVE_LOAD',
  /** The libtorch in the process is another version than the one the addon was built for. */
  LIBTORCH_VERSION: 'ERR_LIBTORCH_VERSION',
  /** An error the native code did not expect: still a clean rejection, never a crash; please report it. */
  INTERNAL: 'ERR_INTERNAL',
  /** A data file or folder does not exist or cannot be read. */
  DATA_NOT_FOUND: 'ERR_DATA_NOT_FOUND',
  /** A data file's header or layout is not what its format requires (or the format is unknown). */
  DATA_FORMAT: 'ERR_DATA_FORMAT',
  /** A data file ends before the records its header or size promise. */
  DATA_TRUNCATED: 'ERR_DATA_TRUNCATED',
  /** Samples of one data set differ in shape (e.g. images of different sizes without resize). */
  DATA_SHAPE: 'ERR_DATA_SHAPE',
  /** An image file could not be decoded. */
  IMAGE_DECODE: 'ERR_IMAGE_DECODE',
  /** A results object (or results.json) is not what CKA.export() returns. */
  INVALID_RESULT: 'ERR_INVALID_RESULT',
  /** The command line is wrong: an unknown command or option, or a missing or bad value. */
  USAGE: 'ERR_USAGE',
  /** A checkpoint file is damaged or not a torch-cka checkpoint. */
  CHECKPOINT_FORMAT: 'ERR_CHECKPOINT_FORMAT',
  /** A checkpoint was made with other models, layers, data or settings than the comparison it is resumed into. */
  CHECKPOINT_MISMATCH: 'ERR_CHECKPOINT_MISMATCH',
  /** Distributed settings are missing or wrong (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, the `distributed` option). */
  DIST_CONFIG: 'ERR_DIST_CONFIG',
  /** The rendezvous store could not be served or reached (a port in use, an address that does not resolve). */
  DIST_CONNECT: 'ERR_DIST_CONNECT',
  /** A rank died, hangs or never arrived: the others gave up after the timeout. */
  DIST_TIMEOUT: 'ERR_DIST_TIMEOUT',
  /** The ranks were started with different models, layers, data or settings (or two claim one rank). */
  DIST_MISMATCH: 'ERR_DIST_MISMATCH',
  /** Another rank failed with an error; this one stopped too. */
  DIST_RANK_FAILED: 'ERR_DIST_RANK_FAILED',
  /** This build has no such backend (Gloo needs its headers at build time; NCCL a CUDA libtorch). */
  DIST_UNAVAILABLE: 'ERR_DIST_UNAVAILABLE',
} as const;

/** One of the values of {@link ErrorCodes}. */
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** An Error, TypeError or RangeError carrying one of {@link ErrorCodes} as `code`. */
export interface CKAError extends Error {
  code: ErrorCode;
}

/** @deprecated The old spelling of {@link CKAError}. */
export type CkaError = CKAError;

type ErrorClass = typeof Error | typeof TypeError | typeof RangeError;

export function makeError(Kind: ErrorClass, code: ErrorCode, message: string): CKAError {
  const error = new Kind(message) as CKAError;
  error.code = code;
  return error;
}

export const invalidArgType = (message: string): CKAError => makeError(TypeError, ErrorCodes.INVALID_ARG, message);
export const invalidArgValue = (message: string): CKAError => makeError(RangeError, ErrorCodes.INVALID_ARG, message);

/** Describes a received value for messages: "1.5", "a string", "an array", ... */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'number':
    case 'boolean':
    case 'bigint':
      return String(value);
    case 'string':
      return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
    case 'undefined':
      return 'undefined';
    case 'function':
      return 'a function';
    default:
      return (value as object).constructor?.name ? `a ${(value as object).constructor.name}` : 'an object';
  }
}
