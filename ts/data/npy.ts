// NumPy .npy files (format versions 1.0, 2.0 and 3.0), read record by record.
import { requireString } from '../util/is';
import type { DType, TensorData } from '../model/tensor';
import { type BatchSource, Dataset } from './dataset';
import { badFormat, hex, openFile, readAt, statFile, truncated } from './files';
import { type NpyOptions, resolveDataOptions } from './options';
import { type RecordLayout, RecordReader } from './records';

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

const DESCRS: Record<string, { dtype: DType; bytes: number }> = {
  '<f4': { dtype: 'float32', bytes: 4 },
  '<f8': { dtype: 'float64', bytes: 8 },
  '|u1': { dtype: 'uint8', bytes: 1 },
  '<u1': { dtype: 'uint8', bytes: 1 },
  '<i8': { dtype: 'int64', bytes: 8 },
};

const SUPPORTED = "'<f4' (float32), '<f8' (float64), '|u1' (uint8) or '<i8' (int64)";

/** @internal The checked header of a .npy array. */
export interface NpyHeader {
  dtype: DType;
  itemBytes: number;
  shape: number[];
  dataOffset: number;
}

function field(header: string, key: string): string | undefined {
  const match = new RegExp(`['"]${key}['"]\\s*:\\s*`).exec(header);
  return match === null ? undefined : header.slice(match.index + match[0].length);
}

function parseHeader(file: string, text: string, dataOffset: number): NpyHeader {
  const descrRest = field(text, 'descr');
  const descr = descrRest === undefined ? undefined : /^['"]([^'"]*)['"]/.exec(descrRest)?.[1];
  const fortran = field(text, 'fortran_order')?.match(/^(True|False)/)?.[1];
  const shapeText = field(text, 'shape')?.match(/^\(([^)]*)\)/)?.[1];
  if (descrRest === undefined || fortran === undefined || shapeText === undefined) {
    throw badFormat(
      `Expected the header of ${file} to be a dict with 'descr', 'fortran_order' and 'shape' but found ${JSON.stringify(text.trim().slice(0, 120))}`,
    );
  }
  if (descr === undefined) {
    throw badFormat(
      `Expected a plain dtype ${SUPPORTED} in ${file} but found the structured dtype ${descrRest.slice(0, 60).trim()}`,
    );
  }
  const known = DESCRS[descr];
  if (known === undefined && /^[|<>=]?O\d*$/.test(descr)) {
    throw badFormat(
      `Expected the dtype ${SUPPORTED} in ${file} but found '${descr}', a pickled object array; torch-cka never unpickles (NumPy's allow_pickle): save a numeric array`,
    );
  }
  if (known === undefined) {
    const bigEndian = descr.startsWith('>') ? ' (big-endian data is not supported; save it little-endian)' : '';
    throw badFormat(`Expected the dtype ${SUPPORTED} in ${file} but found '${descr}'${bigEndian}`);
  }
  if (fortran === 'True') {
    throw badFormat(
      `Expected C order in ${file} but found Fortran order (fortran_order: True); save np.ascontiguousarray(a)`,
    );
  }
  const parts = shapeText
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p.length > 0);
  const shape = parts.map((p) => Number(p.replace(/L$/, '')));
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw badFormat(`Expected the shape in ${file} to be a tuple of non-negative integers but found (${shapeText})`);
  }
  if (shape.length === 0) {
    throw badFormat(`Expected an array of samples (N x ...) in ${file} but found a 0-d array (shape ())`);
  }
  // Samples without values would make a pass of any length out of no data.
  if (shape.slice(1).some((d) => d === 0)) {
    throw badFormat(`Expected non-zero sample dimensions in ${file} but found the shape (${shape.join(', ')})`);
  }
  return { dtype: known.dtype, itemBytes: known.bytes, shape, dataOffset };
}

/** @internal Reads `length` bytes at `position` (of the .npy data) into `target` at `offset`; returns the count read. */
export type ReadBytes = (target: Uint8Array, offset: number, length: number, position: number) => Promise<number>;

/**
 * @internal Reads and checks the magic and header of .npy data of `size`
 * bytes (a file, or an array in a .npz archive), named `file` in messages.
 */
