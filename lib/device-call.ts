/**
 * One CUDA call's bookkeeping, shared by the forward, the backward and the step: host tensors are
 * uploaded into temporary device memory, device tensors are used in place, outputs are downloaded
 * when the call's results live on the host. Every copy and kernel is queued in order on the device's
 * stream; `settle()` waits for all of them, and `release()` frees the temporaries only once nothing
 * queued can still touch them.
 */
import { copyHostDevice } from './device-copy';
import { fromNativeError } from './errors';
import { native } from './native';
import type { Tensor } from './tensor';

export class DeviceCall {
  private readonly addon = native();
  private readonly temporaries: bigint[] = [];
  private readonly pending: Promise<void>[] = [];

  constructor(readonly device: number) {}

  /** Temporary device memory, released with the call. */
  alloc(bytes: number): bigint {
    const ptr = this.addon.cudaAlloc(this.device, Math.max(bytes, 1));
    this.temporaries.push(ptr);
    return ptr;
  }

  /** A temporary holding a copy of `view` (queued, in pieces for any size: lib/device-copy.ts). */
  upload(view: ArrayBufferView): bigint {
    const ptr = this.alloc(view.byteLength);
    this.pending.push(copyHostDevice(this.addon, this.device, ptr, view, true));
    return ptr;
  }

  /** Queues a copy of device memory at `ptr` into `view` (in pieces for any size). */
  download(ptr: bigint, view: ArrayBufferView): void {
    this.pending.push(copyHostDevice(this.addon, this.device, ptr, view, false));
  }

  /** Queues the call's own work (a kernel launch Promise from the addon). */
  enqueue(work: Promise<void>): void {
    this.pending.push(work);
  }

  /** The device address of `tensor`: in place when it is a device tensor, else an uploaded copy. */
  async buffer(name: string, tensor: Tensor, float32: boolean): Promise<bigint> {
    if (tensor.location === 'cuda') {
      if (float32 && tensor.type !== 'float32') {
        throw new TypeError(`Expected a float32 tensor for ${name} on a CUDA device but received a '${tensor.type}' tensor; convert it on the host`);
      }
      await tensor.ready;
      return tensor.devicePointer;
    }
    return this.upload(float32 ? tensor.toFloat32() : tensor.data);
  }

  async optional(name: string, tensor: Tensor | undefined, float32: boolean): Promise<bigint | null> {
    return tensor === undefined ? null : this.buffer(name, tensor, float32);
  }

  /** Waits for everything queued; throws the first failure (as an SsdError where it has a code). */
  async settle(): Promise<void> {
    const settled = await Promise.allSettled(this.pending);
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw fromNativeError(failed.reason);
  }

  /** Frees the temporaries, after waiting for queued work when the call did not settle cleanly. */
  async release(settledCleanly: boolean): Promise<void> {
    if (this.pending.length > 0 && !settledCleanly) await Promise.allSettled(this.pending); // never free memory a queued copy still uses
    for (const ptr of this.temporaries) this.addon.cudaRelease(this.device, ptr);
  }
}
