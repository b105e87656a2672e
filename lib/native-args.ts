/**
 * The argument objects of every native call, built in one place from a validated call: the
 * forward's, the backward's and the step's, for the CPU and for CUDA, and the query that asks the
 * addon whether its CUDA path supports a call.
 *
 * Each op lists its tensor arguments as slots (field, name, tensor, whether the native side reads it
 * as float32). A caller turns the slots into buffers (hostBuffers: a host tensor's data;
 * deviceBuffers: a device address, uploading host tensors; mapBuffers: any mapping) and hands them,
 * with the output buffers, to the op's builder. So a call's CPU and CUDA arguments differ only in
 * how a tensor becomes a buffer.
 */
import type { CudaQuery, NativeBackwardArgs, NativeBuffer, NativeCommonArgs, NativeDeviceBackwardArgs, NativeDtype, NativeForwardArgs, NativeOutput, NativeStepArgs } from './native';
import type { DeviceCall } from './device-call';
import { DTYPES, type DtypeRow } from './rules';
import { nativeView, type Tensor, type TensorType } from './tensor';
import { nativeOptions, OPTION_NAMES, STEP_OPTION_NAMES, type NativeOptions, type OptionName, type SsdInputs, type SsdPlan } from './validate';
import type { BackwardCall, SsdGradName } from './validate-backward';
import type { SsdStepInputs, SsdStepPlan } from './validate-step';

/** The native dtype code of a tensor type (int32 has none: index tensors are passed without one). */
export function nativeDtype(type: TensorType): NativeDtype {
  const code = (DTYPES[type] as DtypeRow).code;
  if (code === undefined) throw new TypeError(`internal: the tensor type '${type}' has no native dtype code`);
  return code;
}

/**
 * The dtype fields that every native call (forward, backward, step; host or device) takes from the
 * same inputs: everything but the buffers, y, the sizes and the options.
 */
export function projectionScalars(
  t: { x: Tensor; dt: Tensor; B: Tensor; C: Tensor; D?: Tensor; z?: Tensor },
): { xType: NativeDtype; dtType: NativeDtype; BType: NativeDtype; CType: NativeDtype; dPerChannel: boolean; zType: NativeDtype } {
  return {
    xType: nativeDtype(t.x.type),
    dtType: nativeDtype(t.dt.type),
    BType: nativeDtype(t.B.type),
    CType: nativeDtype(t.C.type),
    dPerChannel: t.D !== undefined && t.D.dims.length === 2,
    zType: nativeDtype(t.z === undefined ? 'float32' : t.z.type),
  };
}

/** One tensor argument of a native call. */
export interface TensorSlot<K extends string> {
  /** the field of the native argument object */
  field: K;
  /** the tensor's name in messages ('inputs.x', 'grads.dy', 'state') */
  name: string;
  /** undefined for an optional tensor that was not given: its field is null */
  tensor: Tensor | undefined;
  /** whether the native side reads it as float32 (A, D, dtBias, initialStates, dFinalStates) */
  float32: boolean;
}

/** How a tensor becomes a buffer: its host data, or a device address. */
export type BufferOf<B> = (name: string, tensor: Tensor, float32: boolean) => B;

/** A slot's buffer, by field; null where the slot has no tensor. */
export type Buffers<K extends string, B> = Record<K, B | null>;

/** Maps every slot through `buffer`, in order. */
export function mapBuffers<K extends string, B>(slots: readonly TensorSlot<K>[], buffer: BufferOf<B>): Buffers<K, B> {
  const out = {} as Buffers<K, B>;
  for (const s of slots) out[s.field] = s.tensor === undefined ? null : buffer(s.name, s.tensor, s.float32);
  return out;
}

/** A host tensor's data (nativeView), converted to float32 where the native side reads float32. */
export const hostBuffer: BufferOf<ArrayBufferView> = (_name, tensor, float32) => (float32 ? tensor.toFloat32() : nativeView(tensor.data));

