/**
 * The float64 reference is checked two ways before anything is checked against it:
 * closed forms on tiny sizes, and agreement with an independent float64 implementation of the
 * chunked algorithm (§2 of the spec), which shares no code with the token recurrence.
 */
import {
  Random,
  makeExample,
  ssdReference,
  stepSize,
  relativeL2,
  l2,
  type ExampleConfig,
  type ExampleOptions,
  type RefInputs,
} from './reference';
import { FLOAT64_DIGITS, FLOAT64_ROUTE_BOUND } from '../lib/tolerances';

/** §2 of the spec in float64: intra-chunk masked product, chunk states, state passing, from-state output. */
function chunkedReference(r: RefInputs, Q: number): { y: Float64Array; finalStates: Float64Array } {
  const { batch, seqlen: L, nheads: h, headdim: p, ngroups: g, dstate: n } = r;
  const [lo, hi] = r.dtLimit ?? [0, Infinity];
  const y = new Float64Array(batch * L * h * p);
  const finalStates = new Float64Array(batch * h * p * n);
  for (let b = 0; b < batch; b++) {
    for (let head = 0; head < h; head++) {
      const group = Math.floor(head / (h / g));
      const seq = (t: number): number => (r.seqIdx ? r.seqIdx[b * L + t] : 0);
      const d = new Float64Array(L);
      for (let t = 0; t < L; t++) {
        d[t] = stepSize(r.dt[(b * L + t) * h + head], r.dtBias ? r.dtBias[head] : 0, r.dtSoftplus ?? false, lo, hi);
      }
      const xAt = (t: number, i: number): number => r.x[((b * L + t) * h + head) * p + i];
      const bAt = (t: number, j: number): number => r.B[((b * L + t) * g + group) * n + j];
      const cAt = (t: number, j: number): number => r.C[((b * L + t) * g + group) * n + j];

      let H = new Float64Array(p * n); // state entering the chunk
      if (r.initialStates) H.set(Array.from({ length: p * n }, (_, k) => r.initialStates![(b * h + head) * p * n + k]));
      let seqBefore = 0; // initial states count as seqIdx 0
      for (let start = 0; start < L; start += Q) {
        const end = Math.min(start + Q, L);
        const s = new Float64Array(end - start);
        let acc = 0;
        for (let t = start; t < end; t++) s[t - start] = acc += d[t] * r.A[head];
        const seqLast = seq(end - 1);
        for (let i = start; i < end; i++) {
          for (let c = 0; c < p; c++) {
            let v = 0;
            for (let j = start; j <= i; j++) {
              if (seq(j) !== seq(i)) continue;
              let cb = 0;
              for (let k = 0; k < n; k++) cb += cAt(i, k) * bAt(j, k);
              v += Math.exp(s[i - start] - s[j - start]) * cb * d[j] * xAt(j, c);
            }
            if (seq(i) === seqBefore) {
              let off = 0;
              for (let k = 0; k < n; k++) off += H[c * n + k] * cAt(i, k);
              v += Math.exp(s[i - start]) * off;
            }
            if (r.D) v += (r.dPerChannel ? r.D[head * p + c] : r.D[head]) * xAt(i, c);
            if (r.z) {
              const zv = r.z[((b * L + i) * h + head) * p + c];
              v *= zv / (1 + Math.exp(-zv));
            }
            y[((b * L + i) * h + head) * p + c] = v;
          }
        }
        const sLast = s[end - start - 1];
        const next = new Float64Array(p * n);
        const carry = seqLast === seqBefore ? Math.exp(sLast) : 0;
        for (let c = 0; c < p; c++) {
          for (let k = 0; k < n; k++) {
            let v = carry * H[c * n + k];
            for (let j = start; j < end; j++) {
              if (seq(j) !== seqLast) continue;
              v += Math.exp(sLast - s[j - start]) * d[j] * xAt(j, c) * bAt(j, k);
            }
            next[c * n + k] = v;
          }
        }
        H = next;
        seqBefore = seqLast;
      }
      finalStates.set(H, (b * h + head) * p * n);
    }
  }
  return { y, finalStates };
}

