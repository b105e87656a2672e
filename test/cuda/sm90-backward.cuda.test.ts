/**
 * The sm_90a backward (csrc/cuda/sm90: the state walks, the block launch) on an H100 or H200, forced
 * for every case with SSD_KERNELS_BACKWARD_PATH=sm90 (a call it does not take is then an error, never
 * a fallback), against the float64 reverse and the CPU backward with the bounds of
 * backward.cuda.test.ts (backward-check.ts): both 16-bit dtypes, dstate 64 and 128, seqlen 1, 63, 64,
 * 65 and longer ones the walks cut into segments, ngroups, D per head or channel, z, dtBias, dtLimit,
 * initial states and dFinalStates; repeated runs bitwise equal; and the same call on the sm_80 kernels
 * within the bound. Packed calls (cuSeqlens, host or device offsets, which the native backward takes as
 * they are): each path forced in turn against the float64 reverse of the equivalent seqIdx row, the
 * sm_80 kernels (which derive that row on the device) bitwise equal to the seqIdx call.
 *
 * Without the variable the sm_90a backward takes the calls it can on an H100 or H200
 * (csrc/cuda/sm90/backward.h), so backward.cuda.test.ts runs it too; this file forces it, and the sm_80
 * kernels beside it. Without a GPU every test is skipped (the suite says why). On a GPU that is not
 * compute capability 9.0 the forced call is refused with "no sm_90a device", which the first test
 * checks, and the others say that they were skipped.
 */
import { Tensor, ssdBackward, ssdBackwardSync, type SsdGrads, type SsdInputs, type SsdOptions } from '../../lib/index';
import { ssdReferenceBackward } from '../../lib/reference-backward';
import { GRAD_NAMES } from '../../lib/validate-backward';
import { withBackwardPath, type CudaPath } from '../../lib/cuda-path';
import { Random, makeExample, relativeL2, withOptions, type ExampleConfig, type ExampleOptions } from '../reference';
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

describeGpu('CUDA backward of packed calls (cuSeqlens) on each path, against the float64 reverse', () => {
  /** The seqIdx row a pack is defined by: sequence k's positions get k. */
  function seqIdxOf(cu: Int32Array): Int32Array {
    const seq = new Int32Array(cu[cu.length - 1]);
    for (let k = 0; k + 1 < cu.length; k++) seq.fill(k, cu[k], cu[k + 1]);
    return seq;
  }
  const PACKED: ExampleOptions = { dtype: 'bfloat16', D: 'channel', z: true, dtBias: true };
  const packs: [string, number[], Partial<ExampleConfig>, ExampleOptions, SsdOptions, boolean][] = [
    ['lengths 0, 1, 63, 64, 65, 0, 37; bf16, dstate 128, every option', [0, 1, 63, 64, 65, 0, 37], {}, PACKED, { dtSoftplus: true, dtLimit: [0.001, 0.5], chunkSize: 64 }, true],
    ['lengths 65, 0, 200, 0; f16, dstate 64, ngroups 2, no dFinalStates', [65, 0, 200, 0], { dstate: 64, ngroups: 2 }, { dtype: 'float16', D: 'head', z: true }, { dtSoftplus: true, chunkSize: 128 }, false],
    ['one sequence of 1; bf16, no D, no z', [1], {}, { dtype: 'bfloat16', D: 'none', positiveDt: true }, { chunkSize: 256 }, true],
    ['48 sequences of 1 to 70; bf16, 8 heads', Array.from({ length: 48 }, (_, k) => 1 + ((k * 37) % 70)), { nheads: 8 }, PACKED, { dtSoftplus: true }, true],
  ];
  test.each(packs)('%s', async (_name, lengths, over, example, options, final) => {
    const cu = new Int32Array(lengths.length + 1);
    lengths.forEach((len, k) => (cu[k + 1] = cu[k] + len));
    const L = cu[lengths.length];
    const config = G({ batch: 1, seqlen: L, ...over });
    const { inputs, ref } = makeExample(rng, config, example);
    const { nheads: h, headdim: p, dstate: n } = config;
    const dy = Tensor.fromFloat32(example.dtype ?? 'bfloat16', rng.normals(L * h * p), [1, L, h, p]);
    const dFinalStates = final ? new Tensor('float32', rng.normals(h * p * n), [1, h, p, n]) : undefined;
    const grads = { dy, dFinalStates };
    const seq = seqIdxOf(cu);
    const expected = ssdReferenceBackward(withOptions({ ...ref, seqIdx: seq }, options), dy.toFloat32(), dFinalStates?.toFloat32());
    const hostCu = new Tensor('int32', cu, [cu.length]);
    const cpu = ssdBackwardSync({ ...inputs, cuSeqlens: hostCu }, grads, bopts(options, 'cpu'));
    const bySeqIdx = await withPath('sm80', () => ssdBackward({ ...inputs, seqIdx: new Tensor('int32', seq, [1, L]) }, grads, bopts(options, 'cuda')));
    for (const path of ['sm80', 'sm90'] as const) {
      if (path === 'sm90' && skipped()) continue;
      for (const where of ['host', 'device'] as const) {
        const cuArg = where === 'host' ? hostCu : hostCu.toDevice();
        const packed: SsdInputs = { ...inputs, cuSeqlens: cuArg };
        const run = (): Promise<SsdGrads> => ssdBackward(packed, grads, bopts(options, 'cuda'));
        const a = await withPath(path, run);
        const b = await withPath(path, run);
        checkGrads(a, expected, cpu, inputs, example.dtype ?? 'bfloat16');
        for (const key of GRAD_NAMES) {
          if (a[key] === undefined) continue;
          expect(bitsEqual(a[key]!, b[key]!)).toBe(true);
          // the sm_80 kernels run the pack as its seqIdx row, derived on the device
          if (path === 'sm80') expect(bitsEqual(a[key]!, bySeqIdx[key]!)).toBe(true);
        }
        if (where === 'device') cuArg.dispose();
      }
    }
  });
});
