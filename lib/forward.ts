/**
 * The SSD forward: ssd() and ssdSync(), on the CPU or a CUDA device (lib/placement.ts decides
 * which). Inputs are validated in full (lib/validate.ts); the native addon re-checks sizes.
 */
import { SsdError, fromNativeError as fromNative } from './errors';
import { DeviceCall } from './device-call';
import { native, type NativeForwardArgs } from './native';
import { Tensor, elementSize, nativeView, type FloatType, type TensorLike, type TensorType } from './tensor';
import { deviceBuffers, forwardArgs, forwardInputSlots, hostBuffers, scanQuery, type ForwardOutputs } from './native-args';
import { place, type Placement } from './placement';
import { validate, type SsdInputs, type SsdOptions, type SsdPlan } from './validate';

export interface SsdResult {
  /** (batch, seqlen, nheads, headdim), in x's type */
  y: Tensor;
  /** (batch, nheads, headdim, dstate) float32, when options.returnFinalStates */
  finalStates?: Tensor;
  /** (numSeqs, nheads, headdim, dstate) float32, each packed sequence's final state, when options.returnVarlenStates */
  varlenStates?: Tensor;
  /** y before the gate (y = yUngated · silu(z)), of y's type and dims, when options.returnUngated */
  yUngated?: Tensor;
}

function allocate<T>(name: string, make: () => T): T {
  try {
    return make();
  } catch (err) {
    throw new SsdError('ERR_SSD_OUT_OF_MEMORY', `Could not allocate ${name}: ${(err as Error).message}`);
  }
}

/** Where a forward runs (lib/placement.ts); its tensors are the inputs. */
function placeForward(t: SsdInputs, plan: SsdPlan, sync: boolean): Placement {
  const tensors = Object.entries(t)
    .filter((e): e is [string, Tensor] => e[1] instanceof Tensor)
    .map(([name, tensor]): [string, Tensor] => [`inputs.${name}`, tensor]);
  return place({ op: 'forward', device: plan.device, tensors, sync, query: () => scanQuery(t, plan) });
}

function outputDims(plan: SsdPlan): { y: number[]; states: number[]; varlen: number[] } {
  return {
    y: [plan.batch, plan.seqlen, plan.nheads, plan.headdim],
    states: [plan.batch, plan.nheads, plan.headdim, plan.dstate],
    varlen: [plan.numSeqs, plan.nheads, plan.headdim, plan.dstate],
  };
}

function hostOutputs(plan: SsdPlan): SsdResult {
  const dims = outputDims(plan);
  for (const t of [plan.out.y, plan.out.finalStates, plan.out.varlenStates, plan.out.yUngated]) {
    if (t !== undefined && t.location !== 'cpu') {
      throw new SsdError('ERR_SSD_DEVICE', "Expected 'cpu' tensors in options.out for a call that returns host tensors but received a 'cuda' tensor");
    }
  }
  const ySize = dims.y.reduce((a, b) => a * b, 1);
  const yType = plan.xType as FloatType;
  const newY = (name: string): Tensor =>
    allocate(name, () =>
      yType === 'float32' ? new Tensor('float32', new Float32Array(ySize), dims.y) : new Tensor(yType, new Uint16Array(ySize), dims.y),
    );
  const y = plan.out.y ?? newY('y');
  const result: SsdResult = { y };
  if (plan.returnUngated) result.yUngated = plan.out.yUngated ?? newY('yUngated');
  if (plan.returnFinalStates) {
    result.finalStates =
      plan.out.finalStates ?? allocate('finalStates', () => new Tensor('float32', new Float32Array(dims.states.reduce((a, b) => a * b, 1)), dims.states));
  }
  if (plan.returnVarlenStates) {
    result.varlenStates =
      plan.out.varlenStates ?? allocate('varlenStates', () => new Tensor('float32', new Float32Array(dims.varlen.reduce((a, b) => a * b, 1)), dims.varlen));
  }
  return result;
}

function prepareCpu(t: SsdInputs, plan: SsdPlan): { args: NativeForwardArgs; result: SsdResult } {
  const result = hostOutputs(plan);
  const args = forwardArgs(t, plan, hostBuffers(forwardInputSlots(t)), {
    y: nativeView(result.y.data),
    finalStates: result.finalStates?.data ?? null,
    varlenStates: result.varlenStates?.data ?? null,
    yUngated: result.yUngated ? nativeView(result.yUngated.data) : null,
  });
  return { args, result };
}

/**
 * The CUDA path: device tensors are used in place, host tensors are uploaded into temporary device
 * memory; outputs stay on the device when x is a device tensor, else they are downloaded. Every
 * copy and the forward are queued in order on the device's stream; the Promise settles when all
 * of them are done, and temporaries are released then.
 */
