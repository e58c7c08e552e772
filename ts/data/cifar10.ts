// CIFAR-10 binary batches: records of 1 label byte and 3 x 32 x 32 bytes (R, G and B planes).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { optionalOneOf, requireString } from '../util/is';
import { type BatchSource, Dataset } from './dataset';
import { badFormat, notFound, openFile, readAt, statPath, truncated } from './files';
import {
  type Cifar10Options,
  channelStats,
  type ResolvedDataOptions,
  normalizeInPlace,
  optionalNormalize,
  resolveDataOptions,
} from './options';
import { type RecordLayout, RecordReader, type RecordSegment } from './records';

const PIXELS = 3 * 32 * 32;
const RECORD = 1 + PIXELS;
const PLANE = 32 * 32;

/** A CIFAR-10 data set; {@link labels} gives the class of each sample. */
export class Cifar10Dataset extends Dataset {
  private readonly segments: readonly RecordSegment[];

  /** @internal */
  constructor(source: BatchSource, options: ResolvedDataOptions, segments: readonly RecordSegment[]) {
    super(source, options);
    this.segments = segments;
  }

  /** The files read, in order. */
  get files(): string[] {
    return this.segments.map((s) => s.label);
  }

  /** The class (0-9) of every sample, in the order of a pass (after shuffle and limit). */
  async labels(): Promise<Uint8Array> {
    const all = new Uint8Array(this.segments.reduce((n, s) => n + s.count, 0));
    const chunk = 1024;
    const buffer = new Uint8Array(chunk * RECORD);
    let at = 0;
    for (const segment of this.segments) {
      const handle = await openFile(segment.file);
      try {
        for (let first = 0; first < segment.count; first += chunk) {
          const n = Math.min(chunk, segment.count - first);
          const got = await readAt(handle, buffer, 0, n * RECORD, first * RECORD);
          if (got < n * RECORD) {
            throw truncated(`${segment.label} ends inside record ${first + Math.floor(got / RECORD)}`);
          }
          for (let k = 0; k < n; k += 1) all[at + k] = buffer[k * RECORD] as number;
          at += n;
        }
      } finally {
        await handle.close();
      }
    }
    const order = this.passOrder();
    return order === null ? all.slice(0, this.length) : Uint8Array.from(order, (i) => all[i] as number);
  }
}

async function batchFiles(folder: string, split: 'train' | 'test' | 'all'): Promise<string[]> {
  let names: string[];
  try {
    names = await fs.promises.readdir(folder);
  } catch (error) {
    throw notFound(`Could not read the folder ${folder}: ${(error as Error).message}`);
  }
  const train = names
    .map((name) => /^data_batch_(\d+)\.bin$/.exec(name))
    .filter((m): m is RegExpExecArray => m !== null)
    .sort((a, b) => Number(a[1]) - Number(b[1]))
    .map((m) => m[0]);
  const test = names.includes('test_batch.bin') ? ['test_batch.bin'] : [];
  const files = split === 'train' ? train : split === 'test' ? test : [...train, ...test];
  if (files.length === 0) {
    const wanted = { train: 'data_batch_N.bin', test: 'test_batch.bin', all: 'data_batch_N.bin or test_batch.bin' };
    throw notFound(`Expected CIFAR-10 binary batches (${wanted[split]}) in the folder ${folder} but found none`);
  }
  return files.map((name) => path.join(folder, name));
}

/** True when a folder holds CIFAR-10 binary batch files. @internal */
export async function hasCifarBatches(folder: string): Promise<boolean> {
  const names = await fs.promises.readdir(folder).catch(() => [] as string[]);
  return names.some((name) => /^data_batch_\d+\.bin$/.test(name) || name === 'test_batch.bin');
}

/**
 * Opens a CIFAR-10 binary batch file (`data_batch_N.bin`, `test_batch.bin`)
 * or a folder of them. Batches are float32 `[n, 3, 32, 32]` in [0, 1], then
 * normalised when asked.
 */
export async function readCifar10(file: string, options?: Cifar10Options): Promise<Cifar10Dataset> {
  requireString(file, 'path');
  const { opts, data } = resolveDataOptions(options);
  const split = optionalOneOf(opts.split, ['train', 'test', 'all'] as const, 'options.split') ?? 'all';
  const stats = channelStats(optionalNormalize(opts.normalize, 'options.normalize'), 3, 'options.normalize');
  const found = await statPath(file, 'a CIFAR-10 batch file or folder');
  const files = found.isDirectory() ? await batchFiles(file, split) : [file];
  const segments: RecordSegment[] = [];
  for (const name of files) {
    const { size } = await statPath(name, 'a CIFAR-10 batch file');
    if (size === 0) throw badFormat(`Expected CIFAR-10 records of ${RECORD} bytes in ${name} but it is empty`);
    if (size % RECORD !== 0) {
      throw truncated(
        `${name} ends inside record ${Math.floor(size / RECORD)}: CIFAR-10 records are ${RECORD} bytes but the file has ${size} bytes (${size % RECORD} left over)`,
      );
    }
    segments.push({ file: name, label: name, offset: 0, count: size / RECORD });
  }
  const sampleShape = [3, 32, 32];
  const layout: RecordLayout = {
    segments,
    recordBytes: RECORD,
    sampleShape,
    decode: (raw, count) => {
      const out = new Float32Array(count * PIXELS);
      for (let s = 0; s < count; s += 1) {
        const from = s * RECORD + 1;
        const to = s * PIXELS;
        for (let i = 0; i < PIXELS; i += 1) out[to + i] = (raw[from + i] as number) / 255;
      }
      normalizeInPlace(out, count, 3, PLANE, stats);
      return out;
    },
  };
  const source: BatchSource = {
    path: file,
    format: 'cifar10',
    records: segments.reduce((n, s) => n + s.count, 0),
    sampleShape,
    dtype: 'float32',
    open: async (order) => new RecordReader(layout, order),
  };
  return new Cifar10Dataset(source, data, segments);
}
