/**
 * The sm_90a forward (csrc/cuda/sm90) on an H100 or H200, forced for every case with
 * SSD_KERNELS_FORWARD_PATH=sm90 (a call it does not take is then an error, never a fallback), against
 * the float64 reference: both 16-bit dtypes, dstate 64 and 128, every option, seqlen 1, 63 / 64 / 65
 * and partial blocks, chunk sizes 64 to 256, packed sequences with their varlen states, repeated runs
 * bitwise equal, and the same call on the sm_80 kernels (SSD_KERNELS_FORWARD_PATH=sm80) within the
 * bound, and a call on the sm_90a forward allocating its own workspace only (not the sm_80 kernels').
 *
 * On an H100 or H200 the sm_90a forward is the default for the calls it takes (csrc/cuda/sm90/forward.h);
 * each call here forces its path, so that the file knows which kernel ran. Without a GPU every test is skipped (the suite says
 * why). On a GPU that is not compute capability 9.0 the
 * forced call is refused with "no sm_90a device", which the first test checks, and the others say
 * that they were skipped.
 */
import { Tensor, cudaMemoryStats, ssd, type SsdInputs, type SsdOptions } from '../../lib/index';
import { native } from '../../lib/native';
import { CUDA_FORWARD_BOUND, ROUNDING_ALLOWANCE } from '../../lib/tolerances';
import { Random, makeExample, ssdReference, withOptions, relativeL2, l2, allFinite, roundingError, type ExampleConfig, type ExampleOptions } from '../reference';
import { sameBits, gpuSuite } from '../helpers';
import { withForwardPath, type CudaPath } from '../../lib/cuda-path';

const { describeGpu } = gpuSuite('GPU sm_90a forward tests');
const rng = new Random(90090);
/** f() on the given forward path, rejected after 60 s: a kernel that never completes fails its test by name. */
const withPath = <R>(path: CudaPath, f: () => Promise<R>): Promise<R> => withForwardPath(path, f, 60000);

let sm90 = false;
function skipped(): boolean {
  if (!sm90) console.log('sm_90a forward test skipped: this GPU is not compute capability 9.0 (the forced call was refused)');
  return !sm90;
}

const G = (over: Partial<ExampleConfig>): ExampleConfig => ({ batch: 2, seqlen: 200, nheads: 4, headdim: 64, ngroups: 1, dstate: 128, ...over });

async function check(config: ExampleConfig, example: ExampleOptions, options: SsdOptions, lengths?: number[]): Promise<void> {
  const { inputs, ref } = makeExample(rng, config, example);
  const dtype = example.dtype ?? 'bfloat16';
  let cu: Int32Array | undefined;
  let seqIdx: Int32Array | undefined;
  if (lengths) {
    cu = new Int32Array(lengths.length + 1);
    lengths.forEach((len, k) => (cu![k + 1] = cu![k] + len));
    seqIdx = new Int32Array(config.seqlen);
    lengths.forEach((_, k) => seqIdx!.fill(k, cu![k], cu![k + 1]));
  }
  const packed = cu ? { cuSeqlens: new Tensor('int32', cu, [cu.length]) } : {};
  const opts: SsdOptions = { ...options, device: 'cuda', ...(cu ? { returnVarlenStates: true } : {}) };
  const run = () => ssd({ ...inputs, ...packed }, opts);
  const a = await withPath('sm90', run);
  const b = await withPath('sm90', run);
  const old = await withPath('sm80', run);
  const y = a.y.toFloat32();
  expect(allFinite(y)).toBe(true);
  expect(l2(y)).toBeGreaterThan(0);
  expect(sameBits(a.y, b.y)).toBe(true);
  const expected = ssdReference(withOptions({ ...ref, ...(seqIdx ? { seqIdx } : {}) }, options));
  const bound = CUDA_FORWARD_BOUND[dtype] + ROUNDING_ALLOWANCE * roundingError(dtype, expected.y);
  expect(relativeL2(y, expected.y)).toBeLessThanOrEqual(bound);
  expect(relativeL2(y, old.y.toFloat32())).toBeLessThanOrEqual(bound);
  if (options.returnUngated) {
    const u = a.yUngated!.toFloat32();
    expect(allFinite(u) && l2(u) > 0).toBe(true);
    expect(relativeL2(u, expected.yUngated!)).toBeLessThanOrEqual(CUDA_FORWARD_BOUND[dtype] + ROUNDING_ALLOWANCE * roundingError(dtype, expected.yUngated!));
  }
  if (options.returnFinalStates) {
    const f = a.finalStates!.toFloat32();
    expect(allFinite(f) && l2(f) > 0).toBe(true);
    expect(sameBits(a.finalStates!, b.finalStates!)).toBe(true);
    expect(relativeL2(f, expected.finalStates)).toBeLessThanOrEqual(CUDA_FORWARD_BOUND[dtype]);
  }
  if (cu) {
    const v = a.varlenStates!.toFloat32();
    expect(allFinite(v)).toBe(true);
    expect(relativeL2(v, old.varlenStates!.toFloat32())).toBeLessThanOrEqual(CUDA_FORWARD_BOUND[dtype]);
    const per = config.nheads * config.headdim * config.dstate;
    lengths!.forEach((len, k) => {
      const s = v.subarray(k * per, (k + 1) * per);
      if (len === 0) expect(s.every((x) => x === 0)).toBe(true);
      else expect(l2(s)).toBeGreaterThan(0);
    });
  }
}

