export { CKA } from './cka';
export type {
  CKAOptions,
  CKAResult,
  CKAStats,
  CompareOptions,
  CompareProgress,
  CompareSummary,
  CkaWarning,
  DataSource,
} from './cka';
export { distributedEnv } from './distributed';
export type { DistributedInfo, DistributedOptions, DistributedTimings, JobProgress } from './distributed';
export { ErrorCodes } from './errors';
export type { CkaError, ErrorCode } from './errors';
export { loadModel, Model } from './model';
export type { LayerInfo, LoadModelOptions } from './model';
export { Tensor } from './tensor';
export type { Batch, DType, TensorData, TensorLike } from './tensor';
export { runtimeInfo } from './runtime';
export type { RuntimeInfo } from './binding';
export {
  Cifar10Dataset,
  Dataset,
  NORMALIZE_PRESETS,
  openDataset,
  readCifar10,
  readIdx,
  readImageFolder,
  readNpy,
} from './data';
export type {
  Cifar10Options,
  DataFormat,
  DataOptions,
  IdxOptions,
  ImageFolderOptions,
  MeanStd,
  NormalizeOption,
  NpyOptions,
  OpenDatasetOptions,
  SizeOption,
} from './data';
export { heatmapPng, heatmapSvg, svgToPng, validateResult } from './plot';
export type { ColormapName, HeatmapOptions, PlotWarning, PngOptions } from './plot';
export { bestMatches, reportHtml } from './report';
export type { BestMatch, ReportDatasetInfo, ReportInfo, ReportModelInfo } from './report';