describe('float64 reference', () => {
  test('seqlen 1, headdim 1, dstate 1 matches the closed form with every option', () => {
    const x = 0.7, dt = 0.3, A = -1.5, B = 1.3, C = -0.4, D = 0.25, z = 0.9, bias = 0.05, h0 = 2.0;
    const u = dt + bias;
    const d = Math.log1p(Math.exp(u));
    const expected = (Math.exp(d * A) * h0 + d * x * B) * C + D * x;
    const gated = expected * (z / (1 + Math.exp(-z)));
    const out = ssdReference({
      batch: 1, seqlen: 1, nheads: 1, headdim: 1, ngroups: 1, dstate: 1,
      x: [x], dt: [dt], A: [A], B: [B], C: [C], D: [D], z: [z], dtBias: [bias], initialStates: [h0], dtSoftplus: true,
    });
    expect(out.y[0]).toBeCloseTo(gated, FLOAT64_DIGITS);
    expect(out.finalStates[0]).toBeCloseTo(Math.exp(d * A) * h0 + d * x * B, FLOAT64_DIGITS);
  });

  test('dtLimit clamps and softplus is the identity above 20', () => {
    expect(stepSize(25, 0, true, 0, Infinity)).toBe(25);
    expect(stepSize(1, 0, true, 0, Infinity)).toBeCloseTo(Math.log1p(Math.E), FLOAT64_DIGITS);
    expect(stepSize(0.5, 0, false, 0.1, 0.2)).toBe(0.2);
    expect(stepSize(-3, 0, false, 0, Infinity)).toBe(0);
  });

  test('a seqIdx change drops the state: the first position of a new sequence sees no history', () => {
    const base = { batch: 1, seqlen: 2, nheads: 1, headdim: 1, ngroups: 1, dstate: 1, x: [1, 1], dt: [0.5, 0.5], A: [-1], B: [1, 1], C: [1, 1] };
    const joined = ssdReference(base);
    const split = ssdReference({ ...base, seqIdx: [0, 1] });
    expect(split.y[1]).toBeCloseTo(0.5, FLOAT64_DIGITS); // only d·x·B·C of the new position
    expect(joined.y[1]).toBeCloseTo(Math.exp(-0.5) * 0.5 + 0.5, FLOAT64_DIGITS);
    const startsAtOne = ssdReference({ ...base, seqIdx: [1, 1], initialStates: [10] });
    expect(startsAtOne.y[0]).toBeCloseTo(0.5, FLOAT64_DIGITS); // seqIdx_{-1} = 0, so initial states do not reach it
  });

  const cases: { name: string; cfg: ExampleConfig; opts: ExampleOptions; Q: number; softplus: boolean; limit?: [number, number] }[] = [
    { name: 'plain, partial last chunk', cfg: { batch: 1, seqlen: 37, nheads: 2, headdim: 3, ngroups: 1, dstate: 4 }, opts: {}, Q: 16, softplus: true },
    { name: 'every option', cfg: { batch: 2, seqlen: 50, nheads: 4, headdim: 3, ngroups: 2, dstate: 5 }, opts: { D: 'channel', z: true, dtBias: true, initialStates: true, seqStarts: [16, 21, 40] }, Q: 16, softplus: true, limit: [0.01, 0.05] },
    { name: 'seqIdx starting at 2 with initial states', cfg: { batch: 1, seqlen: 33, nheads: 2, headdim: 2, ngroups: 2, dstate: 3 }, opts: { initialStates: true, seqFirst: 2, seqStarts: [32], positiveDt: true }, Q: 16, softplus: false },
    { name: 'large dt: exp underflows', cfg: { batch: 1, seqlen: 40, nheads: 2, headdim: 2, ngroups: 1, dstate: 3 }, opts: { dtShift: 60 }, Q: 32, softplus: true },
  ];

  test.each(cases)('agrees with an independent chunked float64 implementation: $name', ({ cfg, opts, Q, softplus, limit }) => {
    const { ref } = makeExample(new Random(7), cfg, opts);
    const r: RefInputs = { ...ref, dtSoftplus: softplus, dtLimit: limit };
    const a = ssdReference(r);
    const b = chunkedReference(r, Q);
    expect(l2(a.y)).toBeGreaterThan(0);
    expect(l2(a.finalStates)).toBeGreaterThan(0);
    expect(relativeL2(b.y, a.y)).toBeLessThan(FLOAT64_ROUTE_BOUND);
    expect(relativeL2(b.finalStates, a.finalStates)).toBeLessThan(FLOAT64_ROUTE_BOUND);
  });
});
