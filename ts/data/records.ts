// Random access to fixed-size records in one or more files, read with FileHandle reads at offsets.
import type * as fs from 'node:fs';
import { ErrorCodes, makeError } from '../util/errors';
import { Tensor, type TensorData } from '../model/tensor';
import type { BatchReader } from './dataset';
import { openFile, readAt, truncated } from './files';

/** A run of records in one file. */
export interface RecordSegment {
  /** The file read. */
  readonly file: string;
  /** The file named in messages (differs from `file` for a decompressed temporary copy). */
  readonly label: string;
  /** Byte offset of the first record. */
  readonly offset: number;
  readonly count: number;
}

export interface RecordLayout {
  readonly segments: readonly RecordSegment[];
  readonly recordBytes: number;
  readonly sampleShape: readonly number[];
  /**
   * Turns `count` raw records (the whole of `raw.buffer`, which is aligned
   * for any typed array) into the batch's data.
   */
  decode(raw: Uint8Array, count: number): TensorData;
}

/** Reads records of a {@link RecordLayout} in file order or in a given order. */
export class RecordReader implements BatchReader {
  private readonly layout: RecordLayout;
  private readonly order: Uint32Array | null;
  private readonly handles = new Map<number, Promise<fs.promises.FileHandle>>();
  private readonly starts: number[] = [];
  private readonly onClose: (() => Promise<void>) | undefined;
  private closed = false;

  constructor(layout: RecordLayout, order: Uint32Array | null, onClose?: () => Promise<void>) {
    this.layout = layout;
    this.order = order;
    this.onClose = onClose;
    let first = 0;
    for (const segment of layout.segments) {
      this.starts.push(first);
      first += segment.count;
    }
  }

  async read(start: number, count: number): Promise<Tensor> {
    const { recordBytes } = this.layout;
    const raw = new Uint8Array(count * recordBytes);
    if (this.order === null) {
      await this.readRun(start, count, raw, 0);
    } else {
      const order = this.order;
      const reads: Promise<void>[] = [];
      // Records that follow each other in the file are read in one go.
      for (let k = 0; k < count;) {
        let run = 1;
        while (k + run < count && order[start + k + run] === (order[start + k] as number) + run) run += 1;
        reads.push(this.readRun(order[start + k] as number, run, raw, k * recordBytes));
        k += run;
      }
      // Every read has ended before the batch fails or succeeds, so none is
      // left running into a reader that is being closed.
      const failed = (await Promise.allSettled(reads)).find((r) => r.status === 'rejected');
      if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    }
    return new Tensor(this.layout.decode(raw, count), [count, ...this.layout.sampleShape]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const opened = await Promise.allSettled(this.handles.values());
    await Promise.allSettled(opened.map((h) => (h.status === 'fulfilled' ? h.value.close() : undefined)));
    this.handles.clear();
    await this.onClose?.();
  }

  /** Reads `count` records from record `first` on (across files) into `raw` at `at`. */
  private async readRun(first: number, count: number, raw: Uint8Array, at: number): Promise<void> {
    const { recordBytes, segments } = this.layout;
    let record = first;
    let left = count;
    let into = at;
    while (left > 0) {
      let s = segments.length - 1;
      while (s > 0 && (this.starts[s] as number) > record) s -= 1;
      const segment = segments[s] as RecordSegment;
      const local = record - (this.starts[s] as number);
      const n = Math.min(left, segment.count - local);
      const bytes = n * recordBytes;
      const got = await readAt(await this.handle(s), raw, into, bytes, segment.offset + local * recordBytes);
      if (got < bytes) {
        const index = local + Math.floor(got / recordBytes);
        throw truncated(
          `${segment.label} ends inside record ${index}: expected ${segment.count} records of ${recordBytes} bytes from byte ${segment.offset} on (was the file changed while it was read?)`,
        );
      }
      record += n;
      left -= n;
      into += bytes;
    }
  }

  private handle(segment: number): Promise<fs.promises.FileHandle> {
    if (this.closed) {
      return Promise.reject(makeError(Error, ErrorCodes.INTERNAL, 'a record was read after the reader was closed'));
    }
    let handle = this.handles.get(segment);
    if (handle === undefined) {
      handle = openFile((this.layout.segments[segment] as RecordSegment).file);
      this.handles.set(segment, handle);
    }
    return handle;
  }
}
