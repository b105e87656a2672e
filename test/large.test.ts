/**
 * Past 2^31 elements on the CPU (the pack of ./large-pack.ts): x holds 2,214,592,512 bfloat16
 * elements and the last sequence of a seqIdx pack lies wholly past element 2^31. Its outputs and
 * gradients must be, bit for bit, those of a run over that sequence (and the LEAD tokens before it)
 * alone: 32-bit offsets would read and write the wrong rows, or outside the buffers.
 *
 * Memory: x and y (reused as dx) are the only large buffers, 8.9 GB of address space; x's zero pages
 * are never written, so the resident peak is about 5 GB (checked with /usr/bin/time -v). Time: writing
 * y's 4.4 GB the first time (slow on virtual machines, whose fresh memory faults in page by page) and
 * one forward and one backward over 2^31 elements.
 */
import * as os from 'node:os';
import { Tensor, ssdBackwardSync, ssdSync } from '../lib/index';
import { l2, relativeL2 } from '../lib/reference';
import { CPU_BOUND } from '../lib/tolerances';
import { H, HP, L, LEAD, P, S0, largePack, rows, type LargePack } from './large-pack';

const N = 4;
const enoughMemory = os.totalmem() >= 16 * 2 ** 30;
const describeLarge = enoughMemory ? describe : describe.skip;

test('the > 2^31 element tests run where the machine has 16 GiB or more', () => {
  if (!enoughMemory) console.log(`> 2^31 element tests skipped: ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB of memory here`);
  expect(L * HP).toBeGreaterThan(2 ** 31);
  expect(S0 * HP).toBeGreaterThan(2 ** 31);
});

/** How many bytes of the two tensors' data differ (0: the same bits). */
function bytesDiffering(a: Tensor, b: Tensor): number {
  const x = new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength);
  const y = new Uint8Array(b.data.buffer, b.data.byteOffset, b.data.byteLength);
  expect(x.length).toBe(y.length);
  let differ = 0;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) differ++;
  return differ;
}

describeLarge('past 2^31 elements: a whole sequence of a seqIdx pack beyond element 2^31 (CPU)', () => {
  let pack: LargePack;
  let y: Tensor;
  const own = (t: Tensor, inner: number[]): Tensor => rows(t, LEAD, L - S0, inner);
  const tail = (t: Tensor, inner: number[]): Tensor => rows(t, S0, L - S0, inner);

  beforeAll(() => {
    pack = largePack(N);
    y = new Tensor('bfloat16', new Uint16Array(L * HP), [1, L, H, P]);
  });

  afterAll(() => {
    pack = undefined as never;
    y = undefined as never;
  });

  test('the forward: the outputs of the last sequence are those of a standalone run, bit for bit', () => {
    const started = Date.now();
    ssdSync(pack.inputs, { dtSoftplus: true, out: { y } });
    console.log(`CPU forward over ${L * HP} elements: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const expected = ssdSync(pack.alone, { dtSoftplus: true }).y;
    expect(l2(tail(y, [H, P]).toFloat32())).toBeGreaterThan(0);
    expect(bytesDiffering(tail(y, [H, P]), own(expected, [H, P]))).toBe(0);
    // and y is zero where x, B and C are and no state came in
    expect(bytesDiffering(rows(y, 0, 4, [H, P]), new Tensor('bfloat16', new Uint16Array(4 * HP), [1, 4, H, P]))).toBe(0);
  });

  test('the backward: the gradients of the last sequence are those of a standalone run', () => {
    const started = Date.now();
    // dy = x (read only, like every input); dx goes to y's buffer: no third 4.4 GB buffer
    const grads = ssdBackwardSync(pack.inputs, { dy: pack.inputs.x }, { dtSoftplus: true, out: { dx: y } });
    console.log(`CPU backward over ${L * HP} elements: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const expected = ssdBackwardSync(pack.alone, { dy: pack.alone.x }, { dtSoftplus: true });
    expect(l2(tail(y, [H, P]).toFloat32())).toBeGreaterThan(0);
    expect(bytesDiffering(tail(y, [H, P]), own(expected.dx, [H, P]))).toBe(0);
    expect(bytesDiffering(tail(grads.ddt, [H]), own(expected.ddt, [H]))).toBe(0);
    expect(bytesDiffering(tail(grads.dB, [1, N]), own(expected.dB, [1, N]))).toBe(0);
    expect(bytesDiffering(tail(grads.dC, [1, N]), own(expected.dC, [1, N]))).toBe(0);
    // sums over every position: the zero rows add nothing, but the sums run in another order
    for (const key of ['dA', 'dD', 'dDtBias'] as const) {
      expect(relativeL2(grads[key]!.toFloat32(), expected[key]!.toFloat32())).toBeLessThanOrEqual(CPU_BOUND);
    }
  });
});
