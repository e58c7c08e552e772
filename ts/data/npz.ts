// NumPy .npz archives (np.savez, np.savez_compressed): a zip of .npy arrays, one model input each.
//
// The zip's central directory is read (zip64 too) and each array's local
// header checked against it. A stored member is read like a .npy file, record
// by record at its offset in the archive; its CRC-32 is checked once when the
// archive is opened, by reading the member through in chunks. A deflated
// member cannot be read at an offset, so it is inflated once, when the archive
// is opened, and kept in memory (its CRC-32 and size checked), up to
// MAX_INFLATED_BYTES per archive.
import type * as fs from 'node:fs';
import { crc32, inflateRawSync } from 'node:zlib';
import { describe as describeValue, invalidArgType, invalidArgValue, ErrorCodes, makeError } from '../util/errors';
import { requireString } from '../util/is';
import { Tensor, type DType, type TensorData } from '../model/tensor';
import { type BatchReader, type BatchSource, Dataset } from './dataset';
import { badFormat, hex, notFound, openFile, readAt, statFile, truncated } from './files';
import { type NpyHeader, npyDecoder, npyRecords, readNpyHeader } from './npy';
import { type NpzOptions, resolveDataOptions } from './options';
import { type RecordLayout, RecordReader } from './records';

/** Deflated arrays of one archive are inflated into memory up to this many bytes in all. */
export const MAX_INFLATED_BYTES = 2 ** 31;

const LOCAL = 0x04034b50;
const CENTRAL = 0x02014b50;
const END = 0x06054b50;
const END64 = 0x06064b50;
const LOCATOR64 = 0x07064b50;
const STORED = 0;
const DEFLATED = 8;
/** Deflate cannot expand more than about 1032:1. */
const MAX_DEFLATE_RATIO = 1032;
const CRC_CHUNK = 1 << 22;

const dataShape = (message: string): Error => makeError(Error, ErrorCodes.DATA_SHAPE, message);

/** One array of an .npz archive: a model input. */
export interface NpzInput {
  /** The array's name: its member name less `.npy` (the key `np.load` gives it). */
  readonly name: string;
  /** The array's element type, kept in its batches. */
  readonly dtype: DType;
  /** Shape of one sample of this input; its batches are `[n, ...sampleShape]`. */
  readonly sampleShape: readonly number[];
  /** How the array is kept in the archive. */
  readonly compression: 'stored' | 'deflated';
}

/** A zip directory entry, checked. */
interface Member {
  name: string;
  method: number;
  crc: number;
  compressedSize: number;
  size: number;
  localOffset: number;
  /** Where its data starts (after the local header); set by {@link checkLocal}. */
  dataStart: number;
}

const u16 = (v: DataView, at: number): number => v.getUint16(at, true);
const u32 = (v: DataView, at: number): number => v.getUint32(at, true);

function u64(v: DataView, at: number, file: string, what: string): number {
  const value = v.getBigUint64(at, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw badFormat(`Expected a ${what} below 2^53 in the zip64 records of ${file} but found ${value}`);
  }
  return Number(value);
}

async function readExactly(
  handle: fs.promises.FileHandle,
  file: string,
  length: number,
  position: number,
  what: string,
): Promise<DataView> {
  const bytes = new Uint8Array(length);
  const got = await readAt(handle, bytes, 0, length, position);
  if (got < length) throw truncated(`${file} ends inside ${what} (at byte ${position + got} of ${position + length})`);
  return new DataView(bytes.buffer);
}

