// A folder of JPEG, PNG and WebP images, decoded with sharp.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Sharp } from 'sharp';
import { type CKAError, ErrorCodes, makeError } from '../util/errors';
import { requireString } from '../util/is';
import { Tensor } from '../model/tensor';
import { type BatchReader, type BatchSource, Dataset } from './dataset';
import { badFormat, notFound, statPath } from './files';
import {
  channelStats,
  type ImageFolderOptions,
  normalizeInPlace,
  optionalChannels,
  optionalNormalize,
  optionalSize,
  resolveDataOptions,
  type SizeOption,
} from './options';

const EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp'];
const CONCURRENCY = Math.max(1, Math.min(8, os.availableParallelism()));

type SharpFactory = (input: string, options?: { failOn?: 'none' | 'truncated' | 'error' | 'warning' }) => Sharp;
let sharpFactory: SharpFactory | undefined;
const loadSharp = (): SharpFactory => {
  // Loaded on first use, so that the rest of the package works where sharp cannot load.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  sharpFactory ??= require('sharp') as SharpFactory;
  return sharpFactory;
};

const decodeError = (file: string, error: unknown): CKAError =>
  makeError(Error, ErrorCodes.IMAGE_DECODE, `Could not decode the image ${file}: ${(error as Error).message}`);

const shapeError = (message: string): CKAError => makeError(Error, ErrorCodes.DATA_SHAPE, message);

const pair = (size: SizeOption): [number, number] => (typeof size === 'number' ? [size, size] : [size[0], size[1]]);

/** torchvision Resize(int): the shorter side becomes `size`, the longer keeps the aspect ratio (truncated). */
function resizedSize(size: SizeOption, height: number, width: number): [number, number] {
  if (typeof size !== 'number') return [size[0], size[1]];
  if (width <= height) return [Math.floor((size * height) / width), size];
  return [size, Math.floor((size * width) / height)];
}

/** Python's round(): halves go to the even neighbour (torchvision's centre-crop offsets use it). */
const roundHalfEven = (x: number): number => {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
};

/** Offset of a centre crop of `crop` out of `size` (negative: padding). */
const cropOffset = (size: number, crop: number): number =>
  size >= crop ? roundHalfEven((size - crop) / 2) : -Math.floor((crop - size) / 2);

/** Image files under `root` (recursive, dot-names skipped), sorted by relative path with '/' separators. */
async function listImages(root: string): Promise<string[]> {
  const found: string[] = [];
  // Real paths of the folders walked, so that a symbolic link to a parent is not followed forever.
  const visited = new Set<string>();
  const walk = async (relative: string): Promise<void> => {
    const real = await fs.promises.realpath(path.join(root, relative)).catch(() => path.join(root, relative));
    if (visited.has(real)) return;
    visited.add(real);
    let entries: fs.Dirent[];
    try {
      entries = await fs.promises.readdir(path.join(root, relative), { withFileTypes: true });
    } catch (error) {
      throw notFound(`Could not read the folder ${path.join(root, relative)}: ${(error as Error).message}`);
    }
    for (const entry of entries) {
      if (entry.name.startsWith('.')) continue;
      const child = relative === '' ? entry.name : `${relative}/${entry.name}`;
      let isDir = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        const target = await fs.promises.stat(path.join(root, child)).catch(() => undefined);
        isDir = target?.isDirectory() ?? false;
        isFile = target?.isFile() ?? false;
      }
      if (isDir) await walk(child);
      else if (isFile && EXTENSIONS.includes(path.extname(entry.name).toLowerCase())) found.push(child);
    }
  };
  await walk('');
  return found.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

interface ImageSpec {
  channels: 1 | 3;
  resize: SizeOption | undefined;
  crop: [number, number] | undefined;
  /** Output height and width. */
  height: number;
  width: number;
  /** Where the expected size came from, for messages. */
  sizeFrom: string;
}

/** Decodes one image into `out` at `at` as C x H x W floats in [0, 1]. */
async function decodeInto(file: string, spec: ImageSpec, out: Float32Array, at: number): Promise<void> {
  let raw: Buffer;
  let width: number;
  let height: number;
  try {
    let image = loadSharp()(file, { failOn: 'error' });
    if (spec.resize !== undefined) {
      let target = pair(spec.resize);
      if (typeof spec.resize === 'number') {
        const meta = await image.metadata();
        target = resizedSize(spec.resize, meta.height, meta.width);
      }
      image = image.resize({
        height: target[0],
        width: target[1],
        fit: 'fill',
        kernel: 'linear',
        fastShrinkOnLoad: false,
      });
    }
    image = image.toColourspace('srgb').removeAlpha();
    const result = await image.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    raw = result.data;
    ({ width, height } = result.info);
    if (result.info.channels !== 3) {
      throw new Error(`expected 3 channels after conversion to sRGB but got ${result.info.channels}`);
    }
  } catch (error) {
    throw decodeError(file, error);
  }
  let top = 0;
  let left = 0;
  if (spec.crop !== undefined) {
    top = cropOffset(height, spec.crop[0]);
    left = cropOffset(width, spec.crop[1]);
  } else if (height !== spec.height || width !== spec.width) {
    const resized = spec.resize === undefined ? '' : ` after resize to ${JSON.stringify(spec.resize)}`;
    throw shapeError(
      `Expected every image to be ${spec.width} wide and ${spec.height} high (${spec.sizeFrom}) but ${file} is ${width} wide and ${height} high${resized}; pass resize and/or centerCrop to bring them to one size`,
    );
  }
  const H = spec.height;
  const W = spec.width;
  const grey = spec.channels === 1;
  for (let c = 0; c < spec.channels; c += 1) {
    const plane = at + c * H * W;
    for (let y = 0; y < H; y += 1) {
      const sy = y + top;
      const row = plane + y * W;
      if (sy < 0 || sy >= height) {
        out.fill(0, row, row + W);
        continue;
      }
      for (let x = 0; x < W; x += 1) {
        const sx = x + left;
        if (sx < 0 || sx >= width) {
          out[row + x] = 0;
        } else {
          const p = (sy * width + sx) * 3;
          out[row + x] = (grey ? luma(raw, p) : (raw[p + c] as number)) / 255;
        }
      }
    }
  }
}

