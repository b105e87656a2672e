/**
 * The decode step: the recurrence of the scan advanced by one token per sequence, in place on a
 * state cache, as a server does between forward (prefill) calls:
 *
 *   const { y } = await ssdStep(state, { x, dt, A, B, C, D, z, dtBias, stateIndices }, { dtSoftplus: true });
 *
 * Semantics: docs/semantics.md ("The step"). Inputs are validated in full (lib/validate-step.ts),
 * including the values of stateIndices, before anything is written; the native addon re-checks.
 */
import { SsdError, fromNativeError as fromNative } from './errors';
import { DeviceCall } from './device-call';
import { native, type NativeStepArgs } from './native';
import { deviceBuffers, hostBuffers, stepArgs, stepInputSlots, stepQuery } from './native-args';
import { place, type Placement } from './placement';
import { Tensor, arrayOver, dataProblem, elementSize, nativeView, type FloatType, type TensorData, type TensorLike } from './tensor';
import { validateStep, type SsdStepInputs, type SsdStepOptions, type SsdStepPlan } from './validate-step';

export { validateStep, type SsdStepInputs, type SsdStepOptions, type SsdStepPlan } from './validate-step';

export interface SsdStepResult {
  /** (batch, nheads, headdim), in x's type */
  y: Tensor;
}

/**
 * Where a step runs (lib/placement.ts); its tensors are the state, the inputs and options.out.y.
 * With `device: 'auto'` and host tensors it stays on the CPU.
 */
function placeStep(state: Tensor, inputs: SsdStepInputs, plan: SsdStepPlan, sync: boolean): Placement {
  const tensors: [string, Tensor][] = [['state', state], ...Object.entries(inputs).map(([k, v]) => [`inputs.${k}`, v as Tensor] as [string, Tensor])];
  if (plan.out.y) tensors.push(['options.out.y', plan.out.y]);
  return place({ op: 'step', device: plan.device, tensors, sync, query: () => stepQuery(state, inputs, plan) });
}

/**
 * The step on a GPU. Host tensors are uploaded to temporaries; a host state is copied back into its
 * own buffer afterwards (so the step stays in place from the caller's view); y follows the state:
 * a device tensor when the state is on the device, else a host tensor.
 */
async function runCudaStep(state: Tensor, t: SsdStepInputs, plan: SsdStepPlan, device: number): Promise<SsdStepResult> {
  const addon = native();
  const call = new DeviceCall(device);
  const dims = [plan.batch, plan.nheads, plan.headdim];
  const yBytes = plan.batch * plan.nheads * plan.headdim * (t.x.type === 'float32' ? 4 : 2);
  const stateOnDevice = state.location === 'cuda';
  let y: Tensor | undefined;
  let ok = false;
  try {
    const inputs = await deviceBuffers(call, stepInputSlots(state, t));
    let yBuffer: bigint;
    const out = plan.out.y;
    if (stateOnDevice) {
      if (out !== undefined && (out.location !== 'cuda' || out.device !== device)) {
        throw new SsdError('ERR_SSD_DEVICE', `Expected options.out.y on 'cuda:${device}' for a step of a state on that device`);
      }
      y = out ?? Tensor.fromOwnedDeviceMemory(addon.cudaAlloc(device, yBytes), t.x.type as FloatType, dims, device, yBytes);
      yBuffer = y.devicePointer;
    } else {
      if (out !== undefined && out.location !== 'cpu') {
        throw new SsdError('ERR_SSD_DEVICE', 'Expected options.out.y on the host for a step of a host state');
      }
      y = out; // undefined: a new array once the copy is done
      yBuffer = call.alloc(yBytes);
    }
    call.enqueue(addon.cudaStep(stepArgs(state, t, plan, inputs, yBuffer), device));
    // A host state comes back through a staging copy (a new array the addon makes), written into
    // the state only when every piece of the call succeeded and the state still has its memory:
    // after a failure (an upload that did not happen, a kernel that did not run) the state keeps its
    // values instead of taking those of uninitialised device memory, and a state handed away
    // meanwhile is not written (ERR_SSD_DETACHED). A new y is an array the addon makes.
    let yNew: Promise<TensorData> | undefined;
    let staged: Promise<TensorData> | undefined;
    if (!stateOnDevice) {
      if (out !== undefined) call.download(yBuffer, out, 'options.out.y');
      else yNew = call.downloadNew(yBuffer, t.x.type, yBytes / elementSize(t.x.type));
      staged = call.downloadNew(inputs.state as bigint, state.type, state.size);
    }
    await call.settle();
    if (staged !== undefined) {
      const data = state.data as Float32Array | Uint16Array;
      if (dataProblem(data) !== undefined) {
        throw new SsdError('ERR_SSD_DETACHED', "state's ArrayBuffer was detached (transferred) while the call ran: it was not written");
      }
      data.set((await staged) as Float32Array | Uint16Array);
    }
    if (yNew !== undefined) y = new Tensor(t.x.type, await yNew, dims);
    ok = true;
    return { y: y as Tensor };
  } finally {
    await call.release(ok);
    if (!ok && stateOnDevice && y !== undefined && y !== plan.out.y) y.dispose();
  }
}

/** The step's arguments for the addon: y is options.out.y's data, or `true` for a new array (NativeOutput). */
function prepare(state: Tensor, t: SsdStepInputs, plan: SsdStepPlan): NativeStepArgs {
  return stepArgs(state, t, plan, hostBuffers(stepInputSlots(state, t)), plan.out.y ? nativeView(plan.out.y.data) : true);
}

/** y once the step is done: options.out.y, or a tensor over the array the addon made. */
function hostY(t: SsdStepInputs, plan: SsdStepPlan, args: NativeStepArgs): Tensor {
  return plan.out.y ?? new Tensor(t.x.type, arrayOver(t.x.type, args.y as unknown as ArrayBuffer), [plan.batch, plan.nheads, plan.headdim]);
}

/**
 * One decode step, off the event loop: advances `state` (float32 or bfloat16, (batch, nheads,
 * headdim, dstate), or the cache rows that inputs.stateIndices picks) by one token in place and
 * resolves with y. A state not on a SharedArrayBuffer is stepped in a copy of the rows it steps,
 * written back once it is done (README, Memory of asynchronous calls: ERR_SSD_DETACHED when it was
 * handed away meanwhile); do not run two steps on the same rows at once.
 */
export async function ssdStep(state: TensorLike, inputs: SsdStepInputs<TensorLike>, options?: SsdStepOptions<TensorLike>): Promise<SsdStepResult> {
  const v = validateStep(state, inputs, options);
  const placement = placeStep(v.state, v.inputs, v.plan, false);
  if (placement.kind === 'cuda') {
    try {
      return await runCudaStep(v.state, v.inputs, v.plan, placement.device);
    } catch (err) {
      throw fromNative(err);
    }
  }
  const args = prepare(v.state, v.inputs, v.plan);
  try {
    await native().step(args);
  } catch (err) {
    throw fromNative(err);
  }
  return { y: hostY(v.inputs, v.plan, args) };
}

/** The decode step on the calling thread, on the CPU. Throws where ssdStep() would reject. */
export function ssdStepSync(state: TensorLike, inputs: SsdStepInputs<TensorLike>, options?: SsdStepOptions<TensorLike>): SsdStepResult {
  const v = validateStep(state, inputs, options);
  placeStep(v.state, v.inputs, v.plan, true);
  const args = prepare(v.state, v.inputs, v.plan);
  try {
    native().stepSync(args);
  } catch (err) {
    throw fromNative(err);
  }
  return { y: hostY(v.inputs, v.plan, args) };
}