/** Finds the end of central directory record, and the zip64 one when there is one. */
async function readDirectoryEnd(
  handle: fs.promises.FileHandle,
  file: string,
  size: number,
): Promise<{ entries: number; cdOffset: number; cdSize: number; cdLimit: number }> {
  const tailLength = Math.min(size, 22 + 0xffff);
  const tail = new Uint8Array(tailLength);
  await readAt(handle, tail, 0, tailLength, size - tailLength);
  const view = new DataView(tail.buffer);
  let at = -1;
  for (let i = tailLength - 22; i >= 0; i -= 1) {
    if (u32(view, i) === END && i + 22 + u16(view, i + 20) === tailLength) {
      at = i;
      break;
    }
  }
  if (at < 0) {
    const first = new Uint8Array(4);
    const got = await readAt(handle, first, 0, 4, 0);
    if (got < 4 || new DataView(first.buffer).getUint32(0, true) !== LOCAL) {
      throw badFormat(
        `Expected ${file} to be a zip archive (an .npz file starts with 50 4b 03 04, "PK\\3\\4") but it starts with ${hex(first.subarray(0, got))}`,
      );
    }
    throw truncated(
      `${file} has no zip end of central directory record: the archive is cut off or corrupt (${size} bytes)`,
    );
  }
  const endOffset = size - tailLength + at;
  if (u16(view, at + 4) !== 0 || u16(view, at + 6) !== 0) {
    throw badFormat(`Expected a single-disk zip archive in ${file} but it is a part of a multi-disk (spanned) archive`);
  }
  let entries = u16(view, at + 10);
  let cdSize = u32(view, at + 12);
  let cdOffset = u32(view, at + 16);
  let cdLimit = endOffset;
  const locatorAt = endOffset - 20;
  let locator: DataView | null = null;
  if (locatorAt >= 0) {
    const l = await readExactly(handle, file, 20, locatorAt, 'the zip64 locator');
    if (u32(l, 0) === LOCATOR64) locator = l;
  }
  if (locator !== null) {
    const end64 = u64(locator, 8, file, 'zip64 record offset');
    if (end64 + 56 > locatorAt) {
      throw badFormat(
        `Expected the zip64 end of central directory record of ${file} before byte ${locatorAt} but its locator points at ${end64}`,
      );
    }
    const z = await readExactly(handle, file, 56, end64, 'the zip64 end of central directory record');
    if (u32(z, 0) !== END64) {
      throw badFormat(
        `Expected the zip64 end of central directory record of ${file} at byte ${end64} but found ${hex(new Uint8Array(z.buffer, 0, 4))}`,
      );
    }
    if (u32(z, 16) !== 0 || u32(z, 20) !== 0) {
      throw badFormat(`Expected a single-disk zip archive in ${file} but its zip64 record names another disk`);
    }
    entries = u64(z, 32, file, 'entry count');
    cdSize = u64(z, 40, file, 'central directory size');
    cdOffset = u64(z, 48, file, 'central directory offset');
    cdLimit = end64;
  } else if (entries === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    throw badFormat(`${file} marks its central directory as zip64 but has no zip64 end of central directory locator`);
  }
  if (cdOffset + cdSize > cdLimit) {
    throw badFormat(
      `Expected the central directory of ${file} (${cdSize} bytes at byte ${cdOffset}) to end before byte ${cdLimit}; the archive is corrupt or cut off`,
    );
  }
  if (entries * 46 > cdSize) {
    throw badFormat(
      `Expected ${entries} central directory entries in ${file} but its directory has only ${cdSize} bytes`,
    );
  }
  return { entries, cdOffset, cdSize, cdLimit: cdOffset };
}

