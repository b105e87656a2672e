/**
 * The validation rules, in one place: the dtypes each argument accepts, the chunk sizes, the
 * thread counts and the size limits (and the types of a call's sizes). lib/validate.ts,
 * lib/validate-backward.ts, lib/step.ts and lib/tensor.ts check arguments against these values and
 * build their messages from them.
 * This module imports nothing, so any module may read it.
 */

/** Every tensor type, in the order messages list them. */
export const TENSOR_TYPES = ['float32', 'bfloat16', 'float16', 'int32'] as const;

type Dtype = (typeof TENSOR_TYPES)[number];

/** The floating-point types: every float input accepts any of them. */
export const FLOAT_TYPES: readonly Dtype[] = ['float32', 'bfloat16', 'float16'];

/** Index tensors (seqIdx, cuSeqlens, stateIndices) are int32. */
export const INDEX_TYPES: readonly Dtype[] = ['int32'];

/** The dtypes the SSD's projection inputs accept, in ssd(), ssdBackward() and ssdStep() alike. */
const PROJECTION_INPUT_TYPES = {
  x: FLOAT_TYPES,
  dt: FLOAT_TYPES,
  A: FLOAT_TYPES,
  B: FLOAT_TYPES,
  C: FLOAT_TYPES,
  D: FLOAT_TYPES,
  z: FLOAT_TYPES,
  dtBias: FLOAT_TYPES,
} as const;

/** The dtypes each input of ssd() and ssdBackward() accepts. */
export const FORWARD_INPUT_TYPES = {
  ...PROJECTION_INPUT_TYPES,
  initialStates: FLOAT_TYPES,
  seqIdx: INDEX_TYPES,
  cuSeqlens: INDEX_TYPES,
} as const;

/**
 * The dtypes of ssdBackward()'s output gradients: dy must have y's type (which is x's, so it is not
 * listed here); dFinalStates may be any float type.
 */
export const OUTPUT_GRAD_TYPES = { dFinalStates: FLOAT_TYPES } as const;

/** The state cache of ssdStep(): float32 or bfloat16. */
export const STEP_STATE_TYPES: readonly Dtype[] = ['float32', 'bfloat16'];

/** The dtypes each input of ssdStep() accepts. */
export const STEP_INPUT_TYPES = {
  ...PROJECTION_INPUT_TYPES,
  stateIndices: INDEX_TYPES,
} as const;

/** options.chunkSize: a power of two from `min` to `max`; `default` when not given. */
export const CHUNK_SIZE = { min: 16, max: 256, default: 256 } as const;

/** What options.chunkSize must be, for messages. */
export const CHUNK_SIZE_RULE = `a power of two from ${CHUNK_SIZE.min} to ${CHUNK_SIZE.max}`;

/** Whether `c` is an accepted chunk size. */
export function isChunkSize(c: number): boolean {
  return Number.isInteger(c) && c >= CHUNK_SIZE.min && c <= CHUNK_SIZE.max && (c & (c - 1)) === 0;
}

/** options.threads: an integer from `min` to `max` (0, the default, means the cores available). */
export const THREADS = { min: 1, max: 1024 } as const;

/** What options.threads must be, for messages. */
export const THREADS_RULE = `an integer from ${THREADS.min} to ${THREADS.max}`;

/** Whether `t` is an accepted thread count. */
export function isThreadCount(t: number): boolean {
  return Number.isInteger(t) && t >= THREADS.min && t <= THREADS.max;
}

/** The sizes of a decode step (ssdStep()). */
export interface StepSizes {
  batch: number;
  nheads: number;
  headdim: number;
  ngroups: number;
  dstate: number;
}

/** The sizes of a forward or backward call: a step's, and the sequence length. */
export interface ScanSizes extends StepSizes {
  seqlen: number;
}

/** Every size of a call (batch, seqlen, nheads, headdim, ngroups, dstate, state rows) is at least this. */
export const MIN_SIZE = 1;

/** What each size must be, for messages. */
export const MIN_SIZE_RULE = `a size of at least ${MIN_SIZE}`;

/** The largest element count a tensor may hold (TypedArray lengths are below 2^32 in practice). */
export const MAX_ELEMENTS = 2 ** 32 - 1;