export async function readNpyHeader(file: string, size: number, read: ReadBytes): Promise<NpyHeader> {
  const head = new Uint8Array(12);
  const got = await read(head, 0, Math.min(12, size), 0);
  const magicOk = MAGIC.every((b, i) => i >= got || head[i] === b);
  if (!magicOk || got === 0) {
    throw badFormat(
      `Expected ${file} to start with the .npy magic string 93 4e 55 4d 50 59 ("\\x93NUMPY") but found ${hex(head.subarray(0, Math.min(got, 6)))}`,
    );
  }
  if (got < 8) throw truncated(`${file} ends inside its .npy header (${got} bytes)`);
  const major = head[6] as number;
  const minor = head[7] as number;
  if (major < 1 || major > 3) {
    throw badFormat(`Expected .npy format version 1.0, 2.0 or 3.0 in ${file} but found ${major}.${minor}`);
  }
  const lengthBytes = major === 1 ? 2 : 4;
  if (got < 8 + lengthBytes) throw truncated(`${file} ends inside its .npy header (${got} bytes)`);
  const view = new DataView(head.buffer);
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = 8 + lengthBytes;
  // The length comes from the file: check it against the file's size before allocating it.
  if (start + headerLength > size) {
    throw truncated(
      `${file} ends inside its .npy header: it promises ${headerLength} header bytes but has ${Math.max(0, size - start)}`,
    );
  }
  const header = new Uint8Array(headerLength);
  const headerGot = await read(header, 0, headerLength, start);
  if (headerGot < headerLength) {
    throw truncated(
      `${file} ends inside its .npy header: it promises ${headerLength} header bytes but has ${headerGot}`,
    );
  }
  const text = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(header);
  return parseHeader(file, text, start + headerLength);
}

/** Reads and checks the magic and header of a .npy file of `size` bytes. */
async function readHeader(file: string, size: number): Promise<NpyHeader> {
  const handle = await openFile(file);
  try {
    return await readNpyHeader(file, size, (target, offset, length, position) =>
      readAt(handle, target, offset, length, position),
    );
  } finally {
    await handle.close();
  }
}

/** @internal Turns raw little-endian records into the typed array of `dtype`. */
export function npyDecoder(dtype: DType): (raw: Uint8Array, count: number) => TensorData {
  switch (dtype) {
    case 'float32':
      return (raw) => new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
    case 'float64':
      return (raw) => new Float64Array(raw.buffer, raw.byteOffset, raw.byteLength / 8);
    case 'int64':
      return (raw) => new BigInt64Array(raw.buffer, raw.byteOffset, raw.byteLength / 8);
    default:
      return (raw) => raw;
  }
}

/**
 * @internal The records an .npy header announces (the first dimension), one
 * record's shape and bytes; ERR_DATA_TRUNCATED when `size` bytes (of `what`,
 * e.g. "the file") cannot hold them all.
 */
export function npyRecords(
  header: NpyHeader,
  size: number,
  label: string,
  what: string,
): { records: number; sampleShape: number[]; recordBytes: number } {
  const [records = 0, ...sampleShape] = header.shape;
  const recordBytes = sampleShape.reduce((a, b) => a * b, header.itemBytes);
  const needed = header.dataOffset + records * recordBytes;
  if (size < needed) {
    const index = recordBytes === 0 ? 0 : Math.floor(Math.max(0, size - header.dataOffset) / recordBytes);
    throw truncated(
      `${label} ends inside record ${index}: its header promises ${records} records of ${recordBytes} bytes (${needed} bytes in all) but ${what} has ${size}`,
    );
  }
  return { records, sampleShape, recordBytes };
}

/**
 * Opens a .npy file (float32, float64, uint8 or int64, C order, little-endian)
 * whose first axis is the samples. Batches keep the file's dtype. The header
 * is checked now; the data is read batch by batch.
 */
export async function readNpy(file: string, options?: NpyOptions): Promise<Dataset> {
  requireString(file, 'path');
  const { data } = resolveDataOptions(options);
  const stats = await statFile(file, 'a .npy file');
  const header = await readHeader(file, stats.size);
  const { records, sampleShape, recordBytes } = npyRecords(header, stats.size, file, 'the file');
  const layout: RecordLayout = {
    segments: [{ file, label: file, offset: header.dataOffset, count: records }],
    recordBytes,
    sampleShape,
    decode: npyDecoder(header.dtype),
  };
  const source: BatchSource = {
    path: file,
    format: 'npy',
    records,
    sampleShape,
    dtype: header.dtype,
    open: async (order) => new RecordReader(layout, order),
  };
  return new Dataset(source, data);
}
