/**
 * The decode step: the recurrence of the scan advanced by one token per sequence, in place on a
 * state cache, as a server does between forward (prefill) calls:
 *
 *   const { y } = await ssdStep(state, { x, dt, A, B, C, D, z, dtBias, stateIndices }, { dtSoftplus: true });
 *
 * Semantics: docs/semantics.md ("The step"). Inputs are validated here in full, including the
 * values of stateIndices, before anything is written; the native addon re-checks.
 */
import { SsdError, fromNativeError as fromNative, rangeError, typeError } from './errors';
import { DeviceCall } from './device-call';
import { native, type NativeStepArgs } from './native';
import { MIN_SIZE, MIN_SIZE_RULE, STEP_INPUT_TYPES as TYPES, STEP_STATE_TYPES } from './rules';
import { Tensor, type FloatType } from './tensor';
import {
  checkKnownKeys,
  isPlainObject,
  nativeDtype,
  projectionScalars,
  readD,
  readDtBias,
  readOptions,
  sameDims,
  shapeError,
  tensorArg,
  type SsdOptions,
} from './validate';

export interface SsdStepInputs {
  /** (batch, nheads, headdim): the new token's input */
  x: Tensor;
  /** (batch, nheads): raw step sizes */
  dt: Tensor;
  /** (nheads) */
  A: Tensor;
  /** (batch, ngroups, dstate) */
  B: Tensor;
  /** (batch, ngroups, dstate) */
  C: Tensor;
  /** (nheads) or (nheads, headdim) */
  D?: Tensor;
  /** (batch, nheads, headdim): output gate */
  z?: Tensor;
  /** (nheads) */
  dtBias?: Tensor;
  /**
   * (batch) int32: the row of the state cache each batch entry steps; a negative entry marks
   * padding (its y is zeros, no row is touched). Non-negative entries must be distinct.
   */
  stateIndices?: Tensor;
}

/**
 * dtSoftplus, dtLimit and device as for ssd(); with host tensors, device 'auto' runs the step on the
 * CPU (shipping the state to a GPU costs more than stepping it). threads: the CPU threads, 1 to 1024
 * (default: the cores available, fewer for a small state).
 */
export interface SsdStepOptions extends Pick<SsdOptions, 'dtSoftplus' | 'dtLimit' | 'device' | 'threads'> {
  /** A tensor to write y into (x's type, (batch, nheads, headdim)) instead of a new one. */
  out?: { y?: Tensor };
}

export interface SsdStepResult {
  /** (batch, nheads, headdim), in x's type */
  y: Tensor;
}

const STEP_INPUT_NAMES = ['x', 'dt', 'A', 'B', 'C', 'D', 'z', 'dtBias', 'stateIndices'] as const;
const STEP_OPTION_NAMES = ['dtSoftplus', 'dtLimit', 'device', 'threads', 'out'] as const;
const STATE_LAYOUT = '(rows, nheads, headdim, dstate)';

/** The normalised description of one step. */
export interface SsdStepPlan {
  batch: number;
  nheads: number;
  headdim: number;
  ngroups: number;
  dstate: number;
  /** rows of the state cache: state.dims[0] */
  stateRows: number;
  dtSoftplus: boolean;
  dtMin: number;
  dtMax: number;
  device: { kind: 'auto' | 'cpu' | 'cuda'; index: number };
  threads: number;
  out: { y?: Tensor };
}

