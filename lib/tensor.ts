/**
 * Tensor: a row-major, contiguous array with a type and dims, shaped like onnxruntime-node's
 * Tensor (type, data, dims, location, dispose) so that data moves between the two without copies.
 *
 * float32 data is a Float32Array, int32 an Int32Array; bfloat16 and float16 travel as Uint16Array
 * bit patterns (float16 also accepts a Float16Array where the runtime has one).
 *
 * Every entry point also takes a CPU tensor of another library (onnxruntime-node's Tensor) or a plain
 * { type, dims, data } object: asTensor() makes a Tensor over the same data, without a copy.
 */
import { SsdError, fromNativeError, rangeError, typeError, describe } from './errors';
import { copyHostDevice } from './device-copy';
import { native } from './native';
import { DTYPES, FLOAT_TYPES, MAX_ELEMENTS, TENSOR_TYPES, type DtypeRow, type FloatDtype } from './rules';

export type TensorType = (typeof TENSOR_TYPES)[number];
export type FloatType = FloatDtype;
export type TensorLocation = 'cpu' | 'cuda';
export type TensorData = Float32Array | Uint16Array | Int32Array | ArrayBufferView;

const TYPES: readonly TensorType[] = TENSOR_TYPES;

/** The row of `type` in the dtype table (lib/rules.ts). */
function row(type: TensorType): DtypeRow {
  return DTYPES[type];
}

/** The constructors of the TypedArray classes that the dtype table names for data. */
const ARRAY_CLASSES = { Float32Array, Int32Array, Uint16Array, Uint8Array };

/** `length` elements of `type`'s array class over `data`'s memory. */
function viewAs(type: TensorType, data: ArrayBufferView, length: number): ArrayLike<number> {
  const View = ARRAY_CLASSES[row(type).array] as new (buffer: ArrayBufferLike, byteOffset: number, length: number) => ArrayLike<number>;
  return new View(data.buffer, data.byteOffset, length);
}

/** Whether this runtime has the TypedArray class `name` (Float16Array is recent). */
function hasArrayClass(name: string): boolean {
  return typeof (globalThis as Record<string, unknown>)[name] === 'function';
}

/** 'a Float32Array', 'an Int32Array', 'a Uint16Array' (said "you"). */
function withArticle(name: string): string {
  return `${/^[AEIO]/.test(name) ? 'an' : 'a'} ${name}`;
}

/** The TypedArray class names accepted for each type, for error messages. */
function expectedDataFor(type: TensorType): string {
  const r = row(type);
  const main = r.bits ? `${withArticle(r.array)} of ${type} bit patterns` : withArticle(r.array);
  return r.alsoArray !== undefined && hasArrayClass(r.alsoArray) ? `${main} or ${withArticle(r.alsoArray)}` : main;
}

/** %TypedArray%.prototype[Symbol.toStringTag]'s getter: reads the array's internal class name. */
const typedArrayTag = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(Uint8Array.prototype) as object, Symbol.toStringTag)!.get!;

/**
 * The class of a TypedArray ('Float32Array', ...), or undefined for anything else. Unlike
 * instanceof it holds across realms: an array made in another vm context (jest's tests run in one),
 * or received from a worker there, is still an array of its class.
 */
function arrayClass(data: unknown): string | undefined {
  return typedArrayTag.call(data) as string | undefined;
}

function dataMatchesType(type: TensorType, data: unknown): boolean {
  const kind = arrayClass(data);
  const r = row(type);
  return kind === r.array || (kind !== undefined && kind === r.alsoArray && hasArrayClass(kind));
}

/** The fields of an ArrayBuffer or SharedArrayBuffer that this file reads (newer than Node.js 20's typings). */
interface BufferState {
  readonly byteLength: number;
  readonly resizable?: boolean;
  readonly growable?: boolean;
  readonly detached?: boolean;
}

/** Whether `buffer` was detached (transferred). Node.js 20 has no ArrayBuffer.prototype.detached. */
function isDetached(buffer: BufferState): boolean {
  if (typeof buffer.detached === 'boolean') return buffer.detached;
  if (buffer.byteLength !== 0) return false;
  try {
    new Uint8Array(buffer as unknown as ArrayBuffer); // throws on a detached buffer
    return false;
  } catch {
    return true;
  }
}

