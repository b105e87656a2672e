/**
 * The backward of the SSD: gradients of a loss with respect to every input of ssd(), given the
 * gradients with respect to its outputs (design §3), on the CPU or a CUDA device.
 *
 *   const { y, backward } = await ssdWithGrad(inputs, options);
 *   const { dx, ddt, dA, dB, dC } = await backward({ dy });
 */
import { SsdError, fromNativeError as fromNative, typeError } from './errors';
import { ssd, type SsdResult } from './forward';
import { DeviceCall } from './device-call';
import { native, type NativeBackwardArgs } from './native';
import { backwardArgs, backwardInputSlots, deviceBuffers, hostBuffers, scanQuery, type GradBuffers } from './native-args';
import { place, type Placement } from './placement';
import { Tensor, arrayOver, elementSize, nativeView, type TensorData, type TensorLike } from './tensor';
import {
  validateBackward,
  type BackwardCall,
  type SsdBackwardOptions,
  type SsdGrads,
  type SsdOutputGrads,
} from './validate-backward';
import { checkKnownKeys, isPlainObject, type SsdInputs, type SsdOptions } from './validate';

export type { SsdBackwardOptions, SsdGrads, SsdOutputGrads } from './validate-backward';

/** Where a backward runs (lib/placement.ts); its tensors are the inputs, grads, options.out and options.yUngated. */
function placeBackward(call: BackwardCall, sync: boolean): Placement {
  const tensors: [string, Tensor][] = [
    ...Object.entries(call.inputs).map(([k, v]): [string, Tensor] => [`inputs.${k}`, v as Tensor]),
    ...Object.entries(call.grads).map(([k, v]): [string, Tensor] => [`grads.${k}`, v as Tensor]),
    ...Object.entries(call.out).map(([k, v]): [string, Tensor] => [`options.out.${k}`, v as Tensor]),
    ...(call.yUngated ? [['options.yUngated', call.yUngated] as [string, Tensor]] : []),
  ];
  return place({ op: 'backward', device: call.plan.device, tensors, sync, query: () => scanQuery(call.inputs, call.plan) });
}

/** The gradient outputs for the addon: each options.out tensor's data, `true` for a new array (NativeOutput). */
function prepare(call: BackwardCall): NativeBackwardArgs {
  const grads: GradBuffers<ArrayBufferView | true> = {};
  for (const spec of call.specs) {
    const given = call.out[spec.name];
    grads[spec.name] = given === undefined ? true : nativeView(given.data);
  }
  return backwardArgs(call, hostBuffers(backwardInputSlots(call, false)), grads);
}

/** The gradients once the call is done: the options.out tensors, and tensors over the arrays the addon made. */
function hostGrads(call: BackwardCall, args: NativeBackwardArgs): SsdGrads {
  const result = {} as SsdGrads;
  for (const spec of call.specs) result[spec.name] = call.out[spec.name] ?? new Tensor(spec.type, arrayOver(spec.type, args[spec.name] as unknown as ArrayBuffer), spec.dims);
  return result;
}

/**
 * The backward on a GPU. Host tensors are uploaded to temporaries; the gradients follow x: device
 * tensors when x is on the device, else host tensors filled by copies after the kernels.
 */
async function runCudaBackward(call: BackwardCall, device: number): Promise<SsdGrads> {
  const addon = native();
  const dc = new DeviceCall(device);
  const onDevice = call.inputs.x.location === 'cuda';
  const result = {} as SsdGrads;
  const made: Tensor[] = [];
  const pointers: GradBuffers<bigint> = {};
  let ok = false;
  try {
    for (const spec of call.specs) {
      const given = call.out[spec.name];
      const bytes = spec.dims.reduce((a, b) => a * b, 1) * elementSize(spec.type);
      if (onDevice) {
        if (given !== undefined && (given.location !== 'cuda' || given.device !== device)) {
          throw new SsdError('ERR_SSD_DEVICE', `Expected options.out.${spec.name} on 'cuda:${device}' for a call on that device`);
        }
        const tensor = given ?? Tensor.fromOwnedDeviceMemory(addon.cudaAlloc(device, Math.max(bytes, 1)), spec.type, spec.dims, device, bytes);
        if (given === undefined) made.push(tensor);
        result[spec.name] = tensor;
        pointers[spec.name] = tensor.devicePointer;
      } else {
        if (given !== undefined && given.location !== 'cpu') {
          throw new SsdError('ERR_SSD_DEVICE', `Expected options.out.${spec.name} on the host for a call with host inputs`);
        }
        pointers[spec.name] = dc.alloc(bytes);
      }
    }
    const args = backwardArgs(call, await deviceBuffers(dc, backwardInputSlots(call, true)), pointers);
    dc.enqueue(addon.cudaBackward(args, device));
    // host gradients: given ones are written when the copy is done; new ones are arrays the addon makes
    const downloads = new Map<string, Promise<TensorData>>();
    if (!onDevice) {
      for (const spec of call.specs) {
        const given = call.out[spec.name];
        const size = spec.dims.reduce((a, b) => a * b, 1);
        if (given !== undefined) dc.download(pointers[spec.name]!, given, `options.out.${spec.name}`);
        else downloads.set(spec.name, dc.downloadNew(pointers[spec.name]!, spec.type, size));
      }
    }
    await dc.settle();
    if (!onDevice) {
      for (const spec of call.specs) result[spec.name] = call.out[spec.name] ?? new Tensor(spec.type, await downloads.get(spec.name)!, spec.dims);
    }
    ok = true;
    return result;
  } finally {
    await dc.release(ok);
    if (!ok) for (const tensor of made) tensor.dispose();
  }
}