/**
 * The public names of a call's array fields (NativeCommonArgs.names): each slot's, and each output's
 * given as `outputs` (field → the tensor the caller passed in options.out, or undefined for a result
 * the call allocates, named by its field).
 */
export function argumentNames<K extends string>(slots: readonly TensorSlot<K>[], outputs: Record<string, Tensor | undefined>): Record<string, string> {
  const names: Record<string, string> = {};
  for (const s of slots) names[s.field] = s.name;
  for (const [field, given] of Object.entries(outputs)) names[field] = given === undefined ? field : `options.out.${field}`;
  return names;
}

/** The slots' host buffers (for a CPU call). */
export function hostBuffers<K extends string>(slots: readonly TensorSlot<K>[]): Buffers<K, ArrayBufferView> {
  return mapBuffers(slots, hostBuffer);
}

/**
 * The slots' device addresses for a CUDA call on `call`'s device: device tensors in place, host
 * tensors uploaded into temporaries, one after another in slot order, all queued (and every host
 * array read) before the first await; resolves once pending uploads into the device tensors are done.
 */
export async function deviceBuffers<K extends string>(call: DeviceCall, slots: readonly TensorSlot<K>[]): Promise<Buffers<K, bigint>> {
  const out = mapBuffers(slots, (name, tensor, float32) => call.buffer(name, tensor, float32));
  await call.ready();
  return out;
}

/** The address of a tensor already on the device (for callers that have awaited its upload). */
export const devicePointer: BufferOf<bigint> = (_name, tensor) => tensor.devicePointer;

function slot<K extends string>(field: K, name: string, tensor: Tensor | undefined, float32 = false): TensorSlot<K> {
  return { field, name, tensor, float32 };
}

// ---- The forward ---------------------------------------------------------------------------------

export type ForwardInputField = 'x' | 'dt' | 'A' | 'B' | 'C' | 'D' | 'z' | 'dtBias' | 'initialStates' | 'seqIdx' | 'cuSeqlens';

/** The SSD's projection inputs: what the forward, the backward and the step all read. */
type ProjectionField = 'x' | 'dt' | 'A' | 'B' | 'C' | 'D' | 'z' | 'dtBias';

/** Their tensors, in upload order. */
function projectionSlots(t: Pick<SsdInputs, ProjectionField>): TensorSlot<ProjectionField>[] {
  return [
    slot('x', 'inputs.x', t.x),
    slot('dt', 'inputs.dt', t.dt),
    slot('A', 'inputs.A', t.A, true),
    slot('B', 'inputs.B', t.B),
    slot('C', 'inputs.C', t.C),
    slot('D', 'inputs.D', t.D, true),
    slot('z', 'inputs.z', t.z),
    slot('dtBias', 'inputs.dtBias', t.dtBias, true),
  ];
}

/** The forward's input tensors, in the order they are uploaded; the backward reads them too, first. */
export function forwardInputSlots(t: SsdInputs): TensorSlot<ForwardInputField>[] {
  return [
    ...projectionSlots(t),
    slot('initialStates', 'inputs.initialStates', t.initialStates, true),
    slot('seqIdx', 'inputs.seqIdx', t.seqIdx),
    slot('cuSeqlens', 'inputs.cuSeqlens', t.cuSeqlens),
  ];
}

/** [batch, seqlen, nheads, headdim, ngroups, dstate]: the dims of forward and backward calls. */
function scanDims(plan: SsdPlan): number[] {
  return [plan.batch, plan.seqlen, plan.nheads, plan.headdim, plan.ngroups, plan.dstate];
}

/** The forward's outputs: y, and the others when the call returns them. */
export interface ForwardOutputs<B> {
  y: B;
  finalStates: B | null;
  varlenStates: B | null;
  yUngated: B | null;
}

