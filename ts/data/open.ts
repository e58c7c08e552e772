// Picks a reader from what is at a path: for the command line, or anyone who takes any data set.
import * as path from 'node:path';
import { optionalOneOf, requireString } from '../util/is';
import { readCifar10, hasCifarBatches } from './cifar10';
import type { Dataset } from './dataset';
import { badFormat, hex, readHead, statPath } from './files';
import { gunzipHead, isGzip, isIdxMagic, readIdx } from './idx';
import { readImageFolder } from './images';
import { readNpy } from './npy';
import { type NpzDataset, optionalInputs, readNpz } from './npz';
import {
  optionalChannels,
  optionalNormalize,
  optionalSize,
  type OpenDatasetOptions,
  resolveDataOptions,
} from './options';

const NPY_MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];

const ZIP_MAGIC = [0x50, 0x4b, 0x03, 0x04];

const SUPPORTED =
  'a .npy file, an .npz archive, a CIFAR-10 binary batch (.bin) or a folder of them, an IDX image file (MNIST, plain or gzipped) or a folder of JPEG/PNG/WebP images';

/**
 * Opens whatever data set is at `target`: a `.npy` file; an `.npz` archive
 * (or any file that starts like a zip), whose batches are arrays of tensors
 * (see {@link readNpz}); a `.bin` file, or a
 * folder holding `data_batch_N.bin` / `test_batch.bin` (CIFAR-10); a file that
 * starts with an IDX magic number, plain or gzipped (MNIST); any other folder
 * (images). All options are checked; those that do not apply to the format
 * found are ignored (e.g. `resize` for a .npy file).
 */
export async function openDataset(target: string, options?: OpenDatasetOptions): Promise<Dataset | NpzDataset> {
  requireString(target, 'path');
  const { opts } = resolveDataOptions(options);
  optionalOneOf(opts.split, ['train', 'test', 'all'] as const, 'options.split');
  optionalNormalize(opts.normalize, 'options.normalize');
  optionalSize(opts.resize, 'options.resize');
  optionalSize(opts.centerCrop, 'options.centerCrop');
  optionalChannels(opts.channels, 'options.channels');
  optionalInputs(opts.inputs, 'options.inputs');

  const stats = await statPath(target, 'a data file or folder');
  if (stats.isDirectory()) {
    return (await hasCifarBatches(target)) ? readCifar10(target, options) : readImageFolder(target, options);
  }
  const extension = path.extname(target).toLowerCase();
  if (extension === '.npy') return readNpy(target, options);
  if (extension === '.npz') return readNpz(target, options);
  if (extension === '.bin') return readCifar10(target, options);
  const head = await readHead(target, 8);
  if (head.length >= 6 && NPY_MAGIC.every((b, i) => head[i] === b)) return readNpy(target, options);
  if (head.length >= 4 && ZIP_MAGIC.every((b, i) => head[i] === b)) return readNpz(target, options);
  if (isIdxMagic(head)) return readIdx(target, options);
  if (isGzip(head)) {
    const inner = await gunzipHead(target, 8).catch(() => new Uint8Array(0));
    if (isIdxMagic(inner)) return readIdx(target, options);
  }
  throw badFormat(`Expected ${SUPPORTED} but ${target} is none of them (it starts with ${hex(head.subarray(0, 4))})`);
}
