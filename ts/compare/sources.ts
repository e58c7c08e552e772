// The data sources of a comparison: any Iterable or AsyncIterable of batches.
// On resume (a checkpoint) or in a distributed run, a source is read from a
// given batch on, taking every stride-th: a torch-cka Dataset skips without
// reading; any other source is read and passed over.
import { Dataset } from '../data/dataset';
import type { Batch } from '../model/tensor';
import { describe, ErrorCodes, invalidArgType, makeError } from '../util/errors';

export type BatchIterator = AsyncIterator<Batch> | Iterator<Batch>;

function iterableMethod(data: unknown, what: string): () => BatchIterator {
  if (data !== null && typeof data === 'object') {
    const source = data as Partial<AsyncIterable<Batch> & Iterable<Batch>>;
    const asyncIterator = source[Symbol.asyncIterator];
    if (typeof asyncIterator === 'function') return () => asyncIterator.call(source);
    const iterator = source[Symbol.iterator];
    if (typeof iterator === 'function' && !ArrayBuffer.isView(source)) return () => iterator.call(source);
  }
  throw invalidArgType(`Expected ${what} to be an Iterable or AsyncIterable of batches but received ${describe(data)}`);
}

const iteratorOf = (data: unknown, what: string): BatchIterator => iterableMethod(data, what)();

/** Fails (ERR_INVALID_ARG) unless `data` is an Iterable or AsyncIterable; checked before a run starts. */
export function checkSource(data: unknown, what: string): void {
  iterableMethod(data, what);
}

/** Where a run reads its sources: past the batches a checkpoint used, one rank's share. */
export interface SourcePlan {
  /** Batches of each source used before (restored from a checkpoint): passed over. */
  skip: number;
  /** The first batch to take (>= skip). */
  first: number;
  /** Take every stride-th batch from `first` on (the number of ranks; 1 alone). */
  stride: number;
}

/** The two sources' iterators (the second undefined when model 2 sees data1), positioned as `plan` says. */
export async function openSources(
  data1: unknown,
  data2: unknown,
  { skip, first, stride }: SourcePlan,
): Promise<[BatchIterator, BatchIterator | undefined]> {
  const open = async (data: unknown, what: string): Promise<BatchIterator> => {
    if ((first > 0 || stride > 1) && data instanceof Dataset) {
      return data.batches(first, stride)[Symbol.asyncIterator]();
    }
    const iterator = iteratorOf(data, what);
    for (let i = 0; i < skip; i += 1) {
      const item = await iterator.next();
      if (item.done) {
        throw makeError(
          Error,
          ErrorCodes.CHECKPOINT_MISMATCH,
          `The checkpoint has used ${skip} batches of ${what}, but ${what} has only ${i}; resume with the same data`,
        );
      }
    }
    return first > skip || stride > 1 ? strided(iterator, first - skip, stride) : iterator;
  };
  return [await open(data1, 'data1'), data2 === undefined ? undefined : await open(data2, 'data2')];
}

/**
 * Every `stride`-th item of an iterator, from its `offset`-th on (0-based):
 * one rank's share of a source that cannot skip by itself. @internal
 */
export function strided<T>(
  inner: AsyncIterator<T> | Iterator<T>,
  offset: number,
  stride: number,
): AsyncIterator<T> & { return(): Promise<IteratorResult<T>> } {
  let skip = offset;
  let done = false;
  return {
    async next(): Promise<IteratorResult<T>> {
      if (done) return { done: true, value: undefined };
      for (; skip > 0; skip -= 1) {
        const item = await inner.next();
        if (item.done) {
          done = true;
          return item;
        }
      }
      skip = stride - 1;
      const item = await inner.next();
      if (item.done) done = true;
      return item;
    },
    async return(): Promise<IteratorResult<T>> {
      done = true;
      await inner.return?.();
      return { done: true, value: undefined };
    },
  };
}
