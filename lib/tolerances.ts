/**
 * Every error bound the tests and `ssd-kernels check` hold results to, named for what it bounds.
 *
 * Errors are relative L2 distances (‖got − want‖ / ‖want‖) unless a bound says otherwise. Where an
 * output is 16-bit, it is rounded once on the way out, so callers add twice the error of rounding
 * the reference itself to that type (roundingError() of lib/examples.ts) to the bound:
 * bound + ROUNDING_ALLOWANCE · roundingError(type, reference).
 */
import { DTYPES, FLOAT_TYPES } from './rules';
import type { FloatType } from './tensor';

/** How many times the reference's own rounding error a 16-bit output may add to its bound. */
export const ROUNDING_ALLOWANCE = 2;

// ---- Against the float64 reference --------------------------------------------------------------

/**
 * The CPU path against the float64 reference, fp32 work: the forward's y, finalStates and
 * varlenStates, the backward's gradients, the step's y and state (the bound, 1e-5), and
 * yUngated.
 */
export const CPU_BOUND = 1e-5;

/**
 * The CUDA forward (y, finalStates, varlenStates, yUngated) against the float64 reference, by input
 * dtype: 1e-3 for float32, 5e-3 for a narrower type (bfloat16, float16).
 */
export const CUDA_FORWARD_BOUND: Readonly<Record<FloatType, number>> = Object.fromEntries(
  FLOAT_TYPES.map((t) => [t, DTYPES[t].bytes < 4 ? 5e-3 : 1e-3]),
) as Record<FloatType, number>;

/**
 * The CUDA forward's bf16 y where the test does not compute the reference's rounding error: a fixed
 * allowance for that rounding, added to CUDA_FORWARD_BOUND.bfloat16.
 */
export const CUDA_FORWARD_BF16_ROUNDING_SLACK = 0.01;

/** The CUDA backward's gradients with fp32 inputs (fp32 FMA work in another order than the reference). */
export const CUDA_BACKWARD_FP32_BOUND = 1e-4;

/** The CUDA backward's per-position gradients (dx, ddt, dB, dC, dz, dInitialStates) with bf16 inputs. */
export const CUDA_BACKWARD_BF16_BOUND = 1e-2;

/**
 * The CUDA backward's gradients summed over every position (dA, dD, and dDtBias against the norm of
 * Σ|ddt| per head) with bf16 inputs: the sums carry the cancellation of b·L terms of both signs.
 */
export const CUDA_BACKWARD_BF16_SUMMED_BOUND = 2e-2;

/** The CUDA step's y and state with fp32 work (FMAs in another order than the reference). */
export const CUDA_STEP_FP32_BOUND = 1e-5;

/**
 * The CPU step with a bf16 state and bf16 inputs (`check`), y and state: the state is rounded to
 * bf16 once per step, so twice bf16's unit roundoff (2 × 2^-9), rounded up.
 */
export const CPU_STEP_BF16_STATE_BOUND = 4e-3;

/** The float64 reference backward against central finite differences of the reference forward. */
export const FINITE_DIFFERENCE_BOUND = 1e-6;

/**
 * How far from a kink (the clamp bounds, softplus' switch at 20) every step size of a
 * finite-difference case stays, so that central differences do not straddle one.
 */
export const FINITE_DIFFERENCE_KINK_MARGIN = 1e-4;

// ---- One computation against another of the same thing -----------------------------------------

/**
 * The CPU forward run in two parts (the first part's final state as the second's initial state)
 * against one run over the whole sequence: the largest absolute difference of y and of the final
 * state, fp32.
 */
export const CPU_SPLIT_MAX_ABS_DIFFERENCE = 1e-5;

/**
 * CUDA work split in two against the whole, fp32: the backward in two halves chained through
 * dInitialStates, and a prefill followed by single steps against one forward.
 */
export const CUDA_SPLIT_BOUND = 1e-4;

/**
 * A CUDA result against the CPU path's for the same call: this many times the bound each is held
 * to against the reference.
 */
export const CUDA_VS_CPU_FACTOR = 2;

/** The CPU backward's dDtBias against the sum of its ddt over batch and positions, per head. */
export const CPU_DTBIAS_SUM_BOUND = 1e-6;

/**
 * Two float64 computations of the same quantity by different routes: the token recurrence against
 * an independent chunked implementation, and the reference backward chained through a split.
 */
export const FLOAT64_ROUTE_BOUND = 1e-12;

/** The float64 reference forward split in two against one run. */
export const FLOAT64_SPLIT_BOUND = 1e-14;

/** Decimal digits to which float64 reference values match their closed forms (toBeCloseTo). */
export const FLOAT64_DIGITS = 14;

/**
 * Decimal digits to which a one-element fp32 call through the C ABI matches its closed form
 * (toBeCloseTo).
 */
export const FP32_CLOSED_FORM_DIGITS = 5;

/**
 * How far inside or outside a clamp bound a step size must be for a test to count it as clamped
 * (zero gradient) or inside (nonzero gradient): steps closer than this to a bound are not judged.
 */
export const CLAMP_EDGE_MARGIN = 1e-6;

// ---- Values that must be zero -------------------------------------------------------------------

/** The L2 norm a CUDA gradient may have where the float64 reference's is exactly zero (fp32 dust). */
export const CUDA_ZERO_GRADIENT_L2 = 1e-6;

/** The largest magnitude of a float64 reference gradient that fp32 is expected to underflow to zero. */
export const FP32_UNDERFLOW_MAGNITUDE = 1e-30;

/** Two bf16 roundings of fp32 values that agree to ~1e-7 differ by at most one bf16 step: 2^-8 relative. */
export const BF16_STEP = 2 ** -8;

// ---- The matrix view (ssdMatrix) and the mixer example ------------------------------------------

/**
 * ssdMatrix()'s float32 M applied in float64 (M·(d·x) + D·x) against the float64 reference's y, and
 * a window of M against the same block of the whole matrix: M's own float32 rounding, ~1e-7.
 */
export const MATRIX_BOUND = 1e-6;

/** Decimal digits to which an entry of M, divided by its closed form, matches 1 (toBeCloseTo). */
export const MATRIX_ENTRY_DIGITS = 6;

/**
 * The numerical rank of a block of M: singular values above KEPT × the largest count, those below
 * DROPPED × the largest do not (float32 rounding of M leaves them near 1e-8).
 */
export const MATRIX_RANK = { kept: 1e-4, dropped: 1e-5 } as const;

/** The largest absolute difference between decoded and one-forward outputs (of order 1) that examples/mamba2-mixer.ts prints. */
export const MIXER_EXAMPLE_MAX_ABS = 1e-4;
