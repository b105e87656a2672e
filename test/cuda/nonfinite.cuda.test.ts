/**
 * Non-finite values on a GPU: the cases of the CPU suite (test/nonfinite.test.ts, built in
 * test/nonfinite-cases.ts) on the CUDA forward (seqIdx and cuSeqlens packs), backward (dy and
 * dFinalStates too; also with the forward's yUngated, which the backward then reads for dz) and
 * step, in every dtype, plus a NaN in A (a device tensor: a host A must be finite). The chunked kernels multiply masked zeros by every position of a chunk, so a NaN there
 * reaches the whole chunk; the cases put the sequence starts on chunk edges, and require:
 *
 * - every output the float64 reference makes non-finite is non-finite (the step size's clamp and
 *   softplus keep NaN, its gradient passes the clamp);
 * - other batch rows, heads outside the NaN's head (or group), and the other sequences of the pack
 *   stay finite with a nonzero norm (a sequence start drops the carried state: no 0 · NaN);
 * - where both are finite, the values are within the usual CUDA bounds of the reference.
 * The step, which is no chunked scan, must give exactly the reference's pattern.
 *
 * The generic kernels run on the small odd sizes; the fixed-shape ones (16-bit, headdim 64,
 * dstate 64, chunk 64: the backward's fixed launches with seqIdx, the forward's sequential state
 * pass without) on their own layouts, and the backward without seqIdx at those sizes, which a
 * Hopper GPU gives to the sm_90a kernels. The sm_90a forward (the default there for the calls it
 * takes) is also forced onto the same sizes (without seqIdx, and packed with cuSeqlens).
 *
 * Without a usable GPU every test here is skipped, and the suite says why.
 */
import type { FloatType } from '../../lib/index';
import { roundingError } from '../../lib/examples';
import {
  CUDA_BACKWARD_BF16_BOUND,
  CUDA_BACKWARD_BF16_SUMMED_BOUND,
  CUDA_BACKWARD_FP32_BOUND,
  CUDA_FORWARD_BOUND,
  CUDA_STEP_FP32_BOUND,
  ROUNDING_ALLOWANCE,
} from '../../lib/tolerances';
import {
  CUDA_FIXED_BACKWARD_LAYOUT,
  CUDA_FIXED_FORWARD_LAYOUT,
  CUDA_LAYOUT,
  CUDA_SM90_BACKWARD_LAYOUT,
  caseName,
  checkNanRun,
  nanCases,
  runNanCase,
  type NanCase,
  type NanLayout,
  type NanRun,
  type Outcome,
} from '../nonfinite-cases';
import { gpuSuite } from '../helpers';
import { withForwardPath, type CudaPath } from '../../lib/cuda-path';

const { describeGpu } = gpuSuite('GPU tests');

const SUMMED = ['dA', 'dDtBias', 'dD'];

/** The CUDA bounds of test/cuda/forward, backward and inference, by path, dtype and output. */
function cudaBound(c: NanCase): (o: Outcome, expected: Float64Array) => number {
  return (o, expected) => {
    const rounding = ROUNDING_ALLOWANCE * roundingError(o.type as FloatType, expected);
    if (c.path === 'step') return CUDA_STEP_FP32_BOUND + rounding;
    if (c.path !== 'backward') return CUDA_FORWARD_BOUND[c.dtype] + rounding;
    if (c.dtype === 'float32') return CUDA_BACKWARD_FP32_BOUND;
    // dDtBias sums ddt terms that cancel: test/cuda/backward.cuda.test.ts holds it to the sum of their
    // magnitudes; here only its finiteness is checked
    if (o.name === 'dDtBias') return Infinity;
    return (SUMMED.includes(o.name) ? CUDA_BACKWARD_BF16_SUMMED_BOUND : CUDA_BACKWARD_BF16_BOUND) + rounding;
  };
}

/**
 * The cases on `layout`; with `forwardPath`, their forward calls forced onto those kernels (a GPU
 * without them refuses the forced call, and the case says it was skipped).
 */
function runAll(layout: NanLayout, cases: NanCase[], forwardPath?: CudaPath): void {
  const hpg = layout.config.nheads / layout.config.ngroups;
  test.each(cases.map((c) => [caseName(c), c] as const))('%s', async (_name, c) => {
    let run: NanRun;
    try {
      run = forwardPath ? await withForwardPath(forwardPath, () => runNanCase(c, layout, 'cuda'), 60000) : await runNanCase(c, layout, 'cuda');
    } catch (err) {
      if (!/no sm_90a device/.test(String((err as Error).message))) throw err;
      console.log(`skipped: this GPU has no sm_90a kernels (${caseName(c)})`);
      return;
    }
    // the step is no chunked scan: its NaN pattern is the reference's exactly
    expect(checkNanRun(run, c.path === 'step' ? 'exact' : 'superset', hpg, cudaBound(c))).toEqual([]);
  });
}

describeGpu('CUDA: a NaN reaches what it feeds and no other sequence, head or row (generic kernels)', () => {
  runAll(CUDA_LAYOUT, nanCases(['forward', 'varlen', 'backward', 'step'], ['float32', 'bfloat16', 'float16'], true, true));
});

describeGpu('CUDA: the same on the fixed-shape kernels', () => {
  runAll(CUDA_FIXED_BACKWARD_LAYOUT, nanCases(['backward'], ['bfloat16', 'float16'], true, true));
  runAll(CUDA_FIXED_FORWARD_LAYOUT, nanCases(['forward'], ['bfloat16', 'float16'], true));
});

describeGpu('CUDA: the same on the backward without seqIdx (the sm_90a kernels on a Hopper GPU)', () => {
  runAll(CUDA_SM90_BACKWARD_LAYOUT, nanCases(['backward'], ['bfloat16', 'float16'], true, true));
});

describeGpu('CUDA: the same on the sm_90a forward (forced; skipped where the GPU has none)', () => {
  runAll(CUDA_SM90_BACKWARD_LAYOUT, nanCases(['forward'], ['bfloat16', 'float16'], true), 'sm90');
  // cuSeqlens packs, which the sm_90a forward chunks from each sequence's start
  runAll(CUDA_FIXED_BACKWARD_LAYOUT, nanCases(['varlen'], ['bfloat16', 'float16'], true), 'sm90');
});
