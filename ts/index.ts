export { CKA } from './cka';
export type {
  CKAOptions,
  CKAResult,
  CompareOptions,
  CompareProgress,
  CompareSummary,
  CkaWarning,
  DataSource,
} from './cka';
export { ErrorCodes } from './errors';
export type { CkaError, ErrorCode } from './errors';
export { loadModel, Model } from './model';
export type { LayerInfo, LoadModelOptions } from './model';
export { Tensor } from './tensor';
export type { Batch, DType, TensorData, TensorLike } from './tensor';
export { runtimeInfo } from './runtime';
export type { RuntimeInfo } from './binding';
