// IDX files (MNIST, Fashion-MNIST), plain or gzipped.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { ErrorCodes, makeError } from '../util/errors';
import { requireString } from '../util/is';
import { Tensor, type TensorData } from '../model/tensor';
import { type BatchReader, type BatchSource, Dataset } from './dataset';
import { badFormat, hex, makeTempDir, openFile, readAt, readHead, removeTempDir, statFile, truncated } from './files';
import { channelStats, type IdxOptions, normalizeInPlace, optionalNormalize, resolveDataOptions } from './options';
import { type RecordLayout, RecordReader } from './records';

interface IdxType {
  name: string;
  bytes: number;
  /** Reads element `i` of a big-endian run. */
  get(view: DataView, offset: number): number;
}

const TYPES: Record<number, IdxType> = {
  0x08: { name: 'ubyte', bytes: 1, get: (v, o) => v.getUint8(o) },
  0x09: { name: 'byte', bytes: 1, get: (v, o) => v.getInt8(o) },
  0x0b: { name: 'short', bytes: 2, get: (v, o) => v.getInt16(o) },
  0x0c: { name: 'int', bytes: 4, get: (v, o) => v.getInt32(o) },
  0x0d: { name: 'float', bytes: 4, get: (v, o) => v.getFloat32(o) },
  0x0e: { name: 'double', bytes: 8, get: (v, o) => v.getFloat64(o) },
};

const GZIP = [0x1f, 0x8b];

/** @internal True when the bytes start like a gzip stream. */
export const isGzip = (head: Uint8Array): boolean => head[0] === GZIP[0] && head[1] === GZIP[1];

/** @internal True when the bytes start like an IDX file: 0, 0, a known type, ndim > 0. */
export const isIdxMagic = (head: Uint8Array): boolean =>
  head.length >= 4 &&
  head[0] === 0 &&
  head[1] === 0 &&
  TYPES[head[2] as number] !== undefined &&
  (head[3] as number) > 0;

interface IdxHeader {
  type: number;
  dims: number[];
  headerBytes: number;
}

function parseHeader(file: string, head: Uint8Array, gz: boolean): IdxHeader {
  const where = gz ? `${file} (after gunzip)` : file;
  if (head.length < 4 || head[0] !== 0 || head[1] !== 0) {
    throw badFormat(
      `Expected ${where} to start with an IDX magic number (00 00 type ndim) but found ${hex(head.subarray(0, 4))}`,
    );
  }
  const type = head[2] as number;
  const ndim = head[3] as number;
  if (TYPES[type] === undefined) {
    throw badFormat(
      `Expected an IDX data type 08 (ubyte), 09 (byte), 0b (short), 0c (int), 0d (float) or 0e (double) in ${where} but found ${hex(head.subarray(2, 3))}`,
    );
  }
  if (ndim === 0) throw badFormat(`Expected an IDX array of samples in ${where} but found 0 dimensions`);
  const headerBytes = 4 + 4 * ndim;
  if (head.length < headerBytes) {
    throw truncated(`${where} ends inside its IDX header (${head.length} of ${headerBytes} bytes)`);
  }
  const view = new DataView(head.buffer, head.byteOffset, headerBytes);
  const dims = Array.from({ length: ndim }, (_, i) => view.getUint32(4 + 4 * i));
  if (ndim === 1) {
    throw badFormat(
      `Expected an IDX image file (N x height x width) but ${where} is a labels file (1 dimension: ${dims[0]} labels), not images`,
    );
  }
  if (dims.slice(1).some((d) => d === 0)) {
    throw badFormat(`Expected non-zero sample dimensions in ${where} but found [${dims.join(', ')}]`);
  }
  return { type, dims, headerBytes };
}

/** @internal Decompresses the start of a gzip file (up to a bit over `want` bytes if it has them). */
export async function gunzipHead(file: string, want: number): Promise<Uint8Array> {
  const compressed = await readHead(file, Math.max(65536, want * 4));
  try {
    return zlib.gunzipSync(compressed, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  } catch (error) {
    throw badFormat(`Expected ${file} to be valid gzip data but zlib says: ${(error as Error).message}`);
  }
}

/** Decompressed bytes of a gzip file, or the count up to where a cut-off file ends. */
async function gunzippedLength(file: string): Promise<{ length: number; cut: boolean }> {
  let length = 0;
  try {
    await pipeline(fs.createReadStream(file), zlib.createGunzip(), async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) length += chunk.length;
    });
    return { length, cut: false };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'Z_BUF_ERROR') return { length, cut: true };
    throw badFormat(`Expected ${file} to be valid gzip data but zlib says: ${(error as Error).message}`);
  }
}

