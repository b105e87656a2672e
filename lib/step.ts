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
import { Tensor, type FloatType, type TensorLike } from './tensor';
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
      y = out ?? (t.x.type === 'float32' ? new Tensor('float32', new Float32Array(yBytes / 4), dims) : new Tensor(t.x.type as FloatType, new Uint16Array(yBytes / 2), dims));
      yBuffer = call.alloc(yBytes);
    }
    call.enqueue(addon.cudaStep(stepArgs(state, t, plan, inputs, yBuffer), device));
    // A host state comes back through a staging copy, written into the state only when every piece
    // of the call succeeded: after a failure (an upload that did not happen, a kernel that did not
    // run), the state keeps its values instead of taking those of uninitialised device memory.
    let staged: Float32Array | Uint16Array | undefined;
    if (!stateOnDevice) {
      call.download(yBuffer, y.data);
      staged = state.type === 'float32' ? new Float32Array(state.size) : new Uint16Array(state.size);
      call.download(inputs.state as bigint, staged);
    }
    await call.settle();
    if (staged) (state.data as Float32Array | Uint16Array).set(staged);
    ok = true;
    return { y };
  } finally {
    await call.release(ok);
    if (!ok && stateOnDevice && y !== undefined && y !== plan.out.y) y.dispose();
  }
}

function prepare(state: Tensor, t: SsdStepInputs, plan: SsdStepPlan): { args: NativeStepArgs; y: Tensor } {
  const dims = [plan.batch, plan.nheads, plan.headdim];
  const size = plan.batch * plan.nheads * plan.headdim;
  let y = plan.out.y;
  if (y === undefined) {
    try {
      y = t.x.type === 'float32' ? new Tensor('float32', new Float32Array(size), dims) : new Tensor(t.x.type as FloatType, new Uint16Array(size), dims);
    } catch (err) {
      throw new SsdError('ERR_SSD_OUT_OF_MEMORY', `Could not allocate y: ${(err as Error).message}`);
    }
  }
  const args = stepArgs(state, t, plan, hostBuffers(stepInputSlots(state, t)), y.data);
  return { args, y };
}

/**
 * One decode step, off the event loop: advances `state` (float32 or bfloat16, (batch, nheads,
 * headdim, dstate), or the cache rows that inputs.stateIndices picks) by one token in place and
 * resolves with y. The state and inputs stay referenced until the Promise settles; do not run two
 * steps on the same state at once.
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
  const { args, y } = prepare(v.state, v.inputs, v.plan);
  try {
    await native().step(args);
  } catch (err) {
    throw fromNative(err);
  }
  return { y };
}

/** The decode step on the calling thread, on the CPU. Throws where ssdStep() would reject. */
export function ssdStepSync(state: TensorLike, inputs: SsdStepInputs<TensorLike>, options?: SsdStepOptions<TensorLike>): SsdStepResult {
  const v = validateStep(state, inputs, options);
  placeStep(v.state, v.inputs, v.plan, true);
  const { args, y } = prepare(v.state, v.inputs, v.plan);
  try {
    native().stepSync(args);
  } catch (err) {
    throw fromNative(err);
  }
  return { y };
}