/** Reads the central directory's entries. */
function parseDirectory(file: string, dir: DataView, entries: number, dataLimit: number): Member[] {
  const members: Member[] = [];
  let at = 0;
  for (let e = 0; e < entries; e += 1) {
    if (at + 46 > dir.byteLength || u32(dir, at) !== CENTRAL) {
      throw badFormat(
        `Expected central directory entry ${e} of ${file} at directory byte ${at} but found none (a corrupt zip directory)`,
      );
    }
    const flags = u16(dir, at + 8);
    const method = u16(dir, at + 10);
    const crc = u32(dir, at + 16);
    let compressedSize = u32(dir, at + 20);
    let size = u32(dir, at + 24);
    const nameLength = u16(dir, at + 28);
    const extraLength = u16(dir, at + 30);
    const commentLength = u16(dir, at + 32);
    const disk = u16(dir, at + 34);
    let localOffset = u32(dir, at + 42);
    const end = at + 46 + nameLength + extraLength + commentLength;
    if (end > dir.byteLength) {
      throw badFormat(
        `Central directory entry ${e} of ${file} runs past the end of the directory (a corrupt zip directory)`,
      );
    }
    const nameBytes = new Uint8Array(dir.buffer, at + 46, nameLength);
    const name = new TextDecoder((flags & 0x800) !== 0 ? 'utf-8' : 'latin1').decode(nameBytes);
    const label = `${file}: ${JSON.stringify(name)}`;
    // zip64 sizes and offset, in this order, for the fields that are 0xffffffff.
    let x = at + 46 + nameLength;
    const extraEnd = x + extraLength;
    while (x + 4 <= extraEnd) {
      const id = u16(dir, x);
      const length = u16(dir, x + 2);
      if (x + 4 + length > extraEnd)
        throw badFormat(`The extra field of ${label} runs past its end (a corrupt zip directory)`);
      if (id === 0x0001) {
        let y = x + 4;
        const take = (what: string): number => {
          if (y + 8 > x + 4 + length) throw badFormat(`The zip64 extra field of ${label} has no ${what}`);
          const value = u64(dir, y, file, what);
          y += 8;
          return value;
        };
        if (size === 0xffffffff) size = take('size');
        if (compressedSize === 0xffffffff) compressedSize = take('compressed size');
        if (localOffset === 0xffffffff) localOffset = take('local header offset');
      }
      x += 4 + length;
    }
    if (size === 0xffffffff || compressedSize === 0xffffffff || localOffset === 0xffffffff) {
      throw badFormat(`${label} marks its sizes as zip64 but has no zip64 extra field`);
    }
    if (disk !== 0 && disk !== 0xffff)
      throw badFormat(`${label} is on disk ${disk}: multi-disk archives are not supported`);
    if ((flags & 0x1) !== 0) throw badFormat(`${label} is encrypted; save the arrays without a password`);
    if (localOffset + 30 > dataLimit) {
      throw badFormat(
        `The local header of ${label} is said to be at byte ${localOffset}, past the archive's data (${dataLimit} bytes)`,
      );
    }
    members.push({ name, method, crc, compressedSize, size, localOffset, dataStart: -1 });
    at = end;
  }
  return members;
}

/** Checks a member's local header against its directory entry and finds its data. */
async function checkLocal(
  handle: fs.promises.FileHandle,
  file: string,
  member: Member,
  dataLimit: number,
): Promise<void> {
  const label = `${file}: ${JSON.stringify(member.name)}`;
  const local = await readExactly(
    handle,
    file,
    30,
    member.localOffset,
    `the local header of ${JSON.stringify(member.name)}`,
  );
  if (u32(local, 0) !== LOCAL) {
    throw badFormat(
      `Expected the local header of ${label} at byte ${member.localOffset} but found ${hex(new Uint8Array(local.buffer, 0, 4))} (a corrupt zip)`,
    );
  }
  if (u16(local, 6) & 0x1) throw badFormat(`${label} is encrypted; save the arrays without a password`);
  const method = u16(local, 8);
  if (method !== member.method) {
    throw badFormat(
      `The local header of ${label} says compression method ${method} but its directory entry says ${member.method}`,
    );
  }
  const nameLength = u16(local, 26);
  const extraLength = u16(local, 28);
  const nameView = await readExactly(
    handle,
    file,
    nameLength,
    member.localOffset + 30,
    `the local header of ${JSON.stringify(member.name)}`,
  );
  const localName = new TextDecoder('latin1').decode(new Uint8Array(nameView.buffer));
  const dirName = new TextDecoder('latin1').decode(new TextEncoder().encode(member.name));
  if (localName !== member.name && localName !== dirName) {
    throw badFormat(`The local header of ${label} names ${JSON.stringify(localName)} (a corrupt zip)`);
  }
  member.dataStart = member.localOffset + 30 + nameLength + extraLength;
  if (member.dataStart + member.compressedSize > dataLimit) {
    throw truncated(
      `${label} ends past the archive's data: ${member.compressedSize} bytes from byte ${member.dataStart} but the data ends at byte ${dataLimit}`,
    );
  }
}

/** Where one array's .npy bytes are, and how to read them. */
type Body = { kind: 'stored'; start: number } | { kind: 'deflated'; bytes: Uint8Array };

