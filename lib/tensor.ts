/**
 * Tensor: a row-major, contiguous array with a type and dims, shaped like onnxruntime-node's
 * Tensor (type, data, dims, location, dispose) so that data moves between the two without copies.
 *
 * float32 data is a Float32Array, int32 an Int32Array; bfloat16 and float16 travel as Uint16Array
 * bit patterns (float16 also accepts a Float16Array where the runtime has one).
 */
import { SsdError, rangeError, typeError, describe } from './errors';
import {
  bfloat16ToFloat32,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToFloat16,
} from './half';

export type TensorType = 'float32' | 'bfloat16' | 'float16' | 'int32';
export type FloatType = Exclude<TensorType, 'int32'>;
export type TensorLocation = 'cpu' | 'cuda';
export type TensorData = Float32Array | Uint16Array | Int32Array | ArrayBufferView;

const TYPES: readonly TensorType[] = ['float32', 'bfloat16', 'float16', 'int32'];

/** The largest element count a tensor may hold (TypedArray lengths are below 2^32 in practice). */
const MAX_ELEMENTS = 2 ** 32 - 1;

function float16ArrayClass(): (new (...args: never[]) => ArrayBufferView) | undefined {
  return (globalThis as { Float16Array?: new (...args: never[]) => ArrayBufferView }).Float16Array;
}

/** The TypedArray class names accepted for each type, for error messages. */
function expectedDataFor(type: TensorType): string {
  switch (type) {
    case 'float32':
      return 'a Float32Array';
    case 'int32':
      return 'an Int32Array';
    case 'bfloat16':
      return 'a Uint16Array of bfloat16 bit patterns';
    case 'float16':
      return float16ArrayClass() ? 'a Uint16Array of float16 bit patterns or a Float16Array' : 'a Uint16Array of float16 bit patterns';
  }
}

function dataMatchesType(type: TensorType, data: unknown): boolean {
  switch (type) {
    case 'float32':
      return data instanceof Float32Array;
    case 'int32':
      return data instanceof Int32Array;
    case 'bfloat16':
      return data instanceof Uint16Array;
    case 'float16': {
      const F16 = float16ArrayClass();
      return data instanceof Uint16Array || (F16 !== undefined && data instanceof F16);
    }
  }
}

/** Bytes per element of a tensor type. */
export function elementSize(type: TensorType): number {
  return type === 'float32' || type === 'int32' ? 4 : 2;
}

/** Checks `dims` and returns the element count; `name` is used in messages. */
export function checkDims(name: string, dims: unknown): number {
  if (!Array.isArray(dims)) throw typeError(name, 'an array of non-negative integers', dims);
  let size = 1;
  for (let i = 0; i < dims.length; i++) {
    const d: unknown = dims[i];
    if (typeof d !== 'number') throw typeError(`${name}[${i}]`, 'a non-negative integer', d);
    if (!Number.isInteger(d) || d < 0) {
      throw rangeError(`${name}[${i}]`, 'a non-negative integer', String(d));
    }
    size *= d;
  }
  if (size > MAX_ELEMENTS) {
    throw rangeError(name, `at most ${MAX_ELEMENTS} elements`, `dims [${dims.join(', ')}] (${size} elements)`);
  }
  return size;
}

export class Tensor {
  readonly type: TensorType;
  readonly dims: readonly number[];
  readonly location: TensorLocation = 'cpu';
  readonly size: number;
  #data: TensorData | undefined;

  /**
   * @param type  'float32' | 'bfloat16' | 'float16' | 'int32'
   * @param data  a TypedArray of exactly size(dims) elements matching `type`
   * @param dims  row-major sizes; defaults to [data.length]
   */
  constructor(type: TensorType, data: TensorData, dims?: readonly number[]) {
    if (typeof type !== 'string' || !TYPES.includes(type)) {
      throw typeError('type', `one of ${TYPES.map((t) => `'${t}'`).join(', ')}`, type);
    }
    if (!dataMatchesType(type, data)) throw typeError('data', `${expectedDataFor(type)} for type '${type}'`, data);
    const length = (data as unknown as { length: number }).length;
    const shape = dims === undefined ? [length] : dims;
    const size = checkDims('dims', shape);
    if (size !== length) {
      throw rangeError(
        'data',
        `${size} elements for dims [${shape.join(', ')}]`,
        `${describe(data)}`,
      );
    }
    this.type = type;
    this.#data = data;
    this.dims = Object.freeze([...shape]);
    this.size = size;
  }

  /** A tensor of `type` holding `values` converted from float32 (rounded to nearest even). */
  static fromFloat32(type: FloatType, values: ArrayLike<number>, dims?: readonly number[]): Tensor {
    switch (type) {
      case 'float32':
        return new Tensor(type, values instanceof Float32Array ? values : Float32Array.from(values), dims);
      case 'bfloat16':
        return new Tensor(type, float32ToBfloat16(values), dims);
      case 'float16':
        return new Tensor(type, float32ToFloat16(values), dims);
      default:
        throw typeError('type', "'float32', 'bfloat16' or 'float16'", type);
    }
  }

  /** The elements; throws an SsdError with code ERR_SSD_DISPOSED after dispose(). */
  get data(): TensorData {
    if (this.#data === undefined) throw new SsdError('ERR_SSD_DISPOSED', 'This tensor was disposed; its data is gone');
    return this.#data;
  }

  get disposed(): boolean {
    return this.#data === undefined;
  }

  /** The values as float32 (a copy for 16-bit types, the same array for float32). */
  toFloat32(): Float32Array {
    const data = this.data;
    switch (this.type) {
      case 'float32':
        return data as Float32Array;
      case 'int32':
        return Float32Array.from(data as Int32Array);
      case 'bfloat16':
        return bfloat16ToFloat32(data as Uint16Array);
      case 'float16': {
        const view = new Uint16Array(data.buffer, data.byteOffset, this.size);
        return float16ToFloat32(view);
      }
    }
  }

  /** Releases the data. Later use of this tensor throws ERR_SSD_DISPOSED. */
  dispose(): void {
    this.#data = undefined;
  }
}
