/**
 * Past 4 GiB and 2^31 elements on a GPU (the pack of ../large-pack.ts, bf16 x, B and C, dstate 64,
 * chunk 256): x holds 2,214,592,512 bfloat16 elements (4.4 GB) and the last sequence of a seqIdx pack
 * lies wholly past element 2^31.
 *
 * - toDevice() of the 4.4 GB host tensor (copied in pieces: no byte view of the whole buffer can be
 *   made) and toHost() give back the same bytes.
 * - The forward and the backward (the fixed launches: 16-bit, headdim 64, dstate 64) over the whole
 *   pack give, for the last sequence, the outputs and gradients of a run over that sequence (and the
 *   LEAD tokens before it) alone, within the usual bounds (the two runs split their sums over heads
 *   differently, so the bits may differ); 32-bit offsets would give other rows' values or fault.
 * - The times of the large forward and backward are printed, to be recorded.
 *
 * Memory: host about 5 GB at the peak (x's zero pages are never written; toHost's copy is 4.4 GB);
 * device x (4.4 GB), y then dx (4.4 GB each), and the workspaces (about 10 GB for the backward):
 * under 30 GB of the card.
 *
 * Without a usable GPU every test here is skipped, and the suite says why.
 */
import { Tensor, backends, cudaEmptyCache, ssd, ssdBackward, type SsdGrads } from '../../lib/index';
import { roundingError } from '../../lib/examples';
import { relativeL2 } from '../../lib/reference';
import { CUDA_BACKWARD_BF16_BOUND, CUDA_BACKWARD_BF16_SUMMED_BOUND, CUDA_FORWARD_BOUND, ROUNDING_ALLOWANCE } from '../../lib/tolerances';
import { H, HP, L, LEAD, P, S0, largePack, rows, type LargePack } from '../large-pack';
import { gpuSuite } from '../helpers';

const N = 64;
const CHUNK = 256;
const { describeGpu } = gpuSuite('GPU tests');

/** Rows [t0, t0 + count) of a (1, L, ...) device tensor, copied to the host. */
async function deviceRows(t: Tensor, t0: number, count: number, inner: number[]): Promise<Tensor> {
  const width = inner.reduce((a, b) => a * b, 1);
  const bytes = t.type === 'float32' || t.type === 'int32' ? 4 : 2;
  const view = Tensor.fromDevicePointer(t.devicePointer + BigInt(t0 * width * bytes), t.type, [1, count, ...inner], { device: t.device });
  return view.toHost();
}

/** Whether two host byte ranges are equal, compared 1 GiB at a time (no view of 4 GiB or more). */
function sameBytes(a: ArrayBufferView, b: ArrayBufferView): boolean {
  if (a.byteLength !== b.byteLength) return false;
  const piece = 2 ** 30;
  for (let o = 0; o < a.byteLength; o += piece) {
    const n = Math.min(piece, a.byteLength - o);
    if (Buffer.compare(Buffer.from(a.buffer, a.byteOffset + o, n), Buffer.from(b.buffer, b.byteOffset + o, n)) !== 0) return false;
  }
  return true;
}

const seconds = (since: number): string => ((performance.now() - since) / 1000).toFixed(3);

describeGpu('CUDA past 4 GiB and 2^31 elements: a whole sequence of a seqIdx pack beyond element 2^31', () => {
  let pack: LargePack;
  let x: Tensor; // on the device

  beforeAll(async () => {
    pack = largePack(N, 'bfloat16'); // 16-bit x, B and C: the tensor-core kernels (the backward's fixed launches)
    const started = performance.now();
    x = pack.inputs.x.toDevice();
    await x.ready; // the upload's pieces are done
    console.log(`toDevice of ${pack.inputs.x.data.byteLength} bytes: ${seconds(started)} s`);
  });

  afterAll(() => {
    x?.dispose();
    pack = undefined as never;
    cudaEmptyCache();
  });

  test('toDevice and toHost of a 4.4 GB tensor give back the same bytes', async () => {
    expect(x.location).toBe('cuda');
    const back = await x.toHost();
    expect(back.dims).toEqual([1, L, H, P]);
    expect(sameBytes(back.data, pack.inputs.x.data)).toBe(true);
  });

  test('the forward: the outputs of the last sequence are those of a standalone run', async () => {
    const options = { dtSoftplus: true, chunkSize: CHUNK };
    const started = performance.now();
    const { y } = await ssd({ ...pack.inputs, x }, options);
    console.log(`CUDA forward over ${L * HP} elements (${backends().cuda.devices} device(s)): ${seconds(started)} s`);
    expect(y.location).toBe('cuda');
    const got = await deviceRows(y, S0, L - S0, [H, P]);
    y.dispose();
    const alone = await ssd(pack.alone, { ...options, device: 'cuda' });
    const want = rows(alone.y, LEAD, L - S0, [H, P]).toFloat32();
    const bound = CUDA_FORWARD_BOUND.bfloat16 + ROUNDING_ALLOWANCE * roundingError('bfloat16', Float64Array.from(want));
    expect(relativeL2(got.toFloat32(), want)).toBeLessThanOrEqual(bound);
  });

  test('the backward: the gradients of the last sequence are those of a standalone run', async () => {
    const options = { dtSoftplus: true, chunkSize: CHUNK };
    const started = performance.now();
    const grads: SsdGrads = await ssdBackward({ ...pack.inputs, x }, { dy: x }, options); // dy = x: no second 4.4 GB input
    console.log(`CUDA backward over ${L * HP} elements: ${seconds(started)} s`);
    const alone = await ssdBackward(pack.alone, { dy: pack.alone.x }, { ...options, device: 'cuda' });
    const check = async (key: 'dx' | 'ddt' | 'dB' | 'dC', inner: number[]): Promise<void> => {
      const g = grads[key]!;
      const got = g.location === 'cuda' ? await deviceRows(g, S0, L - S0, inner) : rows(g, S0, L - S0, inner);
      const want = Float64Array.from(rows(alone[key]!, LEAD, L - S0, inner).toFloat32());
      const bound = CUDA_BACKWARD_BF16_BOUND + ROUNDING_ALLOWANCE * roundingError(g.type as 'bfloat16', want);
      expect(relativeL2(got.toFloat32(), want)).toBeLessThanOrEqual(bound);
    };
    await check('dx', [H, P]);
    await check('ddt', [H]);
    await check('dB', [1, N]);
    await check('dC', [1, N]);
    for (const key of ['dA', 'dD', 'dDtBias'] as const) {
      const g = grads[key]!;
      const got = g.location === 'cuda' ? await g.toHost() : g;
      expect(relativeL2(got.toFloat32(), alone[key]!.toFloat32())).toBeLessThanOrEqual(CUDA_BACKWARD_BF16_SUMMED_BOUND);
    }
    for (const g of Object.values(grads)) if ((g as Tensor).location === 'cuda') (g as Tensor).dispose();
  });
});
