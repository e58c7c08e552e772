// Streaming data readers: async iterables of Tensor batches read from disk.
export { Dataset } from './dataset';
export type { DataFormat } from './dataset';
export { Cifar10Dataset, readCifar10 } from './cifar10';
export { readIdx } from './idx';
export { readImageFolder } from './images';
export { readNpy } from './npy';
export { NpzDataset, readNpz } from './npz';
export type { NpzInput } from './npz';
export { openDataset } from './open';
export { NORMALIZE_PRESETS } from './options';
export type {
  Cifar10Options,
  DataOptions,
  IdxOptions,
  ImageFolderOptions,
  MeanStd,
  NormalizeOption,
  NpyOptions,
  NpzOptions,
  OpenDatasetOptions,
  SizeOption,
} from './options';
