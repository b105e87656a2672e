/**
 * The sm_90a backward (csrc/cuda/sm90: the state walks, the block launch) on an H100 or H200, forced
 * for every case with SSD_KERNELS_BACKWARD_PATH=sm90 (a call it does not take is then an error, never
 * a fallback), against the float64 reverse and the CPU backward with the bounds of
 * backward.cuda.test.ts (backward-check.ts): both 16-bit dtypes, dstate 64 and 128, seqlen 1, 63, 64,
 * 65 and longer ones the walks cut into segments, ngroups, D per head or channel, z, dtBias, dtLimit,
 * initial states and dFinalStates; repeated runs bitwise equal; and the same call on the sm_80 kernels
 * within the bound.
 *
 * Without the variable the sm_90a backward takes the calls it can on an H100 or H200
 * (csrc/cuda/sm90/backward.h), so backward.cuda.test.ts runs it too; this file forces it, and the sm_80
 * kernels beside it. Without a GPU every test is skipped (the suite says why). On a GPU that is not
 * compute capability 9.0 the forced call is refused with "no sm_90a device", which the first test
 * checks, and the others say that they were skipped.
 */
import { ssdBackward, ssdBackwardSync, type SsdGrads, type SsdOptions } from '../../lib/index';
import { GRAD_NAMES } from '../../lib/validate-backward';
import { withBackwardPath, type CudaPath } from '../../lib/cuda-path';
import { Random, relativeL2, type ExampleConfig, type ExampleOptions } from '../reference';
import { gpuSuite } from '../helpers';
import { SUMMED, bitsEqual, bopts, checkGrads, makeCase } from './backward-check';

const { describeGpu } = gpuSuite('GPU sm_90a backward tests');
const rng = new Random(90091);

/** f() on the given backward path, rejected after 60 s (a kernel that never completes fails its test). */
const withPath = <R>(path: CudaPath, f: () => Promise<R>): Promise<R> => withBackwardPath(path, f, 60000);

let sm90 = false;
function skipped(): boolean {
  if (!sm90) console.log('sm_90a backward test skipped: this GPU is not compute capability 9.0 (the forced call was refused)');
  return !sm90;
}

const G = (over: Partial<ExampleConfig>): ExampleConfig => ({ batch: 2, seqlen: 200, nheads: 4, headdim: 64, ngroups: 1, dstate: 128, ...over });
const EVERY: ExampleOptions = { dtype: 'bfloat16', D: 'channel', z: true, dtBias: true, initialStates: true };

describeGpu('CUDA backward on the sm_90a kernels (forced), against the float64 reverse', () => {
  beforeAll(async () => {
    const options: SsdOptions = { dtSoftplus: true };
    const c = makeCase(rng, G({ seqlen: 70 }), { dtype: 'bfloat16' }, options, false);
    try {
      await withPath('sm90', () => ssdBackward(c.inputs, { dy: c.dy }, bopts(options, 'cuda')));
      sm90 = true;
    } catch (err) {
      sm90 = false;
      expect(String((err as Error).message)).toMatch(/no sm_90a device/);
    }
  });

  test('a forced call the kernels do not take is refused, never run elsewhere', async () => {
    if (skipped()) return;
    const options: SsdOptions = { dtSoftplus: true };
    const c = makeCase(rng, G({ headdim: 32 }), { dtype: 'bfloat16' }, options, false);
    await expect(withPath('sm90', () => ssdBackward(c.inputs, { dy: c.dy }, bopts(options, 'cuda')))).rejects.toThrow(/headdim is not 64/);
  });

  const cases: [string, ExampleConfig, ExampleOptions, SsdOptions, boolean][] = [];
  for (const seqlen of [1, 63, 64, 65, 200]) {
    cases.push([`seqlen ${seqlen}, bf16, every option`, G({ seqlen }), EVERY, { dtSoftplus: true, dtLimit: [0.001, 0.5], chunkSize: 256 }, true]);
  }
  for (const dstate of [64, 128]) {
    for (const dtype of ['bfloat16', 'float16'] as const) {
      cases.push([`dstate ${dstate}, ${dtype}, ngroups 2, D per head`, G({ dstate, ngroups: 2, seqlen: 333 }), { dtype, D: 'head', z: true }, { dtSoftplus: true, chunkSize: 128 }, true]);
    }
  }
  cases.push(['batch 1, seqlen 1000 (segments), no dFinalStates', G({ batch: 1, seqlen: 1000 }), EVERY, { dtSoftplus: true }, false]);
  cases.push(['no D, no z, no softplus', G({ seqlen: 150 }), { dtype: 'bfloat16', D: 'none', positiveDt: true }, { chunkSize: 64 }, true]);
  cases.push(['batch 3, 8 heads in 4 groups', G({ batch: 3, nheads: 8, ngroups: 4, seqlen: 260 }), { dtype: 'bfloat16', z: true, dtBias: true }, { dtSoftplus: true }, true]);

  test.each(cases)('%s', async (_name, config, example, options, final) => {
    if (skipped()) return;
    const c = makeCase(rng, config, example, options, final);
    const grads = { dy: c.dy, dFinalStates: c.dFinalStates };
    const run = (): Promise<SsdGrads> => ssdBackward(c.inputs, grads, bopts(options, 'cuda'));
    const a = await withPath('sm90', run);
    const b = await withPath('sm90', run);
    const old = await withPath('sm80', run);
    const cpu = ssdBackwardSync(c.inputs, grads, bopts(options, 'cpu'));
    const errors = checkGrads(a, c.expected, cpu, c.inputs, example.dtype ?? 'bfloat16');
    for (const key of GRAD_NAMES) {
      if (a[key] === undefined) continue;
      expect(bitsEqual(a[key]!, b[key]!)).toBe(true);
      // the two CUDA paths differ by rounding only: within twice the bound the reference check allowed
      // (the summed gradients are held to the reference only, as in backward.cuda.test.ts)
      if (SUMMED.includes(key)) continue;
      const vsOld = relativeL2(a[key]!.toFloat32(), old[key]!.toFloat32());
      if (!(vsOld <= 2 * Math.max(errors[key], 1e-2))) throw new Error(`${key}: relative L2 distance to the sm_80 backward ${vsOld}`);
    }
  });
});
