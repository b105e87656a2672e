/**
 * The SSD forward: ssd() and ssdSync(), on the CPU or a CUDA device (lib/placement.ts decides
 * which). Inputs are validated in full (lib/validate.ts); the native addon re-checks sizes.
 */
import { SsdError, fromNativeError as fromNative } from './errors';
import { DeviceCall } from './device-call';
import { native, type NativeForwardArgs } from './native';
import { Tensor, arrayOver, elementSize, nativeView, type TensorData, type TensorLike, type TensorType } from './tensor';
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

type OutputField = keyof SsdPlan['out'];

/** The results a call returns: y, and the others when asked, with their types and dims. */
function outputSpecs(plan: SsdPlan): { field: OutputField; type: TensorType; dims: number[]; size: number }[] {
  const dims = outputDims(plan);
  const specs: { field: OutputField; type: TensorType; dims: number[] }[] = [{ field: 'y', type: plan.xType, dims: dims.y }];
  if (plan.returnFinalStates) specs.push({ field: 'finalStates', type: 'float32', dims: dims.states });
  if (plan.returnVarlenStates) specs.push({ field: 'varlenStates', type: 'float32', dims: dims.varlen });
  if (plan.returnUngated) specs.push({ field: 'yUngated', type: plan.xType, dims: dims.y });
  return specs.map((s) => ({ ...s, size: s.dims.reduce((a, b) => a * b, 1) }));
}

/** The name of an output in messages: options.out.<field> when the caller gave it. */
function outputName(plan: SsdPlan, field: OutputField): string {
  return plan.out[field] ? `options.out.${field}` : field;
}

function checkHostOut(plan: SsdPlan): void {
  for (const t of [plan.out.y, plan.out.finalStates, plan.out.varlenStates, plan.out.yUngated]) {
    if (t !== undefined && t.location !== 'cpu') {
      throw new SsdError('ERR_SSD_DEVICE', "Expected 'cpu' tensors in options.out for a call that returns host tensors but received a 'cuda' tensor");
    }
  }
}

/**
 * A host call's outputs for the addon: each options.out tensor's data, and `true` for each result
 * in a new array, which the addon makes (NativeOutput).
 */
function hostOutputBuffers(plan: SsdPlan): ForwardOutputs<ArrayBufferView | true> {
  checkHostOut(plan);
  const out: ForwardOutputs<ArrayBufferView | true> = { y: true, finalStates: null, varlenStates: null, yUngated: null };
  for (const { field } of outputSpecs(plan)) {
    const given = plan.out[field];
    out[field] = given === undefined ? true : nativeView(given.data);
  }
  return out;
}

/** A host call's results once it is done: the options.out tensors, and tensors over the arrays the addon made. */
function hostResult(plan: SsdPlan, args: NativeForwardArgs): SsdResult {
  const result = {} as SsdResult;
  for (const { field, type, dims } of outputSpecs(plan)) {
    result[field] = plan.out[field] ?? new Tensor(type, arrayOver(type, args[field] as unknown as ArrayBuffer), dims);
  }
  return result;
}

function prepareCpu(t: SsdInputs, plan: SsdPlan): NativeForwardArgs {
  return forwardArgs(t, plan, hostBuffers(forwardInputSlots(t)), hostOutputBuffers(plan));
}

/**
 * The CUDA path: device tensors are used in place, host tensors are uploaded into temporary device
 * memory; outputs stay on the device when x is a device tensor, else they are downloaded. Every
 * copy and the forward are queued in order on the device's stream; the Promise settles when all
 * of them are done, and temporaries are released then.
 */
