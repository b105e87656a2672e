/**
 * Past 2^31 elements on the CPU: x holds 2^20 tokens × 33 heads × 64 channels = 2,214,592,512
 * bfloat16 elements (4.4 GB), and a seqIdx boundary puts the last sequence (8,192 tokens) wholly past
 * element 2^31. Its outputs and gradients must be those of a run over that sequence alone (32-bit
 * offsets would read and write the wrong rows, or outside the buffers). The run alone is a pack of
 * the same two sequences, [S0 - LEAD, S0) and [S0, L), so that every operation on the last one is
 * the same and the comparison can be bit for bit.
 *
 * Memory: x and y (reused as dx) are the only large buffers, about 8.9 GB of address space; x is
 * zero except near the last sequence, so its untouched pages stay shared zero pages and the resident
 * peak is about 5 GB. Time: dominated by writing y's 4.4 GB (the first touch of fresh memory is slow
 * on virtual machines) and one forward and one backward over 2^31 elements.
 */
import * as os from 'node:os';
import { Tensor, ssdBackwardSync, ssdSync, type SsdInputs } from '../lib/index';
import { Random } from '../lib/examples';
import { relativeL2 } from '../lib/reference';
import { CPU_BOUND } from '../lib/tolerances';

const L = 2 ** 20;
const H = 33;
const P = 64;
const N = 4;
const HP = H * P;
/** The last sequence starts here: its first element, S0 · h · p = 2,197,291,008, is past 2^31. */
const S0 = L - 8192;
/**
 * The sequence before it: LEAD tokens of random values (the rest of x is zero), whose state the
 * reset at S0 must drop. The standalone run covers the same [S0 - LEAD, L) as a pack of two.
 */
const LEAD = 64;

const enoughMemory = os.totalmem() >= 16 * 2 ** 30;
const describeLarge = enoughMemory ? describe : describe.skip;

test('the > 2^31 element tests run where the machine has 16 GiB or more', () => {
  if (!enoughMemory) console.log(`> 2^31 element tests skipped: ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB of memory here`);
  expect(L * HP).toBeGreaterThan(2 ** 31);
  expect(S0 * HP).toBeGreaterThan(2 ** 31);
});

/** A view of rows [t0, t0 + count) of a (1, L, ...) tensor, as a tensor of its own (no copy). */
function rows(t: Tensor, t0: number, count: number, inner: number[]): Tensor {
  const width = inner.reduce((a, b) => a * b, 1);
  const { buffer, byteOffset } = t.data;
  const at = (bytes: number): number => byteOffset + t0 * width * bytes;
  switch (t.type) {
    case 'float32':
      return new Tensor(t.type, new Float32Array(buffer, at(4), count * width), [1, count, ...inner]);
    case 'int32':
      return new Tensor(t.type, new Int32Array(buffer, at(4), count * width), [1, count, ...inner]);
    default:
      return new Tensor(t.type, new Uint16Array(buffer, at(2), count * width), [1, count, ...inner]);
  }
}

/** How many bytes of the two tensors' data differ (0: the same bits). */
function bytesDiffering(a: Tensor, b: Tensor): number {
  const x = new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength);
  const y = new Uint8Array(b.data.buffer, b.data.byteOffset, b.data.byteLength);
  expect(x.length).toBe(y.length);
  let differ = 0;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) differ++;
  return differ;
}

