// The public entry point. Its two declarations below travel into dist/index.d.ts
// (and so into every consumer's program), so that our .d.ts files type-check
// whatever the consumer's tsconfig (docs/typescript.md):
// - the reference loads @types/node, which our signatures use (Buffer,
//   NodeJS.ProcessEnv, AbortSignal): TypeScript 6+ (and `tsc --init` of 5.9+)
//   no longer load @types/* on their own. `preserve="true"` keeps it in the
//   emitted .d.ts (TypeScript 5.5+ drops it otherwise).
// - Symbol.asyncDispose (Model[Symbol.asyncDispose]) is declared here, so a
//   consumer needs no `lib: esnext`; it merges with lib.esnext.disposable's and
//   @types/node's own declaration of it.
/// <reference types="node" preserve="true" />

declare global {
  interface SymbolConstructor {
    readonly asyncDispose: unique symbol;
  }
}

export { CKA } from './compare/cka';
export type {
  CKAOptions,
  CKAResult,
  CKAStats,
  CKAWarning,
  CkaWarning,
  CompareOptions,
  CompareProgress,
  CompareSummary,
  DataSource,
  FullBatchInfo,
  FullBatchOptions,
  LeftOutLayer,
  Measure,
  NullReason,
  RankDeficientLayer,
} from './compare/types';
export type { FullBatchStats } from './compare/full-batch';
export type { View, ViewMap } from './compare/views';
export { distributedEnv } from './compare/distributed';
export type { DistributedInfo, DistributedOptions, DistributedTimings, JobProgress } from './compare/distributed';
export { ErrorCodes } from './util/errors';
export type { CKAError, CkaError, ErrorCode } from './util/errors';
export { loadModel, Model } from './model/model';
export type { LayerInfo, LoadModelOptions } from './model/model';
export { Tensor } from './model/tensor';
export type { Batch, DType, TensorData, TensorLike } from './model/tensor';
export { runtimeInfo } from './native/runtime';
export type { RuntimeInfo } from './native/binding';
export {
  Cifar10Dataset,
  Dataset,
  NORMALIZE_PRESETS,
  openDataset,
  readCifar10,
  readIdx,
  readImageFolder,
  readNpy,
  readNpz,
  NpzDataset,
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
  NpzOptions,
  NpzInput,
  OpenDatasetOptions,
  SizeOption,
} from './data';
export { heatmapPng, heatmapSvg, svgToPng, validateResult } from './plot';
export type { ColormapName, HeatmapOptions, PlotWarning, PngOptions } from './plot';
export { bestMatches, reportHtml } from './report';
export type { BestMatch, ReportDatasetInfo, ReportInfo, ReportModelInfo } from './report';