/**
 * Why `data` cannot hold a tensor's data, or undefined when it can: its buffer can change length (a
 * resizable ArrayBuffer, a growable SharedArrayBuffer: refused, as a tensor's size is fixed), or was
 * detached (transferred).
 */
export function dataProblem(data: ArrayBufferView): string | undefined {
  const buffer = data.buffer as unknown as BufferState;
  if (buffer.resizable === true) return 'a resizable ArrayBuffer';
  if (buffer.growable === true) return 'a growable SharedArrayBuffer';
  if (isDetached(buffer)) return 'a detached ArrayBuffer (it was transferred)';
  return undefined;
}

/** The TypeError for an array that dataProblem() refuses, as data of `name`. */
function dataError(name: string, expected: string, data: unknown, problem: string): TypeError {
  const hint = problem.startsWith('a detached') ? '' : `; copy it into a fixed-length one first (new ${(data as object).constructor.name}(array))`;
  return new TypeError(`Expected ${expected} on a fixed-length ArrayBuffer or SharedArrayBuffer for ${name} but received ${describe(data)} on ${problem}${hint}`);
}

/**
 * `data` as the native addon reads it: the same array, except a Float16Array (an element type that
 * N-API does not name on every runtime), which goes as a Uint16Array over the same memory.
 */
export function nativeView(data: ArrayBufferView): ArrayBufferView {
  return arrayClass(data) === 'Float16Array' ? new Uint16Array(data.buffer, data.byteOffset, data.byteLength / 2) : data;
}

/**
 * A TypedArray of this realm over `buffer` for data of `type` (an ArrayBuffer the addon made for a
 * result: under a vm context, jest's, it belongs to another realm, and so would an array made there).
 */
export function arrayOver(type: TensorType, buffer: ArrayBuffer): TensorData {
  return new ARRAY_CLASSES[row(type).array](buffer);
}