function gzipError(file: string, error: unknown, record: number): Error {
  if ((error as NodeJS.ErrnoException).code === 'Z_BUF_ERROR') {
    return truncated(`${file} ends inside record ${record}: the gzip data is cut off`);
  }
  if (
    typeof (error as { code?: unknown }).code === 'string' &&
    (error as { code: string }).code.startsWith('ERR_DATA')
  ) {
    return error as Error;
  }
  return badFormat(`Could not decompress ${file} at record ${record}: ${(error as Error).message}`);
}

/** Reads the records of a gzipped file in order, decompressing as it goes. */
class GzipStreamReader implements BatchReader {
  private readonly file: string;
  private readonly layout: RecordLayout;
  private readonly headerBytes: number;
  private readonly source: fs.ReadStream;
  private readonly gunzip: zlib.Gunzip;
  private readonly chunks: AsyncIterator<Buffer>;
  private pending: Buffer = Buffer.alloc(0);
  private skipped = false;
  private next = 0;

  constructor(file: string, layout: RecordLayout, headerBytes: number) {
    this.file = file;
    this.layout = layout;
    this.headerBytes = headerBytes;
    this.source = fs.createReadStream(file);
    this.gunzip = zlib.createGunzip();
    // Errors of either stream reach the gunzip stream's iterator.
    this.source.on('error', (error) => this.gunzip.destroy(error));
    this.source.pipe(this.gunzip);
    this.chunks = this.gunzip[Symbol.asyncIterator]();
  }

  async read(start: number, count: number): Promise<Tensor> {
    if (start < this.next) {
      throw makeError(
        Error,
        ErrorCodes.INTERNAL,
        `gzip records must be read in order (record ${start} after ${this.next})`,
      );
    }
    const { recordBytes } = this.layout;
    if (!this.skipped) {
      await this.take(new Uint8Array(this.headerBytes), 0);
      this.skipped = true;
    }
    if (start > this.next) {
      // A resumed pass: the records before `start` are decompressed and dropped.
      const bytes = (start - this.next) * recordBytes;
      const got = await this.consume(bytes, this.next, null);
      if (got < bytes) throw this.cutOff(this.next + Math.floor(got / recordBytes));
      this.next = start;
    }
    const raw = new Uint8Array(count * recordBytes);
    const got = await this.take(raw, start);
    if (got < raw.length) throw this.cutOff(start + Math.floor(got / recordBytes));
    this.next = start + count;
    return new Tensor(this.layout.decode(raw, count), [count, ...this.layout.sampleShape]);
  }

  async close(): Promise<void> {
    const closed = this.source.closed
      ? undefined
      : new Promise<void>((resolve) => this.source.once('close', () => resolve()));
    this.source.unpipe(this.gunzip);
    this.source.destroy();
    this.gunzip.destroy();
    await closed;
  }

  /** Fills `target` from the stream; returns the bytes it got (fewer only at the end). */
  private take(target: Uint8Array, record: number): Promise<number> {
    return this.consume(target.length, record, target);
  }

  /**
   * Takes `length` bytes of the stream into `target`, or drops them when it is
   * null; returns the bytes taken (fewer only at the end). `record` is the
   * record the bytes start at, for messages.
   */
  private async consume(length: number, record: number, target: Uint8Array | null): Promise<number> {
    let filled = 0;
    while (filled < length) {
      if (this.pending.length === 0) {
        let step: IteratorResult<Buffer>;
        try {
          step = await this.chunks.next();
        } catch (error) {
          throw gzipError(this.file, error, record + Math.floor(filled / this.layout.recordBytes));
        }
        if (step.done) break;
        this.pending = step.value;
      }
      const n = Math.min(this.pending.length, length - filled);
      target?.set(this.pending.subarray(0, n), filled);
      this.pending = this.pending.subarray(n);
      filled += n;
    }
    return filled;
  }

  private cutOff(record: number): Error {
    return truncated(
      `${this.file} ends inside record ${record}: expected ${this.layout.segments[0]?.count} records of ${this.layout.recordBytes} bytes after gunzip`,
    );
  }
}

