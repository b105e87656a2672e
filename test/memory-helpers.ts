/**
 * What the tests of shared memory (shared-memory.test.ts) and of the memory policy of asynchronous
 * calls (memory-policy.test.ts, and the GPU suite's memory.cuda.test.ts) share: tensors moved onto
 * a SharedArrayBuffer or copied, the ways a caller can hand an ArrayBuffer away, and a garbage
 * collection that frees what was handed away.
 */
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import { Tensor, type TensorData } from '../lib/index';

/** A new array of `data`'s class and length on `buffer` (or a new ArrayBuffer), holding a copy of it. */
function copyData(data: TensorData, shared: boolean): TensorData {
  const Ctor = data.constructor as new (buffer: ArrayBufferLike | number) => TensorData;
  const copy = shared ? new Ctor(new SharedArrayBuffer(data.byteLength)) : new Ctor(data.byteLength / (data as Float32Array).BYTES_PER_ELEMENT);
  new Uint8Array(copy.buffer, copy.byteOffset, copy.byteLength).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  return copy;
}

/** The same tensor with its data copied onto a SharedArrayBuffer. */
export function onShared(t: Tensor): Tensor {
  return new Tensor(t.type, copyData(t.data, true), t.dims);
}

/** The same tensor with its data copied onto a new ArrayBuffer of its own. */
export function copyOf(t: Tensor): Tensor {
  return new Tensor(t.type, copyData(t.data, false), t.dims);
}

/** Each tensor of an object of tensors mapped through `f` (undefined entries dropped). */
export function mapTensors<T extends object>(tensors: T, f: (t: Tensor) => Tensor): T {
  const out: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(tensors)) if (v instanceof Tensor) out[k] = f(v);
  return out as T;
}

/** Fills a host tensor's data with zero bits; returns it. */
export function zeroed(t: Tensor): Tensor {
  new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength).fill(0);
  return t;
}

/** The bytes of a tensor's data (a copy). */
export function bytesOf(t: Tensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength).slice();
}

/** Bitwise equality of byte arrays. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** A way to hand an ArrayBuffer away: returns its new owner (or undefined when the new owner is dropped at once). */
export interface Transfer {
  name: string;
  /** undefined where this runtime lacks it; `why` says so */
  run?: (buffer: ArrayBuffer) => ArrayBuffer | undefined;
  why?: string;
}

const canTransfer = typeof (ArrayBuffer.prototype as { transfer?: unknown }).transfer === 'function';
const noTransfer = `ArrayBuffer.prototype.transfer does not exist in Node.js ${process.version}`;

/** Every way this runtime has of detaching an ArrayBuffer from its typed arrays. */
export const TRANSFERS: Transfer[] = [
  { name: 'structuredClone with transfer', run: (b) => structuredClone(b, { transfer: [b] }) },
  {
    name: 'postMessage with a transfer list',
    run: (b) => {
      const { port1, port2 } = new MessageChannel();
      port1.postMessage(b, [b]);
      const received = receiveMessageOnPort(port2)?.message as ArrayBuffer;
      port1.close();
      port2.close();
      return received;
    },
  },
  canTransfer ? { name: 'ArrayBuffer.prototype.transfer()', run: (b) => (b as unknown as { transfer(): ArrayBuffer }).transfer() } : { name: 'ArrayBuffer.prototype.transfer()', why: noTransfer },
  // a new length moves the data into new memory and frees the old at once
  canTransfer
    ? { name: 'ArrayBuffer.prototype.transfer(2 × length)', run: (b) => (b as unknown as { transfer(n: number): ArrayBuffer }).transfer(b.byteLength * 2) }
    : { name: 'ArrayBuffer.prototype.transfer(2 × length)', why: noTransfer },
  // the new owner dropped and collected: its memory goes back to the allocator
  {
    name: 'structuredClone, new owner dropped and collected',
    run: (b) => {
      structuredClone(b, { transfer: [b] });
      collectGarbage();
      return undefined;
    },
  },
];

let gc: (() => void) | undefined;
/** A full garbage collection (global.gc made available at run time when node runs without --expose-gc). */
export function collectGarbage(): void {
  if (gc === undefined) {
    v8.setFlagsFromString('--expose-gc');
    gc = vm.runInNewContext('gc') as () => void;
  }
  gc();
}

/** The ArrayBuffer behind a tensor's data. */
export function bufferOf(t: Tensor): ArrayBuffer {
  return t.data.buffer as ArrayBuffer;
}