async function openBody(
  handle: fs.promises.FileHandle,
  file: string,
  member: Member,
  budget: { left: number },
): Promise<Body> {
  const label = `${file}: ${JSON.stringify(member.name)}`;
  if (member.method === STORED) {
    if (member.compressedSize !== member.size) {
      throw badFormat(
        `${label} is stored (not compressed) but its sizes differ: ${member.compressedSize} and ${member.size} bytes`,
      );
    }
    let crc = 0;
    const chunk = new Uint8Array(Math.min(CRC_CHUNK, Math.max(1, member.size)));
    for (let done = 0; done < member.size;) {
      const n = Math.min(chunk.length, member.size - done);
      const got = await readAt(handle, chunk, 0, n, member.dataStart + done);
      if (got < n)
        throw truncated(
          `${label} ends at byte ${done + got} of ${member.size} (was the file changed while it was read?)`,
        );
      crc = crc32(chunk.subarray(0, n), crc);
      done += n;
    }
    if (crc !== member.crc) {
      throw badFormat(
        `The CRC-32 of ${label} is ${crc.toString(16).padStart(8, '0')} but its zip entry says ${member.crc.toString(16).padStart(8, '0')}: the array is corrupt`,
      );
    }
    return { kind: 'stored', start: member.dataStart };
  }
  if (member.method !== DEFLATED) {
    throw badFormat(
      `Expected ${label} to be stored (method 0) or deflated (method 8), as np.savez and np.savez_compressed write, but it uses compression method ${member.method}`,
    );
  }
  if (member.size > member.compressedSize * MAX_DEFLATE_RATIO + 64) {
    throw badFormat(
      `${label} declares ${member.size} bytes from ${member.compressedSize} deflated bytes, more than deflate can make: the zip entry is corrupt`,
    );
  }
  if (member.size > budget.left) {
    throw badFormat(
      `${label} inflates to ${member.size} bytes, past the ${MAX_INFLATED_BYTES} bytes of deflated arrays an archive may have in memory; save it with np.savez (stored arrays are read in batches)`,
    );
  }
  budget.left -= member.size;
  const compressed = new Uint8Array(member.compressedSize);
  const got = await readAt(handle, compressed, 0, member.compressedSize, member.dataStart);
  if (got < member.compressedSize)
    throw truncated(`${label} ends inside its deflated data (${got} of ${member.compressedSize} bytes)`);
  let bytes: Buffer;
  try {
    bytes = inflateRawSync(compressed, { maxOutputLength: Math.max(1, member.size) });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ERR_BUFFER_TOO_LARGE') {
      throw badFormat(
        `${label} inflates to more than the ${member.size} bytes its zip entry declares: the archive is corrupt`,
      );
    }
    if (code === 'Z_BUF_ERROR') throw truncated(`The deflated data of ${label} is cut off`);
    throw badFormat(`The deflated data of ${label} is corrupt: zlib says ${(error as Error).message}`);
  }
  if (bytes.length !== member.size) {
    throw badFormat(
      `${label} inflates to ${bytes.length} bytes but its zip entry declares ${member.size}: the archive is corrupt`,
    );
  }
  const crc = crc32(bytes);
  if (crc !== member.crc) {
    throw badFormat(
      `The CRC-32 of ${label} is ${crc.toString(16).padStart(8, '0')} but its zip entry says ${member.crc.toString(16).padStart(8, '0')}: the array is corrupt`,
    );
  }
  return { kind: 'deflated', bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length) };
}

/** One array, opened: its header and where its records are. */
interface OpenedArray {
  input: NpzInput;
  header: NpyHeader;
  body: Body;
  records: number;
  recordBytes: number;
}

/** Reads records of a deflated array from memory. */
class MemoryReader implements BatchReader<Tensor> {
  constructor(
    private readonly array: OpenedArray,
    private readonly order: Uint32Array | null,
  ) {}