/**
 * The backward of ssd(): the gradients of L = Σ dy·y + Σ dFinalStates·finalStates with respect to
 * every input, off the event loop (on the addon's worker threads). `options` are those of the forward
 * call (the gradient depends on dtSoftplus and dtLimit); `options.out` may hold gradient tensors to
 * write into. Runs where lib/placement.ts decides, as ssd() does: on the CPU, or on a CUDA device
 * (host tensors are uploaded, gradients follow x). Host arrays not on a SharedArrayBuffer are
 * copied before it returns, options.out written back once it is done (README, Memory of
 * asynchronous calls: ERR_SSD_DETACHED when one was handed away meanwhile).
 */
export async function ssdBackward(inputs: SsdInputs<TensorLike>, grads: SsdOutputGrads<TensorLike>, options?: SsdBackwardOptions<TensorLike>): Promise<SsdGrads> {
  const call = validateBackward(inputs, grads, options);
  const placement = placeBackward(call, false);
  if (placement.kind === 'cuda') {
    try {
      return await runCudaBackward(call, placement.device);
    } catch (err) {
      throw fromNative(err);
    }
  }
  const args = prepare(call);
  try {
    await native().backward(args);
  } catch (err) {
    throw fromNative(err);
  }
  return hostGrads(call, args);
}

/** ssdBackward() on the calling thread. Throws where ssdBackward() would reject. */
export function ssdBackwardSync(inputs: SsdInputs<TensorLike>, grads: SsdOutputGrads<TensorLike>, options?: SsdBackwardOptions<TensorLike>): SsdGrads {
  const call = validateBackward(inputs, grads, options);
  placeBackward(call, true);
  const args = prepare(call);
  try {
    native().backwardSync(args);
  } catch (err) {
    throw fromNative(err);
  }
  return hostGrads(call, args);
}

/** The forward's results, and its backward. */
export interface SsdWithGrad extends SsdResult {
  /**
   * The gradients with respect to the inputs of the forward call, given those with respect to y (and
   * finalStates). Recomputes what it needs from the inputs, which must hold the same values as during
   * the forward. May be called more than once.
   */
  backward(grads: SsdOutputGrads<TensorLike>, options?: Pick<SsdBackwardOptions<TensorLike>, 'out' | 'threads'>): Promise<SsdGrads>;
}

/**
 * Runs ssd(inputs, options) and returns its results with a `backward` bound to the same inputs and
 * options: the forward keeps nothing beyond its outputs (the backward recomputes what it needs), and
 * there is no state besides the returned object. With options.returnUngated (and z) the result also
 * holds yUngated, and backward() hands it to the backward: the sm_80 CUDA kernels then skip recomputing
 * the output before the gate (one more tensor of y's size kept between the two), while the sm_90a
 * backward (H100, H200) recomputes it anyway, which measured faster there (bench/NOTES.md, session 19).
 */
export async function ssdWithGrad(inputs: SsdInputs<TensorLike>, options?: SsdOptions<TensorLike>): Promise<SsdWithGrad> {
  const result = await ssd(inputs, options);
  const saved: SsdInputs<TensorLike> = { ...inputs };
  const backwardOptions: Omit<SsdOptions<TensorLike>, 'out'> & Pick<SsdBackwardOptions<TensorLike>, 'yUngated'> = { ...options };
  delete (backwardOptions as SsdOptions<TensorLike>).out; // options.out held the forward's outputs
  if (result.yUngated) backwardOptions.yUngated = result.yUngated; // the sm_80 CUDA kernels read it for dz
  return {
    ...result,
    backward: async (grads, extra) => {
      // only out and threads: the options that define the function stay those of the forward
      if (extra !== undefined) {
        if (!isPlainObject(extra)) throw typeError('the options of backward()', 'an object { out?, threads? } or undefined', extra);
        checkKnownKeys('option of backward()', extra, ['out', 'threads']);
      }
      return ssdBackward(saved, grads, { ...backwardOptions, ...extra });
    },
  };
}