function idxDecoder(
  type: number,
  samplePlanes: { channels: number; plane: number },
  stats: ReturnType<typeof channelStats>,
): (raw: Uint8Array, count: number) => TensorData {
  const info = TYPES[type] as IdxType;
  return (raw, count) => {
    const out = new Float32Array(raw.length / info.bytes);
    if (type === 0x08) {
      for (let i = 0; i < out.length; i += 1) out[i] = (raw[i] as number) / 255;
    } else {
      const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
      for (let i = 0; i < out.length; i += 1) out[i] = info.get(view, i * info.bytes);
    }
    normalizeInPlace(out, count, samplePlanes.channels, samplePlanes.plane, stats);
    return out;
  };
}

/**
 * Opens an IDX image file (`train-images-idx3-ubyte`, plain or gzipped; gzip
 * is told by its magic bytes). Batches are float32: ubyte data scaled to
 * [0, 1], other types as they are. N x H x W gives `[n, 1, H, W]`; other
 * ranks keep their shape (N x D gives `[n, D]`).
 */
export async function readIdx(file: string, options?: IdxOptions): Promise<Dataset> {
  requireString(file, 'path');
  const { opts, data } = resolveDataOptions(options);
  const normalize = optionalNormalize(opts.normalize, 'options.normalize');
  const { size } = await statFile(file, 'an IDX file');
  const first = await readHead(file, 1028);
  const gz = isGzip(first);
  const head = gz ? await gunzipHead(file, 1028) : first;
  const header = parseHeader(file, head, gz);
  const [records = 0, ...dims] = header.dims;
  const type = TYPES[header.type] as IdxType;
  const recordBytes = dims.reduce((a, b) => a * b, type.bytes);
  const needed = header.headerBytes + records * recordBytes;

  const shortBy = (length: number): void => {
    if (length >= needed) return;
    const index = Math.floor(Math.max(0, length - header.headerBytes) / recordBytes);
    const unpacked = gz ? ' after gunzip' : '';
    throw truncated(
      `${file} ends inside record ${index}: its header promises ${records} records of ${recordBytes} bytes (${needed} bytes in all) but it has ${length}${unpacked}`,
    );
  };
  if (!gz) {
    shortBy(size);
  } else {
    // The gzip trailer holds the decompressed size mod 2^32; only when it
    // disagrees, or cannot tell (4 GiB or more), is the whole file
    // decompressed to find where it ends.
    const tail = new Uint8Array(4);
    const handle = await openFile(file);
    const got = await readAt(handle, tail, 0, 4, Math.max(0, size - 4)).finally(() => handle.close());
    const trailer = got === 4 && size >= 18 ? new DataView(tail.buffer).getUint32(0, true) : -1;
    if (needed >= 4294967296 || trailer !== needed) {
      const { length, cut } = await gunzippedLength(file);
      shortBy(length);
      if (cut) throw truncated(`${file} is cut off after ${length} bytes of gzip output (all records present)`);
    }
  }

  const sampleShape = dims.length === 2 ? [1, ...dims] : dims;
  const channels = sampleShape.length >= 3 ? (sampleShape[0] as number) : 1;
  const plane = recordBytes / type.bytes / channels;
  const stats = channelStats(normalize, channels, 'options.normalize');
  const decode = idxDecoder(header.type, { channels, plane }, stats);
  const layoutFor = (target: string): RecordLayout => ({
    segments: [{ file: target, label: file, offset: header.headerBytes, count: records }],
    recordBytes,
    sampleShape,
    decode,
  });

  const source: BatchSource = {
    path: file,
    format: 'idx',
    records,
    sampleShape,
    dtype: 'float32',
    open: async (order) => {
      if (!gz) return new RecordReader(layoutFor(file), order);
      if (order === null) return new GzipStreamReader(file, layoutFor(file), header.headerBytes);
      // Random access to gzipped data: decompress once to a temporary file.
      const dir = await makeTempDir();
      const copy = path.join(dir, `${path.basename(file)}.raw`);
      let unpacked = 0;
      try {
        await pipeline(
          fs.createReadStream(file),
          zlib.createGunzip(),
          async function* (source: AsyncIterable<Buffer>) {
            for await (const chunk of source) {
              unpacked += chunk.length;
              yield chunk;
            }
          },
          fs.createWriteStream(copy),
        );
      } catch (error) {
        await removeTempDir(dir);
        throw gzipError(file, error, Math.floor(Math.max(0, unpacked - header.headerBytes) / recordBytes));
      }
      return new RecordReader(layoutFor(copy), order, () => removeTempDir(dir));
    },
  };
  return new Dataset(source, data);
}
