/**
 * The validation rules, in one place: the dtypes each argument accepts, the chunk sizes, the
 * thread counts and the size limits (and the types of a call's sizes). lib/validate.ts,
 * lib/validate-backward.ts, lib/step.ts and lib/tensor.ts check arguments against these values and
 * build their messages from them.
 * This module imports only the bit-pattern conversions of lib/half.ts (which import nothing), so any
 * module may read it.
 */
import { bfloat16ToFloat32, float16ToFloat32, float32ToBfloat16, float32ToFloat16 } from './half';

/** A row of the dtype table (DTYPES). */
export interface DtypeRow {
  /**
   * The float types' SsdDtype code (include/ssd_kernels.h), whose row in csrc/core/dtype.h the native
   * side reads; an index type (int32) has none.
   */
  readonly code?: number;
  /** Bytes per element. */
  readonly bytes: number;
  /** The TypedArray class the data travel in (a Uint array holds bit patterns). */
  readonly array: 'Float32Array' | 'Int32Array' | 'Uint16Array' | 'Uint8Array';
  /** Another TypedArray class accepted for the data where the runtime has it. */
  readonly alsoArray?: string;
  /** Whether ssdStep() may keep its state in it (the step column of csrc/core/dtype.h). */
  readonly step: boolean;
  /** A bit-pattern type's conversions from float32 values (rounding to nearest even) and back. */
  readonly bits?: {
    fromFloat32(values: ArrayLike<number>): Uint16Array | Uint8Array;
    toFloat32(bits: ArrayLike<number>): Float32Array;
  };
}

/**
 * The dtype table: every tensor type, in the order messages list them. A new float dtype takes its
 * row here, its row in csrc/core/dtype.h and its SsdDtype value in include/ssd_kernels.h.
 */
export const DTYPES = {
  float32: { code: 0, bytes: 4, array: 'Float32Array', step: true },
  bfloat16: { code: 1, bytes: 2, array: 'Uint16Array', step: true, bits: { fromFloat32: float32ToBfloat16, toFloat32: bfloat16ToFloat32 } },
  float16: { code: 2, bytes: 2, array: 'Uint16Array', alsoArray: 'Float16Array', step: false, bits: { fromFloat32: float32ToFloat16, toFloat32: float16ToFloat32 } },
  int32: { bytes: 4, array: 'Int32Array', step: false },
} as const satisfies Readonly<Record<string, DtypeRow>>;

type Dtype = keyof typeof DTYPES;

/** Every tensor type, in the order messages list them. */
export const TENSOR_TYPES = Object.keys(DTYPES) as readonly Dtype[];

/** The floating-point types (those with a native code): every float input accepts any of them. */
export type FloatDtype = { [K in Dtype]: (typeof DTYPES)[K] extends { readonly code: number } ? K : never }[Dtype];
export const FLOAT_TYPES: readonly FloatDtype[] = TENSOR_TYPES.filter((t): t is FloatDtype => (DTYPES[t] as DtypeRow).code !== undefined);

/** The dtypes the step may keep its state in. */
export type StepStateDtype = { [K in Dtype]: (typeof DTYPES)[K] extends { readonly step: true } ? K : never }[Dtype];

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

/** The state cache of ssdStep(): the types of the table's step column (float32 or bfloat16). */
export const STEP_STATE_TYPES: readonly StepStateDtype[] = TENSOR_TYPES.filter((t): t is StepStateDtype => DTYPES[t].step);

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
