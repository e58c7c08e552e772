import * as path from 'node:path';
import { describe as describeValue, invalidArgType, invalidArgValue } from '../util/errors';
import type { DType, Tensor } from '../model/tensor';
import { type ResolvedDataOptions, shuffledIndices } from './options';

export type DataFormat = 'npy' | 'npz' | 'cifar10' | 'idx' | 'images';

/** @internal Reads the batches of one pass; closed when the pass ends, however it ends. */
export interface BatchReader<B = Tensor> {
  /**
   * The samples at positions start..start+count-1 of the pass (in `order`, or in
   * file order when it is null). Calls come in increasing `start`, possibly
   * with gaps (a resumed pass skips its first batches).
   */
  read(start: number, count: number): Promise<B>;
  close(): Promise<void>;
}

/** @internal What a reader found when it opened a file or folder. */
export interface BatchSource<B = Tensor> {
  readonly path: string;
  readonly format: DataFormat;
  /** Samples in the file(s). */
  readonly records: number;
  readonly sampleShape: readonly number[];
  readonly dtype: DType;
  /** Starts a pass over the records in `order` (null: file order, read sequentially). */
  open(order: Uint32Array | null): Promise<BatchReader<B>>;
}

/**
 * A data set read from disk in batches: an `AsyncIterable<Tensor>` of
 * `[batch, ...sampleShape]` tensors. Each `for await` is a fresh pass in the
 * same order; only one batch is in memory at a time, and files are closed when
 * a pass ends, fails or is left early. Made by `readNpy`, `readCifar10`,
 * `readIdx`, `readImageFolder` or `openDataset`. `B` is the batch: a
 * `Tensor`, or for a model with several inputs (`readNpz`, an `NpzDataset`)
 * an array of them, one per input.
 */
export class Dataset<B extends Tensor | readonly Tensor[] = Tensor> implements AsyncIterable<B> {
  /** The file or folder as given. */
  readonly path: string;
  readonly format: DataFormat;
  /** The file's or folder's base name. */
  readonly name: string;
  /** Samples per pass (after `limit`). */
  readonly length: number;
  readonly batchSize: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  /** Shape of one sample; batches are `[n, ...sampleShape]` (for several inputs: the first input's). */
  readonly sampleShape: readonly number[];
  readonly dtype: DType;
  private readonly source: BatchSource<B>;
  private order: Uint32Array | null | undefined;

  /** @internal */
  constructor(source: BatchSource<B>, options: ResolvedDataOptions) {
    this.source = source;
    this.path = source.path;
    this.format = source.format;
    this.name = path.basename(source.path) || source.path;
    this.length = Math.min(source.records, options.limit ?? Infinity);
    this.batchSize = options.batchSize;
    this.shuffle = options.shuffle;
    this.seed = options.seed;
    this.dropLast = options.dropLast;
    this.sampleShape = Object.freeze([...source.sampleShape]);
    this.dtype = source.dtype;
  }

  /** Batches per pass. */
  get batchCount(): number {
    return this.dropLast ? Math.floor(this.length / this.batchSize) : Math.ceil(this.length / this.batchSize);
  }

  /** E.g. "digits.npy: 360 samples of float32 [1, 8, 8]". */
  describe(): string {
    const samples = `${this.length} sample${this.length === 1 ? '' : 's'}`;
    return `${this.name}: ${samples} of ${this.dtype} [${this.sampleShape.join(', ')}]`;
  }

  toString(): string {
    return `Dataset(${this.describe()})`;
  }

  [Symbol.asyncIterator](): AsyncGenerator<B, void, undefined> {
    return this.pass(0, 1);
  }

  /**
   * The batches of a pass from batch index `start` on, for resuming a run:
   * the same tensors as a full pass (same shuffle, limit and dropLast) less the
   * first `start` batches, whose records are not read (a gzipped IDX file read
   * in file order is still decompressed up to them). `batches(0)` is a full
   * pass; a `start` at or past {@link batchCount} yields nothing. With `step`
   * k, only every k-th batch from `start` on (one rank's share of a
   * distributed run; the others are not read). Each `for await` over the
   * result is a fresh pass.
   */
  batches(start: number, step = 1): AsyncIterable<B> {
    if (typeof start !== 'number' || !Number.isInteger(start)) {
      throw invalidArgType(`Expected a non-negative integer for start but received ${describeValue(start)}`);
    }
    if (start < 0 || !Number.isSafeInteger(start)) {
      throw invalidArgValue(`Expected a non-negative safe integer for start but received ${start}`);
    }
    if (typeof step !== 'number' || !Number.isSafeInteger(step) || step < 1) {
      throw invalidArgValue(`Expected a positive integer for step but received ${describeValue(step)}`);
    }
    return { [Symbol.asyncIterator]: () => this.pass(start, step) };
  }

  /** One pass over batches `first`, `first + step`, ...; the reader is closed however the pass ends. */
  private async *pass(first: number, step: number): AsyncGenerator<B, void, undefined> {
    const batches = this.batchCount;
    if (first >= batches) return;
    const reader = await this.source.open(this.passOrder());
    try {
      for (let b = first; b < batches; b += step) {
        const start = b * this.batchSize;
        yield await reader.read(start, Math.min(this.batchSize, this.length - start));
      }
    } finally {
      await reader.close();
    }
  }

  /** Record indices of a pass, position by position; null for file order. @internal */
  protected passOrder(): Uint32Array | null {
    if (this.order === undefined) {
      this.order = this.shuffle ? shuffledIndices(this.source.records, this.seed).slice(0, this.length) : null;
    }
    return this.order;
  }
}