/** Validates a step's state, inputs and options; throws TypeError, RangeError or SsdError. */
export function validateStep(state: unknown, inputs: unknown, options: unknown): { state: Tensor; inputs: SsdStepInputs; plan: SsdStepPlan } {
  const s = tensorArg('state', state, STEP_STATE_TYPES, 4, STATE_LAYOUT);
  if (!isPlainObject(inputs)) throw typeError('inputs', 'an object { x, dt, A, B, C, ... } of Tensors', inputs);
  checkKnownKeys('input', inputs, STEP_INPUT_NAMES);
  if (options === undefined) options = {};
  if (!isPlainObject(options)) throw typeError('options', 'an object or undefined', options);
  checkKnownKeys('option', options, STEP_OPTION_NAMES);

  const x = tensorArg('inputs.x', inputs.x, TYPES.x, 3, '(batch, nheads, headdim)');
  const [batch, nheads, headdim] = x.dims;
  const dt = tensorArg('inputs.dt', inputs.dt, TYPES.dt, 2, '(batch, nheads)');
  const A = tensorArg('inputs.A', inputs.A, TYPES.A, 1, '(nheads)');
  const B = tensorArg('inputs.B', inputs.B, TYPES.B, 3, '(batch, ngroups, dstate)');
  const C = tensorArg('inputs.C', inputs.C, TYPES.C, 3, '(batch, ngroups, dstate)');
  const [, ngroups, dstate] = B.dims;
  const stateRows = s.dims[0];
  const sizes: [string, number][] = [
    ['batch (x.dims[0])', batch],
    ['nheads (x.dims[1])', nheads],
    ['headdim (x.dims[2])', headdim],
    ['ngroups (B.dims[1])', ngroups],
    ['dstate (B.dims[2])', dstate],
    ['rows (state.dims[0])', stateRows],
  ];
  for (const [name, size] of sizes) {
    if (size < MIN_SIZE) throw rangeError(name, MIN_SIZE_RULE, String(size));
  }
  if (nheads % ngroups !== 0) {
    throw new SsdError('ERR_SSD_SHAPE', `Expected ngroups (B.dims[1]) to divide nheads (x.dims[1]) = ${nheads} but received ngroups = ${ngroups}`);
  }
  if (!sameDims(dt.dims, [batch, nheads])) throw shapeError('inputs.dt', [batch, nheads], '(batch, nheads)', dt.dims);
  if (!sameDims(A.dims, [nheads])) throw shapeError('inputs.A', [nheads], '(nheads)', A.dims);
  if (!sameDims(B.dims, [batch, ngroups, dstate])) throw shapeError('inputs.B', [batch, ngroups, dstate], '(batch, ngroups, dstate)', B.dims);
  if (!sameDims(C.dims, B.dims)) throw shapeError('inputs.C', [batch, ngroups, dstate], '(batch, ngroups, dstate), the dims of B,', C.dims);
  if (!sameDims(s.dims.slice(1), [nheads, headdim, dstate])) {
    throw shapeError('state', [stateRows, nheads, headdim, dstate], STATE_LAYOUT, s.dims);
  }
  const aValues = A.location === 'cpu' ? A.toFloat32() : new Float32Array(0);
  for (let i = 0; i < aValues.length; i++) {
    if (!Number.isFinite(aValues[i])) throw new SsdError('ERR_SSD_VALUE', `Expected finite values for inputs.A but received ${aValues[i]} at index ${i}`);
  }

  const result: SsdStepInputs = { x, dt, A, B, C };
  if (inputs.D !== undefined) result.D = readD(inputs.D, nheads, headdim);
  if (inputs.z !== undefined) {
    const z = tensorArg('inputs.z', inputs.z, TYPES.z, 3, '(batch, nheads, headdim)');
    if (!sameDims(z.dims, x.dims)) throw shapeError('inputs.z', x.dims, '(batch, nheads, headdim), the dims of x,', z.dims);
    result.z = z;
  }
  if (inputs.dtBias !== undefined) result.dtBias = readDtBias(inputs.dtBias, nheads);
  if (inputs.stateIndices !== undefined) {
    result.stateIndices = readStateIndices(inputs.stateIndices, batch, stateRows);
  } else if (stateRows !== batch) {
    throw new SsdError(
      'ERR_SSD_SHAPE',
      `Expected state.dims[0] to be batch (x.dims[0]) = ${batch} without inputs.stateIndices but received ${stateRows}; pass stateIndices to step rows of a larger cache`,
    );
  }

  const o = readOptions(options);
  const plan: SsdStepPlan = {
    batch,
    nheads,
    headdim,
    ngroups,
    dstate,
    stateRows,
    dtSoftplus: o.dtSoftplus,
    dtMin: o.dtMin,
    dtMax: o.dtMax,
    device: o.device,
    threads: o.threads,
    out: readStepOut((options as Record<string, unknown>).out, x, s, result),
  };
  return { state: s, inputs: result, plan };
}