describeLarge('past 2^31 elements: a whole sequence of a seqIdx pack beyond element 2^31', () => {
  const rng = new Random(2026);
  let inputs: SsdInputs;
  let alone: SsdInputs;
  let y: Tensor;

  beforeAll(() => {
    const x = new Tensor('bfloat16', new Uint16Array(L * HP), [1, L, H, P]);
    const tail = Tensor.fromFloat32('bfloat16', rng.normals((L - S0 + LEAD) * HP), [L - S0 + LEAD, HP]);
    (x.data as Uint16Array).set(tail.data as Uint16Array, (S0 - LEAD) * HP);
    const seq = new Int32Array(L);
    seq.fill(1, S0 - LEAD, S0);
    seq.fill(2, S0);
    inputs = {
      x,
      dt: Tensor.fromFloat32('float32', rng.normals(L * H, 1, -4), [1, L, H]),
      A: new Tensor('float32', Float32Array.from({ length: H }, (_, i) => -(1 + (i % 8)) / 4), [H]),
      B: Tensor.fromFloat32('float32', rng.normals(L * N), [1, L, 1, N]),
      C: Tensor.fromFloat32('float32', rng.normals(L * N), [1, L, 1, N]),
      D: new Tensor('float32', Float32Array.from({ length: H }, (_, i) => 0.5 + i / 16), [H]),
      dtBias: new Tensor('float32', rng.normals(H, 0.1), [H]),
      seqIdx: new Tensor('int32', seq, [1, L]),
    };
    const t0 = S0 - LEAD, len = L - t0;
    const aloneSeq = new Int32Array(len);
    aloneSeq.fill(1, LEAD);
    alone = {
      ...inputs,
      x: rows(inputs.x, t0, len, [H, P]),
      dt: rows(inputs.dt, t0, len, [H]),
      B: rows(inputs.B, t0, len, [1, N]),
      C: rows(inputs.C, t0, len, [1, N]),
      seqIdx: new Tensor('int32', aloneSeq, [1, len]),
    };
    y = new Tensor('bfloat16', new Uint16Array(L * HP), [1, L, H, P]);
  });

  afterAll(() => {
    inputs = alone = undefined as never;
    y = undefined as never;
  });

  test('the forward: the outputs of the last sequence are those of a standalone run, bit for bit', () => {
    const started = Date.now();
    ssdSync(inputs, { dtSoftplus: true, out: { y } });
    console.log(`forward over ${L * HP} elements: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const expected = ssdSync(alone, { dtSoftplus: true }).y;
    expect(bytesDiffering(rows(y, S0, L - S0, [H, P]), rows(expected, LEAD, L - S0, [H, P]))).toBe(0);
    // and y is zero where x is and no state came in
    expect(bytesDiffering(rows(y, 0, 4, [H, P]), new Tensor('bfloat16', new Uint16Array(4 * HP), [1, 4, H, P]))).toBe(0);
  });

  test('the backward: the gradients of the last sequence are those of a standalone run', () => {
    const started = Date.now();
    // dy = x (read only, like every input); dx goes to y's buffer: no third 4.4 GB buffer
    const grads = ssdBackwardSync(inputs, { dy: inputs.x }, { dtSoftplus: true, out: { dx: y } });
    console.log(`backward over ${L * HP} elements: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const expected = ssdBackwardSync(alone, { dy: alone.x }, { dtSoftplus: true });
    const tail = (t: Tensor, inner: number[]): Tensor => rows(t, S0, L - S0, inner);
    const own = (t: Tensor, inner: number[]): Tensor => rows(t, LEAD, L - S0, inner);
    expect(bytesDiffering(tail(y, [H, P]), own(expected.dx, [H, P]))).toBe(0);
    expect(bytesDiffering(tail(grads.ddt, [H]), own(expected.ddt, [H]))).toBe(0);
    expect(bytesDiffering(tail(grads.dB, [1, N]), own(expected.dB, [1, N]))).toBe(0);
    expect(bytesDiffering(tail(grads.dC, [1, N]), own(expected.dC, [1, N]))).toBe(0);
    // sums over every position: the zero rows of x (and dy) add nothing, the order of the sums differs
    for (const key of ['dA', 'dD', 'dDtBias'] as const) {
      expect(relativeL2(grads[key]!.toFloat32(), expected[key]!.toFloat32())).toBeLessThanOrEqual(CPU_BOUND);
    }
  });
});