  async read(start: number, count: number): Promise<Tensor> {
    const { recordBytes, header, body } = this.array;
    const bytes = (body as { bytes: Uint8Array }).bytes;
    const raw = new Uint8Array(count * recordBytes);
    const base = header.dataOffset;
    if (this.order === null) {
      raw.set(bytes.subarray(base + start * recordBytes, base + (start + count) * recordBytes));
    } else {
      for (let k = 0; k < count; k += 1) {
        const r = this.order[start + k] as number;
        raw.set(bytes.subarray(base + r * recordBytes, base + (r + 1) * recordBytes), k * recordBytes);
      }
    }
    return new Tensor(npyDecoder(header.dtype)(raw, count) as TensorData, [count, ...this.array.input.sampleShape]);
  }

  async close(): Promise<void> {}
}

/** Reads the batches of every input together: one tensor per input. */
class NpzReader implements BatchReader<Tensor[]> {
  constructor(private readonly readers: BatchReader<Tensor>[]) {}

  async read(start: number, count: number): Promise<Tensor[]> {
    // Every read ends before the batch fails or succeeds, so none runs into a closed reader.
    const results = await Promise.allSettled(this.readers.map((r) => r.read(start, count)));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    return results.map((r) => (r as PromiseFulfilledResult<Tensor>).value);
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.readers.map((r) => r.close()));
  }
}

/**
 * A data set of several inputs from one `.npz` archive: each batch is an
 * array of tensors, one per array of the archive, in {@link inputs} order
 * (the archive's, or the `inputs` option's). Made by {@link readNpz} or
 * `openDataset`.
 */
export class NpzDataset extends Dataset<Tensor[]> {
  /** The arrays read, in the order of each batch's tensors. */
  readonly inputs: readonly NpzInput[];

  /** @internal */
  constructor(source: BatchSource<Tensor[]>, options: ConstructorParameters<typeof Dataset>[1], inputs: NpzInput[]) {
    super(source, options);
    this.inputs = Object.freeze(
      inputs.map((i) => Object.freeze({ ...i, sampleShape: Object.freeze([...i.sampleShape]) })),
    );
  }

  /** E.g. "text.npz: 32 samples of input_ids int64 [16], attention_mask int64 [16]". */
  override describe(): string {
    const samples = `${this.length} sample${this.length === 1 ? '' : 's'}`;
    const parts = this.inputs.map((i) => `${i.name} ${i.dtype} [${i.sampleShape.join(', ')}]`);
    return `${this.name}: ${samples} of ${parts.join(', ')}`;
  }

  override toString(): string {
    return `NpzDataset(${this.describe()})`;
  }
}

const stripNpy = (name: string): string => (name.endsWith('.npy') ? name.slice(0, -4) : name);

/** @internal Checks the `inputs` option: distinct non-empty names. */
export function optionalInputs(value: unknown, name: string): string[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
    throw invalidArgType(`Expected an array of array names for ${name} but received ${describeValue(value)}`);
  }
  if (value.length === 0) throw invalidArgValue(`Expected at least one array name in ${name} but received []`);
  const names = (value as string[]).map(stripNpy);
  names.forEach((n, i) => {
    if (n.length === 0)
      throw invalidArgValue(
        `Expected a non-empty array name at ${name}[${i}] but received ${JSON.stringify(value[i])}`,
      );
    if (names.indexOf(n) !== i)
      throw invalidArgValue(`Expected distinct array names in ${name} but ${JSON.stringify(n)} is named twice`);
  });
  return names;
}

/**
 * Opens a NumPy `.npz` archive (`np.savez` or `np.savez_compressed`) whose
 * arrays are the inputs of a model: each batch is an array of tensors, one
 * per array, in the archive's order or in the order of `options.inputs`
 * (names with or without `.npy`). Every array read must have the same first
 * dimension (the samples) and a dtype {@link readNpy} takes (float32,
 * float64, uint8 or int64; C order, little-endian; never a pickled object
 * array). Stored arrays are read batch by batch, like a .npy file; deflated
 * ones are inflated into memory once, now. The zip structure, every CRC-32
 * and every array's header are checked now.
 */