/** Bytes per element of a tensor type. */
export function elementSize(type: TensorType): number {
  return row(type).bytes;
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

/**
 * What the entry points take for a tensor: a Tensor of this package, or a tensor of another library
 * in CPU memory with the same field names (onnxruntime-node's Tensor), or a plain object. `type` is
 * one of TensorType (onnxruntime-node names float32, float16 and int32 alike and has no bfloat16),
 * `dims` non-negative integers, `data` a TypedArray of size(dims) elements matching `type`;
 * `location`, where present, 'cpu' (onnxruntime's 'cpu-pinned' is CPU memory too).
 */
export interface TensorLike {
  readonly type: string;
  readonly dims: readonly number[];
  readonly data: unknown;
  readonly location?: string;
}

/** The rule of TensorLike in words, for error messages. */
const TENSOR_LIKE = "a Tensor of ssd-kernels or an object with type, dims and data; onnxruntime-node's Tensor works";

/** "a", "a and b", "a, b and c". */
function wordList(words: readonly string[]): string {
  return words.length < 2 ? words.join('') : `${words.slice(0, -1).join(', ')} and ${words[words.length - 1]}`;
}

/**
 * The Tensor made for each foreign tensor, so that passing the same object twice (an input as an
 * output, say) gives the same Tensor and the checks that compare tensors by identity still see it.
 */
const wrappers = new WeakMap<object, Tensor>();

/**
 * `value` as a Tensor: a Tensor as is; a foreign tensor (see TensorLike) checked and wrapped in a
 * Tensor over its `data`, which the kernels then read and write in place. `name` and `expected`
 * ("a Tensor (nheads)") make the error messages; a disposed onnxruntime tensor (location 'none')
 * raises ERR_SSD_DISPOSED as a disposed Tensor does.
 */
export function asTensor(value: unknown, name: string, expected = 'a Tensor'): Tensor {
  if (value instanceof Tensor) return value;
  if (typeof value !== 'object' || value === null || Array.isArray(value) || ArrayBuffer.isView(value)) {
    throw typeError(name, expected, value);
  }
  const fields = value as Record<string, unknown>;
  // location first: onnxruntime's data getter throws on a disposed or GPU tensor
  const location = fields.location;
  if (location === 'none') throw new SsdError('ERR_SSD_DISPOSED', `${name} was disposed before the call`);
  if (location !== undefined && location !== 'cpu' && location !== 'cpu-pinned') {
    throw new TypeError(
      `Expected ${expected} in CPU memory for ${name} (tensors of other libraries are taken on the CPU only: ` +
        "for onnxruntime-node's Tensor, `new ort.Tensor(t.type, await t.getData(), t.dims)` makes a CPU copy, " +
        `or ask the session for outputs on the CPU) but received a tensor with location ${typeof location === 'string' ? `'${location}'` : describe(location)}`,
    );
  }
  const missing = (['type', 'dims', 'data'] as const).filter((key) => !(key in fields) || fields[key] === undefined);
  if (missing.length > 0) {
    throw new TypeError(`Expected ${expected} for ${name} (${TENSOR_LIKE}) but received ${describe(value)} without ${wordList(missing)}`);
  }
  const { type, dims, data } = fields;
  if (typeof type !== 'string' || !TYPES.includes(type as TensorType)) {
    const hint = type === 'uint16' ? "; for bfloat16 bit patterns in a 'uint16' tensor, new Tensor('bfloat16', t.data, t.dims) takes them without a copy" : '';
    throw new TypeError(`Expected one of ${TYPES.map((t) => `'${t}'`).join(', ')} for ${name}.type but received ${describe(type)}${hint}`);
  }
  const tensorType = type as TensorType;
  const size = checkDims(`${name}.dims`, dims);
  const shape = dims as readonly number[];
  if (!dataMatchesType(tensorType, data)) throw typeError(`${name}.data`, `${expectedDataFor(tensorType)} for type '${tensorType}'`, data);
  const problem = dataProblem(data as ArrayBufferView);
  if (problem !== undefined) throw dataError(`${name}.data`, `${expectedDataFor(tensorType)} for type '${tensorType}'`, data, problem);
  const length = (data as { length: number }).length;
  if (length !== size) throw rangeError(`${name}.data`, `${size} elements for dims [${shape.join(', ')}]`, describe(data));
  const cached = wrappers.get(value);
  if (
    cached !== undefined &&
    !cached.disposed &&
    cached.type === tensorType &&
    cached.data === data &&
    cached.dims.length === shape.length &&
    cached.dims.every((d, i) => d === shape[i])
  ) {
    return cached;
  }
  const tensor = new Tensor(tensorType, data as TensorData, shape);
  wrappers.set(value, tensor);
  return tensor;
}

/**
 * Device memory behind a 'cuda' tensor: a pointer, its device and whether this package owns it
 * (allocated here, released by dispose() or, as a safety net, when the tensor is collected).
 * @internal
 */
export class DeviceStorage {
  constructor(
    readonly ptr: bigint,
    readonly device: number,
    readonly bytes: number,
    readonly owned: boolean,
  ) {}
}

/** Releases owned device memory of tensors that were collected without dispose(). */
const deviceRegistry = new FinalizationRegistry<DeviceStorage>((storage) => {
  try {
    native().cudaRelease(storage.device, storage.ptr);
  } catch {
    // the addon is gone (process exit): nothing to release
  }
});

/** 'cuda' → 0, 'cuda:N' → N, N → N. */
export function deviceIndex(name: string, device: unknown): number {
  if (device === undefined || device === 'cuda') return 0;
  if (typeof device === 'number') {
    if (!Number.isInteger(device) || device < 0) throw rangeError(name, "a device index >= 0, 'cuda' or 'cuda:N'", String(device));
    return device;
  }
  if (typeof device !== 'string') throw typeError(name, "'cuda', 'cuda:N' or a device index", device);
  const match = /^cuda:(\d+)$/.exec(device);
  if (!match) throw rangeError(name, "'cuda', 'cuda:N' or a device index", describe(device));
  return Number(match[1]);
}

export class Tensor {
  readonly type: TensorType;
  readonly dims: readonly number[];
  readonly location: TensorLocation;
  readonly size: number;
  #data: TensorData | undefined;
  #storage: DeviceStorage | undefined;
  /** Settles when the data of a 'cuda' tensor is in place (a pending upload); rejects if it failed. */
  #ready: Promise<void> = Promise.resolve();

  /**
   * @param type  'float32' | 'bfloat16' | 'float16' | 'int32'
   * @param data  a TypedArray of exactly size(dims) elements matching `type`
   * @param dims  row-major sizes; defaults to [data.length]
   */
  constructor(type: TensorType, data: TensorData, dims?: readonly number[]) {
    if (typeof type !== 'string' || !TYPES.includes(type)) {
      throw typeError('type', `one of ${TYPES.map((t) => `'${t}'`).join(', ')}`, type);
    }
    if ((data as unknown) instanceof DeviceStorage) {
      // Internal: a 'cuda' tensor over device memory (see fromDevicePointer and toDevice).
      const storage = data as unknown as DeviceStorage;
      const size = checkDims('dims', dims);
      if (size * elementSize(type) > storage.bytes) {
        throw rangeError('dims', `at most ${storage.bytes / elementSize(type)} elements for the device memory given`, `dims [${dims!.join(', ')}]`);
      }
      this.type = type;
      this.dims = Object.freeze([...dims!]);
      this.size = size;
      this.location = 'cuda';
      this.#storage = storage;
      if (storage.owned) deviceRegistry.register(this, storage, this);
      return;
    }
    this.location = 'cpu';
    if (!dataMatchesType(type, data)) throw typeError('data', `${expectedDataFor(type)} for type '${type}'`, data);
    const length = (data as unknown as { length: number }).length;
    const shape = dims === undefined ? [length] : dims;
    const size = checkDims('dims', shape);
    const problem = dataProblem(data);
    if (problem !== undefined) throw dataError('data', `${expectedDataFor(type)} for type '${type}'`, data, problem);
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
    if (type === 'float32') return new Tensor(type, values instanceof Float32Array ? values : Float32Array.from(values), dims);
    const bits = FLOAT_TYPES.includes(type) ? row(type).bits : undefined;
    if (bits === undefined) {
      const names = FLOAT_TYPES.map((t) => `'${t}'`);
      throw typeError('type', `${names.slice(0, -1).join(', ')} or ${names[names.length - 1]}`, type);
    }
    return new Tensor(type, bits.fromFloat32(values), dims);
  }

  /**
   * A device tensor over memory owned elsewhere (another addon, a CUDA graph...): this package
   * never frees it. `ptr` must hold size(dims) elements of `type` on device `options.device`.
   */
  static fromDevicePointer(ptr: bigint, type: TensorType, dims: readonly number[], options: { device?: number | string } = {}): Tensor {
    if (typeof ptr !== 'bigint') throw typeError('ptr', 'a BigInt device address', ptr);
    if (ptr <= 0n || ptr >= 2n ** 64n) throw rangeError('ptr', 'a nonzero 64-bit device address', String(ptr));
    if (typeof type !== 'string' || !TYPES.includes(type)) {
      throw typeError('type', `one of ${TYPES.map((t) => `'${t}'`).join(', ')}`, type);
    }
    const size = checkDims('dims', dims);
    const device = deviceIndex('options.device', options.device);
    return new Tensor(type, new DeviceStorage(ptr, device, size * elementSize(type), false) as unknown as TensorData, dims);
  }

  /** @internal A 'cuda' tensor over memory from the package's allocator, released by dispose(). */
  static fromOwnedDeviceMemory(ptr: bigint, type: TensorType, dims: readonly number[], device: number, bytes: number): Tensor {
    return new Tensor(type, new DeviceStorage(ptr, device, bytes, true) as unknown as TensorData, dims);
  }

  /** The elements of a 'cpu' tensor. Throws ERR_SSD_DISPOSED after dispose(), ERR_SSD_DEVICE on a 'cuda' tensor. */
  get data(): TensorData {
    if (this.#storage !== undefined) {
      throw new SsdError('ERR_SSD_DEVICE', `The data of a 'cuda' tensor is in device memory; use \`await tensor.toHost()\``);
    }
    if (this.#data === undefined) throw new SsdError('ERR_SSD_DISPOSED', 'This tensor was disposed; its data is gone');
    return this.#data;
  }

  get disposed(): boolean {
    return this.location === 'cuda' ? this.#storage === undefined : this.#data === undefined;
  }

  /** The device index of a 'cuda' tensor (undefined on the CPU). */
  get device(): number | undefined {
    return this.location === 'cuda' ? this.#live().device : undefined;
  }

  /** The device address of a 'cuda' tensor's data. */
  get devicePointer(): bigint {
    if (this.location !== 'cuda') throw new SsdError('ERR_SSD_DEVICE', "devicePointer exists only on 'cuda' tensors");
    return this.#live().ptr;
  }

  #live(): DeviceStorage {
    if (this.#storage === undefined) throw new SsdError('ERR_SSD_DISPOSED', 'This tensor was disposed; its device memory is gone');
    return this.#storage;
  }

  /** @internal Settles when a pending upload into this tensor is done. */
  get ready(): Promise<void> {
    return this.#ready;
  }

  /**
   * A copy of this tensor in device memory (`'cuda'`, `'cuda:N'` or N; default device 0). The copy
   * is queued on the device's stream: work queued after it sees the data.
   */
  toDevice(device: number | string = 'cuda'): Tensor {
    const index = deviceIndex('device', device);
    const addon = native();
    if (this.location === 'cuda') throw new SsdError('ERR_SSD_DEVICE', "toDevice() copies a 'cpu' tensor; this one is already on a device");
    const data = this.data;
    const bytes = this.size * elementSize(this.type);
    const problem = dataProblem(data);
    if (problem !== undefined) throw new TypeError(`Expected a tensor with its data for toDevice() but received one whose data (${describe(data)}) is on ${problem}`);
    let address: bigint;
    try {
      address = addon.cudaAlloc(index, bytes);
    } catch (err) {
      throw fromNativeError(err);
    }
    const out = Tensor.fromOwnedDeviceMemory(address, this.type, this.dims, index, bytes);
    const ptr = out.devicePointer;
    // in pieces: one byte view of 4 GiB or more cannot be made (lib/device-copy.ts)
    out.#ready = copyHostDevice(addon, index, ptr, data, true).catch((err: unknown) => {
      throw fromNativeError(err);
    });
    out.#ready.catch(() => undefined); // observed by whoever uses the tensor
    return out;
  }

  /** A 'cpu' copy of this tensor, once every earlier piece of work on its device is done. */
  async toHost(): Promise<Tensor> {
    if (this.location === 'cpu') return new Tensor(this.type, this.data, this.dims);
    const storage = this.#live();
    await this.#ready;
    let buffer: ArrayBuffer;
    try {
      // into a new buffer that the addon makes, of any size (no staging: nothing else reaches it
      // before it resolves; no JavaScript view of the whole buffer, which past 4 GiB could not be made)
      buffer = await native().cudaDownload(storage.device, storage.ptr, this.size * elementSize(this.type));
    } catch (err) {
      throw fromNativeError(err);
    }
    return new Tensor(this.type, arrayOver(this.type, buffer), this.dims);
  }

  /** The values of a 'cpu' tensor as float32 (a copy for 16-bit types, the same array for float32). */
  toFloat32(): Float32Array {
    const data = this.data;
    if (this.type === 'float32') return data as Float32Array;
    const r = row(this.type);
    if (r.bits === undefined) return Float32Array.from(data as Int32Array);
    return r.bits.toFloat32(viewAs(this.type, data, this.size)); // the bit patterns, of a Float16Array too
  }

  /**
   * Releases the data (device memory goes back to the package's cache; memory from
   * fromDevicePointer is left to its owner). Later use of this tensor throws ERR_SSD_DISPOSED.
   */
  dispose(): void {
    this.#data = undefined;
    const storage = this.#storage;
    if (storage === undefined) return;
    this.#storage = undefined;
    if (storage.owned) {
      deviceRegistry.unregister(this);
      native().cudaRelease(storage.device, storage.ptr);
    }
  }
}