describeGpu('CUDA forward on the sm_90a kernel (forced), against the float64 reference', () => {
  beforeAll(async () => {
    const { inputs } = makeExample(rng, G({ seqlen: 70 }), { dtype: 'bfloat16' });
    try {
      await withPath('sm90', () => ssd(inputs, { dtSoftplus: true, device: 'cuda' }));
      sm90 = true;
    } catch (err) {
      sm90 = false;
      expect(String((err as Error).message)).toMatch(/no sm_90a device/);
    }
  });

  test('a forced call the kernel does not take is refused, never run elsewhere', async () => {
    if (skipped()) return;
    const { inputs } = makeExample(rng, G({ headdim: 32 }), { dtype: 'bfloat16' });
    await expect(withPath('sm90', () => ssd(inputs, { dtSoftplus: true, device: 'cuda' }))).rejects.toThrow(/headdim is not 64/);
  });

  test('a call on the sm_90a forward allocates its own workspace only, not the sm_80 kernels\'', async () => {
    if (skipped()) return;
    // 128 (batch, head) chains: one CTA each, no segments, so the sm_90a forward needs no workspace
    const { inputs } = makeExample(rng, G({ batch: 4, nheads: 32, seqlen: 512 }), { dtype: 'bfloat16', z: true });
    const dev = Object.fromEntries(Object.entries(inputs).map(([k, t]) => [k, (t as Tensor).toDevice()])) as unknown as SsdInputs;
    await Promise.all(Object.values(dev).map((t) => (t as Tensor).ready));
    const first = await withPath('sm90', () => ssd(dev, { dtSoftplus: true }));
    // the peak rise of one call whose inputs and y are already on the device: its workspace
    const rise = async (path: CudaPath): Promise<number> => {
      native().cudaResetPeak(0);
      const before = cudaMemoryStats().inUse;
      await withPath(path, () => ssd(dev, { dtSoftplus: true, out: { y: first.y } }));
      return cudaMemoryStats().peakInUse - before;
    };
    const sm90Rise = await rise('sm90');
    const sm80Rise = await rise('sm80');
    console.log(`peak rise of one call: sm_90a forward ${sm90Rise} bytes, sm_80 kernels ${sm80Rise} bytes`);
    expect(sm90Rise).toBeLessThan(2 ** 20);
    expect(sm80Rise - sm90Rise).toBeGreaterThan(2 ** 20);
    first.y.dispose();
    for (const t of Object.values(dev)) (t as Tensor).dispose();
  });

  const cases: [string, ExampleConfig, ExampleOptions, SsdOptions, number[]?][] = [];
  for (const seqlen of [1, 63, 64, 65, 200]) {
    cases.push([`seqlen ${seqlen}, bf16, every option`, G({ seqlen }), { dtype: 'bfloat16', D: 'channel', z: true, dtBias: true, initialStates: true }, { dtSoftplus: true, dtLimit: [0.001, 0.5], returnFinalStates: true, returnUngated: true, chunkSize: 256 }]);
  }
  for (const dstate of [64, 128]) {
    for (const dtype of ['bfloat16', 'float16'] as const) {
      cases.push([`dstate ${dstate}, ${dtype}, ngroups 2, D per head`, G({ dstate, ngroups: 2, seqlen: 333 }), { dtype, D: 'head', z: true }, { dtSoftplus: true, returnFinalStates: true, chunkSize: 128 }]);
    }
  }
  cases.push(['no D, no z, no softplus', G({ seqlen: 150 }), { dtype: 'bfloat16', D: 'none', positiveDt: true }, { returnFinalStates: true, chunkSize: 64 }]);
  cases.push(['large dt: exp underflows', G({ seqlen: 150 }), { dtype: 'bfloat16', dtShift: 12, initialStates: true }, { dtSoftplus: true, returnFinalStates: true }]);
  cases.push(['batch 3, 8 heads in 4 groups', G({ batch: 3, nheads: 8, ngroups: 4, seqlen: 260 }), { dtype: 'bfloat16', z: true, dtBias: true }, { dtSoftplus: true, returnFinalStates: true }]);
  cases.push(['packed: empty, 1, 63, 64, 65, 200 and empty', G({ batch: 1, seqlen: 393 }), { dtype: 'bfloat16', z: true, dtBias: true }, { dtSoftplus: true, returnFinalStates: true }, [0, 1, 63, 64, 65, 200, 0]]);
  cases.push(['packed, f16, dstate 64', G({ batch: 1, seqlen: 500, dstate: 64 }), { dtype: 'float16', D: 'channel' }, { dtSoftplus: true }, [100, 300, 100]]);

  // one argument per case: jest hands a test function with more parameters than its row has values a
  // done callback in the first missing one, which the packed cases' lengths would otherwise receive
  test.each(cases.map((c) => [c[0], c] as const))('%s', async (_name, [, config, example, options, lengths]) => {
    if (skipped()) return;
    await check(config, example, options, lengths);
  });
});
