/**
 * The decode step: the recurrence of the scan advanced by one token per sequence, in place on a
 * state cache, as a server does between forward (prefill) calls:
 *
 *   const { y } = await ssdStep(state, { x, dt, A, B, C, D, z, dtBias, stateIndices }, { dtSoftplus: true });
 *
 * Semantics: docs/semantics.md ("The step"). Inputs are validated here in full, including the
 * values of stateIndices, before anything is written; the native addon re-checks.
 */
import { SsdError, fromNativeError as fromNative } from './errors';
import { DeviceCall } from './device-call';
import { native, type NativeStepArgs } from './native';
import { deviceBuffers, hostBuffers, stepArgs, stepInputSlots } from './native-args';
import { Tensor, type FloatType } from './tensor';
import { validateStep, type SsdStepInputs, type SsdStepOptions, type SsdStepPlan } from './validate-step';

export { validateStep, type SsdStepInputs, type SsdStepOptions, type SsdStepPlan } from './validate-step';

export interface SsdStepResult {
  /** (batch, nheads, headdim), in x's type */
  y: Tensor;
}

type StepPlacement = { kind: 'cpu' } | { kind: 'cuda'; device: number };

/**
 * Where a step runs: with a device tensor anywhere (state, inputs, options.out.y) on that tensor's
 * GPU; with `device: 'cuda'` on the GPU (host tensors are uploaded, the state and y copied back);
 * `device: 'auto'` with host tensors on the CPU, because the step streams the whole state once, so
 * shipping a host state to the GPU and back costs more than stepping it in place.
 */
function resolveStepDevice(state: Tensor, inputs: SsdStepInputs, plan: SsdStepPlan, sync: boolean): StepPlacement {
  const named: [string, Tensor][] = [['state', state], ...Object.entries(inputs).map(([k, v]) => [`inputs.${k}`, v as Tensor] as [string, Tensor])];
  if (plan.out.y) named.push(['options.out.y', plan.out.y]);
  const onDevice = named.filter(([, t]) => t.location === 'cuda');
  const devices = [...new Set(onDevice.map(([, t]) => t.device as number))];
  if (devices.length > 1) {
    const where = onDevice.map(([name, t]) => `${name} on 'cuda:${t.device}'`).join(', ');
    throw new SsdError('ERR_SSD_DEVICE', `Expected every device tensor on one device but received ${where}`);
  }
  const requested = plan.device.kind;
  if (requested === 'cpu' || (requested === 'auto' && onDevice.length === 0)) {
    if (onDevice.length > 0) {
      throw new SsdError('ERR_SSD_DEVICE', `options.device 'cpu' cannot read ${onDevice[0][0]}, which is on 'cuda:${devices[0]}'; use \`await tensor.toHost()\` or device 'cuda'`);
    }
    return { kind: 'cpu' };
  }
  const device = requested === 'cuda' ? plan.device.index : devices[0];
  const label = requested === 'cuda' ? `cuda:${device}` : `auto (${onDevice[0][0]} on 'cuda:${device}')`;
  const cuda = native().backends().cuda;
  if (!cuda.available) throw new SsdError('ERR_SSD_DEVICE', `options.device '${label}' is not available: ${cuda.reason}`);
  if (device >= cuda.devices) throw new SsdError('ERR_SSD_DEVICE', `options.device '${label}' is not available: this machine has ${cuda.devices} CUDA device(s)`);
  if (devices.length === 1 && devices[0] !== device) {
    throw new SsdError('ERR_SSD_DEVICE', `options.device 'cuda:${device}' cannot read ${onDevice[0][0]}, which is on 'cuda:${devices[0]}'`);
  }
  if (sync) throw new SsdError('ERR_SSD_DEVICE', `options.device '${label}' is not available to ssdStepSync(): CUDA calls are asynchronous, use ssdStep()`);
  return { kind: 'cuda', device };
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
    if (!stateOnDevice) {
      call.download(yBuffer, y.data);
      call.download(inputs.state as bigint, state.data);
    }
    await call.settle();
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
export async function ssdStep(state: Tensor, inputs: SsdStepInputs, options?: SsdStepOptions): Promise<SsdStepResult> {
  const v = validateStep(state, inputs, options);
  const placement = resolveStepDevice(v.state, v.inputs, v.plan, false);
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
export function ssdStepSync(state: Tensor, inputs: SsdStepInputs, options?: SsdStepOptions): SsdStepResult {
  const v = validateStep(state, inputs, options);
  resolveStepDevice(v.state, v.inputs, v.plan, true);
  const { args, y } = prepare(v.state, v.inputs, v.plan);
  try {
    native().stepSync(args);
  } catch (err) {
    throw fromNative(err);
  }
  return { y };
}