/** The buffers of the SSD's projection inputs, which the forward, the backward and the step share. */
function projectionBuffers(
  inputs: Buffers<ProjectionField, NativeBuffer>,
): Pick<NativeCommonArgs, ProjectionField> {
  return {
    x: inputs.x as NativeBuffer,
    dt: inputs.dt as NativeBuffer,
    A: inputs.A as Float32Array | bigint,
    B: inputs.B as NativeBuffer,
    C: inputs.C as NativeBuffer,
    D: inputs.D as Float32Array | bigint | null,
    z: inputs.z,
    dtBias: inputs.dtBias as Float32Array | bigint | null,
  };
}

/** The arguments of one forward (forward, forwardSync, cudaForward, cudaTimeForward). */
export function forwardArgs(t: SsdInputs, plan: SsdPlan, inputs: Buffers<ForwardInputField, NativeBuffer>, out: ForwardOutputs<NativeOutput>): NativeForwardArgs {
  return {
    dims: scanDims(plan),
    ...nativeOptions(plan, OPTION_NAMES),
    ...projectionScalars(t),
    ...projectionBuffers(inputs),
    initialStates: inputs.initialStates as Float32Array | bigint | null,
    seqIdx: inputs.seqIdx as Int32Array | bigint | null,
    y: out.y,
    yType: nativeDtype(plan.xType),
    finalStates: out.finalStates as Float32Array | bigint | true | null,
    cuSeqlens: inputs.cuSeqlens as Int32Array | bigint | null,
    numSeqs: plan.numSeqs,
    varlenStates: out.varlenStates as Float32Array | bigint | true | null,
    yUngated: out.yUngated,
    yUngatedType: nativeDtype(plan.xType),
    names: argumentNames(forwardInputSlots(t), plan.out),
  };
}

/** What the addon's cudaSupports() is asked about a call: its dims, its options as the addon takes them, and dtypes. */
function supportsQuery(dims: number[], options: Partial<NativeOptions<OptionName>>, t: SsdInputs | SsdStepInputs): CudaQuery {
  return {
    dims,
    ...options,
    xType: nativeDtype(t.x.type),
    BType: nativeDtype(t.B.type),
    CType: nativeDtype(t.C.type),
    dtType: nativeDtype(t.dt.type),
    zType: t.z === undefined ? null : nativeDtype(t.z.type),
  };
}

/** What the addon's cudaSupports('forward' or 'backward', ...) is asked about a call. */
export function scanQuery(t: SsdInputs, plan: SsdPlan): CudaQuery {
  return supportsQuery(scanDims(plan), nativeOptions(plan, OPTION_NAMES), t);
}

// ---- The backward --------------------------------------------------------------------------------

export type BackwardInputField = ForwardInputField | 'dy' | 'dFinalStates' | 'yUngated';

/**
 * The backward's input tensors (the forward's, the output gradients, and options.yUngated), in the
 * order they are uploaded. `withYUngated`: the CUDA backward reads options.yUngated for dz; the CPU
 * backward recomputes the output before the gate and is not handed it.
 */
export function backwardInputSlots(call: BackwardCall, withYUngated: boolean): TensorSlot<BackwardInputField>[] {
  return [
    ...forwardInputSlots(call.inputs),
    slot('dy', 'grads.dy', call.grads.dy),
    slot('dFinalStates', 'grads.dFinalStates', call.grads.dFinalStates, true),
    slot('yUngated', 'options.yUngated', withYUngated ? call.yUngated : undefined),
  ];
}

/** The gradient outputs by name: one buffer for each gradient the call returns (call.specs). */
export type GradBuffers<B> = Partial<Record<SsdGradName, B>>;

/**
 * The arguments of one backward: host buffers for backward / backwardSync, device addresses for
 * cudaBackward / cudaTimeBackward. A call packed with cuSeqlens hands the offsets over as they are
 * (host or device); varlenStates, a forward output, has no gradient and is never passed.
 */