async function runCuda(t: SsdInputs, plan: SsdPlan, device: number): Promise<SsdResult> {
  const call = new DeviceCall(device);
  const onDevice = t.x.location === 'cuda';
  const dims = outputDims(plan);
  const ySize = dims.y.reduce((a, b) => a * b, 1);
  const statesSize = dims.states.reduce((a, b) => a * b, 1);
  const varlenSize = dims.varlen.reduce((a, b) => a * b, 1);
  const yBytes = ySize * elementSize(plan.xType);
  let result: SsdResult | undefined;
  let ok = false;
  try {
    const inputs = await deviceBuffers(call, forwardInputSlots(t));
    let out: ForwardOutputs<bigint>;
    if (onDevice) {
      for (const t of [plan.out.y, plan.out.finalStates, plan.out.varlenStates, plan.out.yUngated]) {
        if (t !== undefined && (t.location !== 'cuda' || t.device !== device)) {
          throw new SsdError('ERR_SSD_DEVICE', `Expected tensors on 'cuda:${device}' in options.out for a call on that device`);
        }
      }
      const yTensor = plan.out.y ?? deviceTensor(device, plan.xType, dims.y, yBytes);
      result = { y: yTensor };
      if (plan.returnFinalStates) result.finalStates = plan.out.finalStates ?? deviceTensor(device, 'float32', dims.states, statesSize * 4);
      if (plan.returnVarlenStates) result.varlenStates = plan.out.varlenStates ?? deviceTensor(device, 'float32', dims.varlen, varlenSize * 4);
      if (plan.returnUngated) result.yUngated = plan.out.yUngated ?? deviceTensor(device, plan.xType, dims.y, yBytes);
      out = {
        y: result.y.devicePointer,
        finalStates: result.finalStates?.devicePointer ?? null,
        varlenStates: result.varlenStates?.devicePointer ?? null,
        yUngated: result.yUngated?.devicePointer ?? null,
      };
    } else {
      result = hostOutputs(plan);
      out = {
        y: call.alloc(yBytes),
        finalStates: plan.returnFinalStates ? call.alloc(statesSize * 4) : null,
        varlenStates: plan.returnVarlenStates ? call.alloc(varlenSize * 4) : null,
        yUngated: plan.returnUngated ? call.alloc(yBytes) : null,
      };
    }
    call.enqueue(native().cudaForward(forwardArgs(t, plan, inputs, out), device));
    if (!onDevice) {
      const name = (field: keyof SsdPlan['out']): string => (plan.out[field] ? `options.out.${field}` : field);
      call.download(out.y, result.y, name('y'));
      if (result.finalStates) call.download(out.finalStates as bigint, result.finalStates, name('finalStates'));
      if (result.varlenStates) call.download(out.varlenStates as bigint, result.varlenStates, name('varlenStates'));
      if (result.yUngated) call.download(out.yUngated as bigint, result.yUngated, name('yUngated'));
    }
    await call.settle();
    ok = true;
    return result;
  } finally {
    await call.release(ok);
    if (!ok && onDevice && result) {
      if (result.y !== plan.out.y) result.y.dispose();
      if (result.finalStates !== plan.out.finalStates) result.finalStates?.dispose();
      if (result.varlenStates !== plan.out.varlenStates) result.varlenStates?.dispose();
      if (result.yUngated !== plan.out.yUngated) result.yUngated?.dispose();
    }
  }
}

function deviceTensor(device: number, type: TensorType, dims: number[], bytes: number): Tensor {
  return Tensor.fromOwnedDeviceMemory(native().cudaAlloc(device, bytes), type, dims, device, bytes);
}

/**
 * The SSD forward, off the event loop: resolves with y (and finalStates when asked). On the CPU it
 * runs on the addon's worker threads; on CUDA it settles once the GPU work is complete.
 * Rejects with TypeError, RangeError or SsdError on bad input; the inputs' buffers stay referenced
 * until the Promise settles.
 */
export async function ssd(inputs: SsdInputs<TensorLike>, options?: SsdOptions<TensorLike>): Promise<SsdResult> {
  const { inputs: t, plan } = validate(inputs, options);
  const placement = placeForward(t, plan, false);
  if (placement.kind === 'cuda') {
    try {
      return await runCuda(t, plan, placement.device);
    } catch (err) {
      throw fromNative(err);
    }
  }
  const { args, result } = prepareCpu(t, plan);
  try {
    await native().forward(args);
  } catch (err) {
    throw fromNative(err);
  }
  return result;
}

/** The SSD forward on the calling thread, on the CPU. Throws where ssd() would reject. */
export function ssdSync(inputs: SsdInputs<TensorLike>, options?: SsdOptions<TensorLike>): SsdResult {
  const { inputs: t, plan } = validate(inputs, options);
  placeForward(t, plan, true);
  const { args, result } = prepareCpu(t, plan);
  try {
    native().forwardSync(args);
  } catch (err) {
    throw fromNative(err);
  }
  return result;
}
