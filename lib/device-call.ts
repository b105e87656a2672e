/**
 * One CUDA call's bookkeeping, shared by the forward, the backward and the step: host tensors are
 * uploaded into temporary device memory, device tensors are used in place, outputs are downloaded
 * when the call's results live on the host. Every copy and kernel is queued in order on the device's
 * stream; `settle()` waits for all of them, and `release()` frees the temporaries only once nothing
 * queued can still touch them.
 */
import { copyHostDevice } from './device-copy';
import { SsdError, fromNativeError } from './errors';
import { native } from './native';
import { arrayOver, dataProblem, elementSize, nativeView, type Tensor, type TensorData, type TensorType } from './tensor';

export class DeviceCall {
  private readonly addon = native();
  private readonly temporaries: bigint[] = [];
  private readonly pending: Promise<void>[] = [];
  private readonly waits: Promise<void>[] = [];

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

  /**
   * Queues a copy of device memory at `ptr` into the data of host tensor `tensor` (in pieces for any
   * size; `name` in messages: the copy rejects with ERR_SSD_DETACHED if its buffer is detached before
   * the copy is done).
   */
  download(ptr: bigint, tensor: Tensor, name: string): void {
    const data = tensor.data;
    if (dataProblem(data) !== undefined) {
      // transferred since the call began: nothing is written (as when it happens during the copy)
      this.pending.push(Promise.reject(new SsdError('ERR_SSD_DETACHED', `${name}'s ArrayBuffer was detached (transferred) while the call ran: it was not written`)));
      return;
    }
    this.pending.push(copyHostDevice(this.addon, this.device, ptr, nativeView(data), false, undefined, name));
  }

  /**
   * Queues a copy of `size` elements of `type` at `ptr` into a new host array, which the addon makes
   * (no staging: nothing else can reach it before the copy is done); resolves with it.
   */
  downloadNew(ptr: bigint, type: TensorType, size: number): Promise<TensorData> {
    const buffer = this.addon.cudaDownload(this.device, ptr, size * elementSize(type));
    this.pending.push(buffer.then(() => undefined));
    const array = buffer.then((b) => arrayOver(type, b));
    array.catch(() => undefined); // a failure is reported by settle(), after which nobody awaits this
    return array;
  }

  /** Queues the call's own work (a kernel launch Promise from the addon). */
  enqueue(work: Promise<void>): void {
    this.pending.push(work);
  }

  /**
   * The device address of `tensor`: in place when it is a device tensor (whose pending upload
   * ready() waits for), else a copy, queued now. The copy's source is read (staged) before this
   * returns, so the call's host inputs are all read before its first await: what the caller does
   * with them afterwards (transfers their buffers, say) cannot change the call.
   */
  buffer(name: string, tensor: Tensor, float32: boolean): bigint {
    if (tensor.location === 'cuda') {
      if (float32 && tensor.type !== 'float32') {
        throw new TypeError(`Expected a float32 tensor for ${name} on a CUDA device but received a '${tensor.type}' tensor; convert it on the host`);
      }
      this.waits.push(tensor.ready);
      return tensor.devicePointer;
    }
    return this.upload(float32 ? tensor.toFloat32() : nativeView(tensor.data));
  }

  /** Waits for the uploads into the device tensors that buffer() handed out (toDevice() queued them). */
  async ready(): Promise<void> {
    await Promise.all(this.waits);
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