/** PIL's convert('L') (ITU-R 601-2 luma, rounded as PIL does), which torchvision's Grayscale uses. */
const luma = (rgb: Uint8Array, p: number): number =>
  ((rgb[p] as number) * 19595 + (rgb[p + 1] as number) * 38470 + (rgb[p + 2] as number) * 7471 + 0x8000) >>> 16;

class ImageReader implements BatchReader {
  private readonly root: string;
  private readonly files: readonly string[];
  private readonly spec: ImageSpec;
  private readonly stats: ReturnType<typeof channelStats>;
  private readonly order: Uint32Array | null;

  constructor(
    root: string,
    files: readonly string[],
    spec: ImageSpec,
    stats: ReturnType<typeof channelStats>,
    order: Uint32Array | null,
  ) {
    this.root = root;
    this.files = files;
    this.spec = spec;
    this.stats = stats;
    this.order = order;
  }

  async read(start: number, count: number): Promise<Tensor> {
    const { channels, height, width } = this.spec;
    const sample = channels * height * width;
    const out = new Float32Array(count * sample);
    let next = 0;
    let failure: { error: unknown } | undefined;
    // A few decodes at a time; after a failure the others stop taking work.
    const worker = async (): Promise<void> => {
      while (failure === undefined && next < count) {
        const k = next;
        next += 1;
        const index = this.order === null ? start + k : (this.order[start + k] as number);
        try {
          await decodeInto(path.join(this.root, this.files[index] as string), this.spec, out, k * sample);
        } catch (error) {
          failure ??= { error };
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, count) }, worker));
    if (failure !== undefined) throw failure.error;
    normalizeInPlace(out, count, channels, height * width, this.stats);
    return new Tensor(out, [count, channels, height, width]);
  }

  async close(): Promise<void> {
    // sharp opens and closes each file itself.
  }
}

/**
 * Opens a folder of JPEG, PNG and WebP images (found recursively, by
 * extension, in the order of their relative paths). Batches are float32
 * `[n, channels, height, width]` in [0, 1], then normalised when asked.
 * Without resize or centerCrop every image must have the size of the first.
 */
export async function readImageFolder(folder: string, options?: ImageFolderOptions): Promise<Dataset> {
  requireString(folder, 'path');
  const { opts, data } = resolveDataOptions(options);
  const resize = optionalSize(opts.resize, 'options.resize');
  const centerCrop = optionalSize(opts.centerCrop, 'options.centerCrop');
  const normalize = optionalNormalize(opts.normalize, 'options.normalize');
  const channels = optionalChannels(opts.channels, 'options.channels') ?? 3;
  const stats = channelStats(normalize, channels, 'options.normalize');

  const found = await statPath(folder, 'a folder of images');
  if (!found.isDirectory()) throw badFormat(`Expected a folder of images at ${folder} but found a file`);
  const files = await listImages(folder);
  if (files.length === 0) {
    throw notFound(`Found no images (${EXTENSIONS.join(', ')}) in the folder ${folder} or below it`);
  }

  let height: number;
  let width: number;
  let sizeFrom: string;
  if (centerCrop !== undefined) {
    [height, width] = pair(centerCrop);
    sizeFrom = 'centerCrop';
  } else if (resize !== undefined && typeof resize !== 'number') {
    [height, width] = resize;
    sizeFrom = 'resize';
  } else {
    const first = path.join(folder, files[0] as string);
    let meta: { width: number; height: number };
    try {
      meta = await loadSharp()(first, { failOn: 'error' }).metadata();
    } catch (error) {
      throw decodeError(first, error);
    }
    [height, width] = resize === undefined ? [meta.height, meta.width] : resizedSize(resize, meta.height, meta.width);
    sizeFrom = `the size of the first image, ${first}${resize === undefined ? '' : ', after resize'}`;
  }
  const spec: ImageSpec = {
    channels,
    resize,
    crop: centerCrop === undefined ? undefined : [height, width],
    height,
    width,
    sizeFrom,
  };
  const source: BatchSource = {
    path: folder,
    format: 'images',
    records: files.length,
    sampleShape: [channels, height, width],
    dtype: 'float32',
    open: async (order) => new ImageReader(folder, files, spec, stats, order),
  };
  return new Dataset(source, data);
}