export async function readNpz(file: string, options?: NpzOptions): Promise<NpzDataset> {
  requireString(file, 'path');
  const { opts, data } = resolveDataOptions(options);
  const wanted = optionalInputs(opts.inputs, 'options.inputs');
  const stats = await statFile(file, 'an .npz file');
  const handle = await openFile(file);
  try {
    const end = await readDirectoryEnd(handle, file, stats.size);
    const dir = await readExactly(handle, file, end.cdSize, end.cdOffset, 'its central directory');
    const members = parseDirectory(file, dir, end.entries, end.cdLimit);
    const arrays = members.filter((m) => !m.name.endsWith('/'));
    if (arrays.length === 0) throw badFormat(`Expected at least one .npy array in ${file} but the archive is empty`);
    const seen = new Set<string>();
    for (const m of arrays) {
      if (seen.has(m.name)) throw badFormat(`${file} has two members named ${JSON.stringify(m.name)}`);
      seen.add(m.name);
    }
    const present = arrays.map((m) => stripNpy(m.name));
    let chosen: Member[];
    if (wanted === undefined) {
      const other = arrays.find((m) => !m.name.endsWith('.npy'));
      if (other !== undefined) {
        throw badFormat(
          `Expected only .npy arrays in ${file} but it holds ${JSON.stringify(other.name)}; choose the arrays with inputs (--inputs) among ${present.join(', ')}`,
        );
      }
      chosen = arrays;
    } else {
      chosen = wanted.map((name) => {
        const found = arrays.find((m) => m.name === `${name}.npy`);
        if (found === undefined) {
          throw notFound(
            `Expected an array named ${JSON.stringify(name)} in ${file} but it holds ${present.map((n) => JSON.stringify(n)).join(', ')}`,
          );
        }
        return found;
      });
    }
    const budget = { left: MAX_INFLATED_BYTES };
    const opened: OpenedArray[] = [];
    for (const member of chosen) {
      await checkLocal(handle, file, member, end.cdLimit);
      const body = await openBody(handle, file, member, budget);
      const label = `${file}: ${JSON.stringify(member.name)}`;
      const read =
        body.kind === 'stored'
          ? (target: Uint8Array, offset: number, length: number, position: number) =>
              readAt(
                handle,
                target,
                offset,
                Math.min(length, Math.max(0, member.size - position)),
                body.start + position,
              )
          : async (target: Uint8Array, offset: number, length: number, position: number) => {
              const piece = body.bytes.subarray(
                Math.min(position, body.bytes.length),
                Math.min(position + length, body.bytes.length),
              );
              target.set(piece, offset);
              return piece.length;
            };
      const header = await readNpyHeader(label, member.size, read);
      const { records, sampleShape, recordBytes } = npyRecords(header, member.size, label, 'the array');
      const input: NpzInput = {
        name: stripNpy(member.name),
        dtype: header.dtype,
        sampleShape,
        compression: body.kind,
      };
      opened.push({ input, header, body, records, recordBytes });
    }
    const first = opened[0] as OpenedArray;
    const other = opened.find((a) => a.records !== first.records);
    if (other !== undefined) {
      throw dataShape(
        `Expected every array of ${file} to have the same first dimension (the samples) but ${JSON.stringify(first.input.name)} has ${first.records} and ${JSON.stringify(other.input.name)} has ${other.records}`,
      );
    }
    const source: BatchSource<Tensor[]> = {
      path: file,
      format: 'npz',
      records: first.records,
      sampleShape: first.input.sampleShape,
      dtype: first.input.dtype,
      open: async (order) =>
        new NpzReader(
          opened.map((array) => {
            if (array.body.kind === 'deflated') return new MemoryReader(array, order);
            const layout: RecordLayout = {
              segments: [
                {
                  file,
                  label: `${file}: ${JSON.stringify(array.input.name + '.npy')}`,
                  offset: array.body.start + array.header.dataOffset,
                  count: array.records,
                },
              ],
              recordBytes: array.recordBytes,
              sampleShape: array.input.sampleShape,
              decode: npyDecoder(array.header.dtype),
            };
            return new RecordReader(layout, order);
          }),
        ),
    };
    return new NpzDataset(
      source,
      data,
      opened.map((a) => a.input),
    );
  } finally {
    await handle.close();
  }
}