export function backwardArgs(call: BackwardCall, inputs: Buffers<BackwardInputField, ArrayBufferView>, grads: GradBuffers<ArrayBufferView | true>): NativeBackwardArgs;
export function backwardArgs(call: BackwardCall, inputs: Buffers<BackwardInputField, bigint>, grads: GradBuffers<bigint>): NativeDeviceBackwardArgs;
export function backwardArgs(
  call: BackwardCall,
  inputs: Buffers<BackwardInputField, NativeBuffer>,
  grads: GradBuffers<NativeOutput>,
): NativeBackwardArgs | NativeDeviceBackwardArgs {
  const { inputs: t, plan } = call;
  const args = {
    dims: scanDims(plan),
    ...nativeOptions(plan, OPTION_NAMES),
    ...projectionScalars(t),
    x: inputs.x,
    dt: inputs.dt,
    A: inputs.A,
    B: inputs.B,
    C: inputs.C,
    D: inputs.D,
    z: inputs.z,
    dtBias: inputs.dtBias,
    initialStates: inputs.initialStates,
    seqIdx: inputs.seqIdx,
    cuSeqlens: inputs.cuSeqlens as Int32Array | bigint | null,
    numSeqs: plan.numSeqs,
    varlenStates: null,
    dy: inputs.dy,
    dyType: nativeDtype(call.grads.dy.type),
    dFinalStates: inputs.dFinalStates,
    dx: grads.dx,
    ddt: grads.ddt,
    dA: grads.dA,
    dB: grads.dB,
    dC: grads.dC,
    dD: grads.dD ?? null,
    dz: grads.dz ?? null,
    dDtBias: grads.dDtBias ?? null,
    dInitialStates: grads.dInitialStates ?? null,
    yUngated: inputs.yUngated,
    yUngatedType: nativeDtype(t.x.type), // yUngated has x's type (validated)
    names: argumentNames(backwardInputSlots(call, true), call.out),
  };
  return args as NativeBackwardArgs | NativeDeviceBackwardArgs;
}

// ---- The step ------------------------------------------------------------------------------------

export type StepInputField = 'state' | 'stateIndices' | 'x' | 'dt' | 'A' | 'B' | 'C' | 'D' | 'z' | 'dtBias';

/** The step's state and input tensors, in the order they are uploaded. */
export function stepInputSlots(state: Tensor, t: SsdStepInputs): TensorSlot<StepInputField>[] {
  return [slot('state', 'state', state), slot('stateIndices', 'inputs.stateIndices', t.stateIndices), ...projectionSlots(t)];
}

/** [batch, nheads, headdim, ngroups, dstate]: the dims of a step. */
function stepDims(plan: SsdStepPlan): number[] {
  return [plan.batch, plan.nheads, plan.headdim, plan.ngroups, plan.dstate];
}

/** The arguments of one step (step, stepSync, cudaStep, cudaTimeStep); y of x's type. */
export function stepArgs(state: Tensor, t: SsdStepInputs, plan: SsdStepPlan, inputs: Buffers<StepInputField, NativeBuffer>, y: NativeOutput): NativeStepArgs {
  return {
    dims: stepDims(plan),
    stateRows: plan.stateRows,
    state: inputs.state as Float32Array | Uint16Array | bigint,
    stateType: nativeDtype(state.type),
    stateIndices: inputs.stateIndices as Int32Array | bigint | null,
    ...nativeOptions(plan, STEP_OPTION_NAMES),
    ...projectionScalars(t),
    ...projectionBuffers(inputs),
    y,
    yType: nativeDtype(t.x.type),
    names: argumentNames(stepInputSlots(state, t), { y: plan.out.y }),
  };
}

/** What the addon's cudaSupports('step', ...) is asked about a step. */
export function stepQuery(state: Tensor, t: SsdStepInputs, plan: SsdStepPlan): CudaQuery {
  return { ...supportsQuery(stepDims(plan), nativeOptions(plan, STEP_OPTION_NAMES), t), stateType: nativeDtype(state.type) };
}