async function runCuda(given: SsdInputs, givenPlan: SsdPlan, device: number): Promise<SsdResult> {
  const [t, plan] = seqIdxAsPacked(given, givenPlan);
  const call = new DeviceCall(device);
  const onDevice = t.x.location === 'cuda';
  const specs = outputSpecs(plan);
  const made: Tensor[] = []; // device outputs this call allocated, disposed if it fails
  let ok = false;
  try {
    const inputs = await deviceBuffers(call, forwardInputSlots(t));
    const out: ForwardOutputs<bigint> = { y: 0n, finalStates: null, varlenStates: null, yUngated: null };
    const result = {} as SsdResult;
    if (onDevice) {
      for (const t of [plan.out.y, plan.out.finalStates, plan.out.varlenStates, plan.out.yUngated]) {
        if (t !== undefined && (t.location !== 'cuda' || t.device !== device)) {
          throw new SsdError('ERR_SSD_DEVICE', `Expected tensors on 'cuda:${device}' in options.out for a call on that device`);
        }
      }
      for (const { field, type, dims, size } of specs) {
        let tensor = plan.out[field];
        if (tensor === undefined) {
          tensor = deviceTensor(device, type, dims, size * elementSize(type));
          made.push(tensor);
        }
        result[field] = tensor;
        out[field] = tensor.devicePointer;
      }
    } else {
      checkHostOut(plan);
      for (const { field, type, size } of specs) out[field] = call.alloc(size * elementSize(type));
    }
    call.enqueue(native().cudaForward(forwardArgs(t, plan, inputs, out), device));
    // host outputs: given ones are written when the copy is done; new ones are arrays the addon makes
    const downloads: [OutputField, Promise<TensorData>][] = [];
    if (!onDevice) {
      for (const { field, type, size } of specs) {
        const given = plan.out[field];
        if (given !== undefined) call.download(out[field] as bigint, given, outputName(plan, field));
        else downloads.push([field, call.downloadNew(out[field] as bigint, type, size)]);
      }
    }
    await call.settle();
    for (const { field, type, dims } of specs) {
      if (!onDevice) result[field] = plan.out[field] ?? new Tensor(type, await downloads.find(([f]) => f === field)![1], dims);
    }
    ok = true;
    return result;
  } finally {
    await call.release(ok);
    if (!ok) for (const tensor of made) tensor.dispose();
  }
}

/**
 * A host seqIdx of one row runs on CUDA as the equivalent cuSeqlens (its runs of equal values are the
 * packed sequences), so that the kernels chunk each sequence from its own start instead of masking
 * sequence starts inside chunks. The results are those of seqIdx: the same resets, and finalStates
 * the state after the last position. A device seqIdx (not read back) and initialStates keep seqIdx.
 */
function seqIdxAsPacked(t: SsdInputs, plan: SsdPlan): [SsdInputs, SsdPlan] {
  const seqIdx = t.seqIdx;
  if (seqIdx === undefined || seqIdx.location !== 'cpu' || plan.batch !== 1 || t.initialStates !== undefined) return [t, plan];
  const ids = seqIdx.data as Int32Array;
  let runs = 1;
  for (let i = 1; i < ids.length; i++) if (ids[i] !== ids[i - 1]) runs++;
  const cu = new Int32Array(runs + 1);
  for (let i = 1, k = 1; i < ids.length; i++) if (ids[i] !== ids[i - 1]) cu[k++] = i;
  cu[runs] = ids.length;
  const packed = { ...t, seqIdx: undefined, cuSeqlens: new Tensor('int32', cu, [runs + 1]) };
  return [packed, { ...plan, numSeqs: runs }];
}

function deviceTensor(device: number, type: TensorType, dims: number[], bytes: number): Tensor {
  return Tensor.fromOwnedDeviceMemory(native().cudaAlloc(device, bytes), type, dims, device, bytes);
}

/**
 * The SSD forward, off the event loop: resolves with y (and finalStates when asked). On the CPU it
 * runs on the addon's worker threads; on CUDA it settles once the GPU work is complete.
 * Rejects with TypeError, RangeError or SsdError on bad input. Host arrays not on a
 * SharedArrayBuffer are copied before it returns, options.out written back once it is done (README,
 * Memory of asynchronous calls: ERR_SSD_DETACHED when one was handed away meanwhile).
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
  const args = prepareCpu(t, plan);
  try {
    await native().forward(args);
  } catch (err) {
    throw fromNative(err);
  }
  return hostResult(plan, args);
}

/** The SSD forward on the calling thread, on the CPU. Throws where ssd() would reject. */
export function ssdSync(inputs: SsdInputs<TensorLike>, options?: SsdOptions<TensorLike>): SsdResult {
  const { inputs: t, plan } = validate(inputs, options);
  placeForward(t, plan, true);
  const args = prepareCpu(t, plan);
  try {
    native().forwardSync(args);
  } catch (err) {
    throw fromNative(err);
  }
  return hostResult(plan, args);
}