/** inputs.stateIndices: int32 (batch), each < rows, the non-negative ones distinct (not read back from device memory). */
function readStateIndices(value: unknown, batch: number, rows: number): Tensor {
  const t = tensorArg('inputs.stateIndices', value, TYPES.stateIndices, 1, '(batch)');
  if (!sameDims(t.dims, [batch])) throw shapeError('inputs.stateIndices', [batch], '(batch)', t.dims);
  if (t.location !== 'cpu') return t;
  const data = t.data as Int32Array;
  const seen = new Map<number, number>();
  for (let i = 0; i < data.length; i++) {
    const row = data[i];
    if (row >= rows) {
      throw new SsdError('ERR_SSD_VALUE', `Expected inputs.stateIndices entries below the state's ${rows} rows (state.dims[0]) but received ${row} at index ${i}`);
    }
    if (row < 0) continue;
    const first = seen.get(row);
    if (first !== undefined) {
      throw new SsdError(
        'ERR_SSD_VALUE',
        `Expected distinct non-negative inputs.stateIndices (each state row stepped at most once per call) but received row ${row} at indices ${first} and ${i}`,
      );
    }
    seen.set(row, i);
  }
  return t;
}

function readStepOut(out: unknown, x: Tensor, state: Tensor, inputs: SsdStepInputs): SsdStepPlan['out'] {
  if (out === undefined) return {};
  if (!isPlainObject(out)) throw typeError('options.out', 'an object { y? } of Tensors', out);
  checkKnownKeys('key of options.out', out, ['y']);
  if (out.y === undefined) return {};
  const y = tensorArg('options.out.y', out.y, [x.type], 3, '(batch, nheads, headdim)');
  if (!sameDims(y.dims, x.dims)) throw shapeError('options.out.y', x.dims, '(batch, nheads, headdim)', y.dims);
  if (y === state || Object.values(inputs).includes(y)) {
    throw new SsdError('ERR_SSD_VALUE', 'Expected options.out.y to be a tensor apart from the state and the inputs but received one of them');
  }
  return { y };
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
    const args: NativeStepArgs = {
      dims: [plan.batch, plan.nheads, plan.headdim, plan.ngroups, plan.dstate],
      stateRows: plan.stateRows,
      state: await call.buffer('state', state, false),
      stateType: nativeDtype(state.type),
      stateIndices: await call.optional('inputs.stateIndices', t.stateIndices, false),
      ...projectionScalars(t, plan),
      x: await call.buffer('inputs.x', t.x, false),
      dt: await call.buffer('inputs.dt', t.dt, false),
      A: await call.buffer('inputs.A', t.A, true),
      B: await call.buffer('inputs.B', t.B, false),
      C: await call.buffer('inputs.C', t.C, false),
      D: await call.optional('inputs.D', t.D, true),
      z: await call.optional('inputs.z', t.z, false),
      dtBias: await call.optional('inputs.dtBias', t.dtBias, true),
      y: 0n,
      yType: nativeDtype(t.x.type),
      threads: 0,
    };
    const out = plan.out.y;
    if (stateOnDevice) {
      if (out !== undefined && (out.location !== 'cuda' || out.device !== device)) {
        throw new SsdError('ERR_SSD_DEVICE', `Expected options.out.y on 'cuda:${device}' for a step of a state on that device`);
      }
      y = out ?? Tensor.fromOwnedDeviceMemory(addon.cudaAlloc(device, yBytes), t.x.type as FloatType, dims, device, yBytes);
      args.y = y.devicePointer;
    } else {
      if (out !== undefined && out.location !== 'cpu') {
        throw new SsdError('ERR_SSD_DEVICE', 'Expected options.out.y on the host for a step of a host state');
      }
      y = out ?? (t.x.type === 'float32' ? new Tensor('float32', new Float32Array(yBytes / 4), dims) : new Tensor(t.x.type as FloatType, new Uint16Array(yBytes / 2), dims));
      args.y = call.alloc(yBytes);
    }
    call.enqueue(addon.cudaStep(args, device));
    if (!stateOnDevice) {
      call.download(args.y as bigint, y.data);
      call.download(args.state as bigint, state.data);
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
  const args: NativeStepArgs = {
    dims: [plan.batch, plan.nheads, plan.headdim, plan.ngroups, plan.dstate],
    stateRows: plan.stateRows,
    state: state.data as Float32Array | Uint16Array,
    stateType: nativeDtype(state.type),
    stateIndices: t.stateIndices === undefined ? null : (t.stateIndices.data as Int32Array),
    ...projectionScalars(t, plan),
    x: t.x.data,
    dt: t.dt.data,
    A: t.A.toFloat32(),
    B: t.B.data,
    C: t.C.data,
    D: t.D === undefined ? null : t.D.toFloat32(),
    z: t.z === undefined ? null : t.z.data,
    dtBias: t.dtBias === undefined ? null : t.dtBias.toFloat32(),
    y: y.data,
    yType: nativeDtype(y.type),
    threads: plan.threads,
  };
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
