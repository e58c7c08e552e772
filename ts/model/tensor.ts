// Batches on the JS side: a typed array and a row-major shape, checked
// against each other, and turned into what the addon copies into libtorch.
import { describe, ErrorCodes, invalidArgType, makeError } from '../util/errors';

/** The element types a batch may have (a model sees the same dtype in libtorch). */
export type DType = 'float32' | 'float64' | 'int32' | 'int64' | 'uint8';
/** The typed arrays behind each {@link DType}, in the same order (int64 is a BigInt64Array). */
export type TensorData = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;

/** Anything with a typed array and a shape: a {@link Tensor}, or a plain object. */
export interface TensorLike {
  /** The elements, row-major. */
  readonly data: TensorData;
  /** The dimensions; their product is `data.length`. The first is the batch. */
  readonly shape: readonly number[];
}

/** One batch: a tensor-like, or an array of them for a model with several inputs. */
export type Batch = TensorLike | readonly TensorLike[];

export function dtypeOf(data: unknown): DType | undefined {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof Uint8Array) return 'uint8';
  return undefined;
}

const product = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

function checkShape(shape: unknown, length: number, what: string): readonly number[] {
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw makeError(
      RangeError,
      ErrorCodes.INVALID_BATCH,
      `Expected the shape of ${what} to be an array of non-negative integers but received ${describe(shape)}`,
    );
  }
  if (product(shape) !== length) {
    throw makeError(
      RangeError,
      ErrorCodes.INVALID_BATCH,
      `The shape [${shape.join(', ')}] of ${what} holds ${product(shape)} elements but its data has ${length}`,
    );
  }
  return shape;
}

/** A dense, row-major tensor on the JS side: a typed array and a shape. */
export class Tensor implements TensorLike {
  /** The elements, row-major (not copied). */
  readonly data: TensorData;
  /** The dimensions (frozen); their product is `data.length`. */
  readonly shape: readonly number[];
  /** The element type, from the typed array's kind. */
  readonly dtype: DType;

  constructor(data: TensorData, shape: readonly number[]) {
    const dtype = dtypeOf(data);
    if (dtype === undefined) {
      throw invalidArgType(
        `Expected a Float32Array, Float64Array, Int32Array, BigInt64Array or Uint8Array but received ${describe(data)}`,
      );
    }
    this.data = data;
    this.dtype = dtype;
    this.shape = Object.freeze([...checkShape(shape, data.length, 'the tensor')]);
  }

  /**
   * Wraps a typed array without copying it (a plain number array is copied
   * into a Float32Array).
   */
  static from(data: TensorData | readonly number[], shape: readonly number[]): Tensor {
    return new Tensor(Array.isArray(data) ? Float32Array.from(data as readonly number[]) : (data as TensorData), shape);
  }

  /** Number of elements. */
  get size(): number {
    return this.data.length;
  }

  toString(): string {
    return `Tensor(${this.dtype}, [${this.shape.join(', ')}])`;
  }
}

/** Checks a batch and returns it in the form the native binding takes. */
export function toNativeBatch(batch: unknown, what: string): TensorLike | TensorLike[] {
  if (Array.isArray(batch)) {
    if (batch.length === 0) {
      throw makeError(TypeError, ErrorCodes.INVALID_BATCH, `Expected ${what} to hold at least one tensor`);
    }
    return batch.map((item, i) => toNativeTensor(item, `input ${i} of ${what}`));
  }
  return toNativeTensor(batch, what);
}

function toNativeTensor(value: unknown, what: string): TensorLike {
  if (value === null || typeof value !== 'object') {
    throw makeError(
      TypeError,
      ErrorCodes.INVALID_BATCH,
      `Expected ${what} to be a Tensor or { data: TypedArray, shape: number[] } but received ${describe(value)}`,
    );
  }
  const { data, shape } = value as { data?: unknown; shape?: unknown };
  if (dtypeOf(data) === undefined) {
    throw makeError(
      TypeError,
      ErrorCodes.INVALID_BATCH,
      `Expected the data of ${what} to be a Float32Array, Float64Array, Int32Array, BigInt64Array or Uint8Array but received ${describe(data)}`,
    );
  }
  const typed = data as TensorData;
  return { data: typed, shape: checkShape(shape, typed.length, what) };
}
