/**
 * The float64 reference backward is checked against central finite differences of the float64
 * forward (ssdReference) on tiny sizes, for every option, and for consistency under splitting the
 * sequence in two (the backward of the halves, chained through the states, is the backward of the whole).
 */
import { ssdReferenceBackward, type RefGrads } from '../lib/reference-backward';
import {
  Random,
  makeExample,
  ssdReference,
  softplus,
  relativeL2,
  l2,
  allFinite,
  type ExampleConfig,
  type ExampleOptions,
  type RefInputs,
} from './reference';
import { FINITE_DIFFERENCE_BOUND, FINITE_DIFFERENCE_KINK_MARGIN, FLOAT64_DIGITS, FLOAT64_ROUTE_BOUND, FLOAT64_SPLIT_BOUND } from '../lib/tolerances';

type DiffKey = 'x' | 'dt' | 'A' | 'B' | 'C' | 'D' | 'z' | 'dtBias' | 'initialStates';
type GradKey = keyof RefGrads;
const GRAD_OF: [DiffKey, GradKey][] = [
  ['x', 'dx'],
  ['dt', 'ddt'],
  ['A', 'dA'],
  ['B', 'dB'],
  ['C', 'dC'],
  ['D', 'dD'],
  ['z', 'dz'],
  ['dtBias', 'dDtBias'],
  ['initialStates', 'dInitialStates'],
];

/** A copy of the inputs with every differentiable array in float64 (so perturbations are not rounded). */
function inFloat64(r: RefInputs): RefInputs {
  const out: RefInputs = { ...r };
  for (const [key] of GRAD_OF) {
    const v = r[key];
    if (v !== undefined) out[key] = Float64Array.from(v);
  }
  return out;
}

/** L = Σ dy · y + Σ dF · finalStates. */
function loss(r: RefInputs, dy: ArrayLike<number>, dF?: ArrayLike<number>): number {
  const { y, finalStates } = ssdReference(r);
  let s = 0;
  for (let i = 0; i < y.length; i++) s += dy[i] * y[i];
  if (dF) for (let i = 0; i < finalStates.length; i++) s += dF[i] * finalStates[i];
  return s;
}

/** Central finite differences of the loss w.r.t. every element of one input, step 1e-6 relative. */
function finiteDifferences(r: RefInputs, key: DiffKey, dy: ArrayLike<number>, dF?: ArrayLike<number>): Float64Array {
  const base = Float64Array.from(r[key]!);
  const grad = new Float64Array(base.length);
  for (let k = 0; k < base.length; k++) {
    const step = 1e-6 * Math.max(1, Math.abs(base[k]));
    const plus = Float64Array.from(base);
    const minus = Float64Array.from(base);
    plus[k] += step;
    minus[k] -= step;
    const lp = loss({ ...r, [key]: plus }, dy, dF);
    const lm = loss({ ...r, [key]: minus }, dy, dF);
    grad[k] = (lp - lm) / (plus[k] - minus[k]);
  }
  return grad;
}

/** Where u = dt + dtBias lands: below / inside / above the clamp, and its distance from every kink. */
function stepRegions(r: RefInputs): { low: number; inside: number; high: number; identity: number; margin: number } {
  const { batch, seqlen: L, nheads: h } = r;
  const [lo, hi] = r.dtLimit ?? [0, Infinity];
  const out = { low: 0, inside: 0, high: 0, identity: 0, margin: Infinity };
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < L; t++) {
      for (let head = 0; head < h; head++) {
        const u = r.dt[(b * L + t) * h + head] + (r.dtBias ? r.dtBias[head] : 0);
        const v = r.dtSoftplus ? softplus(u) : u;
        if (v < lo) out.low++;
        else if (v > hi) out.high++;
        else out.inside++;
        if (r.dtSoftplus && u > 20) out.identity++;
        out.margin = Math.min(out.margin, Math.abs(v - lo), Math.abs(v - hi));
        if (r.dtSoftplus) out.margin = Math.min(out.margin, Math.abs(u - 20));
      }
    }
  }
  return out;
}

function randomCotangents(r: RefInputs, seed: number, withFinal: boolean): { dy: Float64Array; dF?: Float64Array } {
  const rng = new Random(seed);
  const { batch: b, seqlen: L, nheads: h, headdim: p, dstate: n } = r;
  const dy = Float64Array.from(rng.normals(b * L * h * p));
  return { dy, dF: withFinal ? Float64Array.from(rng.normals(b * h * p * n)) : undefined };
}

/** Every gradient: present exactly when its input is, finite, nonzero, and within FINITE_DIFFERENCE_BOUND of finite differences. */
function expectMatchesFiniteDifferences(r: RefInputs, dy: Float64Array, dF?: Float64Array): RefGrads {
  const grads = ssdReferenceBackward(r, dy, dF);
  for (const [key, gradKey] of GRAD_OF) {
    const analytic = grads[gradKey];
    if (r[key] === undefined) {
      expect(analytic).toBeUndefined();
      continue;
    }
    expect(analytic).toBeDefined();
    expect(analytic!.length).toBe(r[key]!.length);
    expect(allFinite(analytic!)).toBe(true);
    expect(l2(analytic!)).toBeGreaterThan(0);
    const numeric = finiteDifferences(r, key, dy, dF);
    const error = relativeL2(analytic!, numeric);
    if (!(error <= FINITE_DIFFERENCE_BOUND)) throw new Error(`${gradKey}: relative L2 error ${error} vs finite differences`);
    expect(error).toBeLessThanOrEqual(FINITE_DIFFERENCE_BOUND);
  }
  return grads;
}

interface Case {
  name: string;
  cfg: ExampleConfig;
  opts: ExampleOptions;
  softplus: boolean;
  limit?: [number, number];
  finalGrad: boolean;
  /** explicit seqIdx rows (b, L), overriding opts */
  seqIdx?: number[];
  /** positions (flat index into dt) set to a raw dt of 25, in softplus' identity region */
  identityAt?: number[];
  /** expected clamps: at least one below lo / above hi */
  clampLow?: boolean;
  clampHigh?: boolean;
}

const tiny = (g: number, h = 2): ExampleConfig => ({ batch: 2, seqlen: 5, nheads: h, headdim: 3, ngroups: g, dstate: 2 });

const cases: Case[] = [
  { name: 'plain (no D), softplus', cfg: tiny(1), opts: { D: 'none' }, softplus: true, finalGrad: false },
  { name: 'plain, dFinalStates only matters through states', cfg: tiny(2), opts: { D: 'none' }, softplus: true, finalGrad: true },
  { name: 'D per head, dFinalStates', cfg: tiny(1), opts: { D: 'head' }, softplus: true, finalGrad: true },
  { name: 'D per channel, z', cfg: tiny(2), opts: { D: 'channel', z: true }, softplus: true, finalGrad: false },
  { name: 'dtBias, initialStates, ngroups 2 < nheads 4', cfg: tiny(2, 4), opts: { dtBias: true, initialStates: true }, softplus: true, finalGrad: true },
  { name: 'initialStates without dFinalStates', cfg: tiny(1), opts: { initialStates: true, D: 'channel' }, softplus: true, finalGrad: false },
  {
    name: 'no softplus, dtLimit clamping both sides',
    cfg: tiny(1),
    opts: { positiveDt: true, dtBias: true, z: true },
    softplus: false,
    limit: [0.012, 0.03],
    finalGrad: true,
    clampLow: true,
    clampHigh: true,
  },
  {
    name: 'softplus, dtLimit clamping both sides, every input',
    cfg: tiny(2, 4),
    opts: { D: 'channel', z: true, dtBias: true, initialStates: true },
    softplus: true,
    limit: [0.012, 0.03],
    finalGrad: true,
    clampLow: true,
    clampHigh: true,
  },
  {
    name: 'softplus identity region (u > 20)',
    cfg: tiny(1),
    opts: { dtBias: true, z: true, initialStates: true },
    softplus: true,
    finalGrad: true,
    identityAt: [1, 6, 13],
  },
  {
    name: 'seqIdx: change inside, second row starting at 2',
    cfg: tiny(1),
    opts: { initialStates: true, dtBias: true },
    softplus: true,
    finalGrad: true,
    seqIdx: [0, 0, 1, 1, 1, 2, 2, 2, 3, 3],
  },
  {
    name: 'every option with seqIdx, ngroups 2 < nheads 4',
    cfg: { batch: 2, seqlen: 6, nheads: 4, headdim: 2, ngroups: 2, dstate: 3 },
    opts: { D: 'channel', z: true, dtBias: true, initialStates: true },
    softplus: true,
    limit: [0.012, 0.03],
    finalGrad: true,
    seqIdx: [0, 0, 0, 1, 1, 2, 1, 1, 3, 3, 3, 3],
    clampLow: true,
    clampHigh: true,
  },
];

function buildCase(c: Case, seed: number): RefInputs {
  const { ref } = makeExample(new Random(seed), c.cfg, c.opts);
  const r = inFloat64({ ...ref, dtSoftplus: c.softplus, dtLimit: c.limit });
  if (c.seqIdx) r.seqIdx = Int32Array.from(c.seqIdx);
  if (c.identityAt) {
    const dt = Float64Array.from(r.dt);
    for (const k of c.identityAt) dt[k] = 25;
    r.dt = dt;
  }
  return r;
}

describe('float64 reference backward', () => {
  test.each(cases)('matches central finite differences: $name', (c) => {
    const r = buildCase(c, 11);
    // The case exercises what it says, and no element sits near a kink (clamp bounds, softplus' switch at 20),
    // where central differences would straddle it.
    const regions = stepRegions(r);
    expect(regions.margin).toBeGreaterThan(FINITE_DIFFERENCE_KINK_MARGIN);
    expect(regions.inside).toBeGreaterThan(0);
    if (c.clampLow) expect(regions.low).toBeGreaterThan(0);
    if (c.clampHigh) expect(regions.high).toBeGreaterThan(0);
    if (c.identityAt) expect(regions.identity).toBe(c.identityAt.length);
    if (c.seqIdx) expect(r.seqIdx![0]).toBe(0);

    const { dy, dF } = randomCotangents(r, 99, c.finalGrad);
    const grads = expectMatchesFiniteDifferences(r, dy, dF);

    if (c.clampLow || c.clampHigh) {
      // clamped positions get exactly zero, the others (almost surely) not
      const [lo, hi] = r.dtLimit!;
      for (let k = 0; k < r.dt.length; k++) {
        const head = k % r.nheads;
        const u = r.dt[k] + (r.dtBias ? r.dtBias[head] : 0);
        const v = r.dtSoftplus ? softplus(u) : u;
        if (v < lo || v > hi) expect(grads.ddt[k]).toBe(0);
        else expect(grads.ddt[k]).not.toBe(0);
      }
    }
    if (c.seqIdx && r.initialStates) {
      // a row whose seqIdx starts at a nonzero value never sees its initial states
      const { nheads: h, headdim: p, dstate: n, seqlen: L } = r;
      for (let b = 0; b < r.batch; b++) {
        const row = grads.dInitialStates!.subarray(b * h * p * n, (b + 1) * h * p * n);
        if (r.seqIdx![b * L] !== 0) expect(l2(row)).toBe(0);
        else expect(l2(row)).toBeGreaterThan(0);
      }
    }
  });

  test('dt at exactly the clamp bound passes the gradient', () => {
    const base = { batch: 1, seqlen: 2, nheads: 1, headdim: 1, ngroups: 1, dstate: 1, x: [1, -0.5], A: [-1], B: [1, 0.7], C: [0.3, 1] };
    const atBounds = ssdReferenceBackward({ ...base, dt: [0.1, 0.2], dtLimit: [0.1, 0.2] }, [1, 1]);
    const free = ssdReferenceBackward({ ...base, dt: [0.1, 0.2] }, [1, 1]);
    expect(atBounds.ddt[0]).not.toBe(0);
    expect(atBounds.ddt[1]).not.toBe(0);
    expect(Array.from(atBounds.ddt)).toEqual(Array.from(free.ddt));
    const outside = ssdReferenceBackward({ ...base, dt: [0.05, 0.3], dtLimit: [0.1, 0.2] }, [1, 1]);
    expect(Array.from(outside.ddt)).toEqual([0, 0]);
  });

  test('softplus is exactly the identity above 20, gradient included', () => {
    // Finite differences cannot tell a derivative of 1 from sigmoid(u) = 1 − O(e^−20); bits can. With every
    // u > 20 the forward is the same with and without dtSoftplus, so the backward must be too.
    const { ref } = makeExample(new Random(4), tiny(1), { dtBias: true, z: true, initialStates: true });
    const r = inFloat64(ref);
    r.dt = Float64Array.from(r.dt, (_, k) => 21 + (k % 7));
    r.A = Float64Array.from(r.A, (a) => a / 64); // keep exp(d·A) away from underflow so the decay path counts
    const { dy, dF } = randomCotangents(r, 8, true);
    const on = ssdReferenceBackward({ ...r, dtSoftplus: true }, dy, dF);
    const off = ssdReferenceBackward({ ...r, dtSoftplus: false }, dy, dF);
    expect(l2(on.ddt)).toBeGreaterThan(0);
    for (const key of ['dx', 'ddt', 'dA', 'dB', 'dC', 'dD', 'dz', 'dDtBias', 'dInitialStates'] as const) {
      expect(Array.from(on[key]!)).toEqual(Array.from(off[key]!));
    }
  });

  test('seqlen 1 closed form with every option', () => {
    const x = 0.7, dt = 0.3, A = -1.5, B = 1.3, C = -0.4, D = 0.25, z = 0.9, bias = 0.05, h0 = 2.0, gy = 1.7, gF = -0.6;
    const u = dt + bias;
    const d = Math.log1p(Math.exp(u));
    const sig = (v: number): number => 1 / (1 + Math.exp(-v));
    const e = Math.exp(d * A);
    const H = e * h0 + d * x * B;
    const pre = H * C + D * x;
    const silu = z * sig(z);
    const g = gy * silu;
    const dH = g * C + gF;
    const dd = dH * (A * e * h0 + x * B);
    const grads = ssdReferenceBackward(
      {
        batch: 1, seqlen: 1, nheads: 1, headdim: 1, ngroups: 1, dstate: 1,
        x: [x], dt: [dt], A: [A], B: [B], C: [C], D: [D], z: [z], dtBias: [bias], initialStates: [h0], dtSoftplus: true,
      },
      [gy],
      [gF],
    );
    expect(grads.dz![0]).toBeCloseTo(gy * pre * sig(z) * (1 + z * (1 - sig(z))), FLOAT64_DIGITS);
    expect(grads.dD![0]).toBeCloseTo(g * x, FLOAT64_DIGITS);
    expect(grads.dx[0]).toBeCloseTo(D * g + dH * d * B, FLOAT64_DIGITS);
    expect(grads.dC[0]).toBeCloseTo(g * H, FLOAT64_DIGITS);
    expect(grads.dB[0]).toBeCloseTo(dH * d * x, FLOAT64_DIGITS);
    expect(grads.dA[0]).toBeCloseTo(dH * d * e * h0, FLOAT64_DIGITS);
    expect(grads.ddt[0]).toBeCloseTo(dd * sig(u), FLOAT64_DIGITS);
    expect(grads.dDtBias![0]).toBeCloseTo(dd * sig(u), FLOAT64_DIGITS);
    expect(grads.dInitialStates![0]).toBeCloseTo(dH * e, FLOAT64_DIGITS);
  });

  test('the backward of two halves, chained through the states, is the backward of the whole', () => {
    const cfg: ExampleConfig = { batch: 2, seqlen: 9, nheads: 4, headdim: 3, ngroups: 2, dstate: 2 };
    const { ref } = makeExample(new Random(5), cfg, { D: 'channel', z: true, dtBias: true, initialStates: true });
    const whole: RefInputs = inFloat64({ ...ref, dtSoftplus: true, dtLimit: [0.005, 0.05] });
    // row 0: a sequence change right at the split and one after it; row 1: starts at 1 (no initial state), change before the split
    whole.seqIdx = Int32Array.from([0, 0, 0, 0, 1, 1, 1, 2, 2, 1, 1, 2, 2, 2, 2, 2, 2, 2]);
    const { dy, dF } = randomCotangents(whole, 3, true);

    for (const split of [4, 5]) {
      const { batch: b, seqlen: L, nheads: h, headdim: p, ngroups: g, dstate: n } = whole;
      const slice = (a: ArrayLike<number>, inner: number, t0: number, t1: number): Float64Array => {
        const out = new Float64Array(b * (t1 - t0) * inner);
        for (let bi = 0; bi < b; bi++) {
          for (let t = t0; t < t1; t++) {
            for (let k = 0; k < inner; k++) out[(bi * (t1 - t0) + t - t0) * inner + k] = a[(bi * L + t) * inner + k];
          }
        }
        return out;
      };
      const half = (t0: number, t1: number, initialStates: ArrayLike<number> | undefined): RefInputs => ({
        ...whole,
        seqlen: t1 - t0,
        x: slice(whole.x, h * p, t0, t1),
        z: slice(whole.z!, h * p, t0, t1),
        dt: slice(whole.dt, h, t0, t1),
        B: slice(whole.B, g * n, t0, t1),
        C: slice(whole.C, g * n, t0, t1),
        initialStates,
        // the second half's seqIdx is shifted so that its sequence continuing across the split reads 0
        // (seqIdx_{-1} := 0 stands for the state handed over)
        seqIdx: slice(whole.seqIdx!, 1, t0, t1).map((s, i) => (t0 === 0 ? s : s - whole.seqIdx![Math.floor(i / (t1 - t0)) * L + t0 - 1])),
      });
      const first = half(0, split, whole.initialStates);
      const firstOut = ssdReference(first);
      const second = half(split, L, firstOut.finalStates);

      // the forward chains (sanity of the split itself)
      const wholeOut = ssdReference(whole);
      const secondOut = ssdReference(second);
      expect(relativeL2(secondOut.finalStates, wholeOut.finalStates)).toBeLessThan(FLOAT64_SPLIT_BOUND);
      expect(relativeL2(join(firstOut.y, secondOut.y, b, split, L - split, h * p), wholeOut.y)).toBeLessThan(FLOAT64_SPLIT_BOUND);

      const gWhole = ssdReferenceBackward(whole, dy, dF);
      const gSecond = ssdReferenceBackward(second, slice(dy, h * p, split, L), dF);
      const gFirst = ssdReferenceBackward(first, slice(dy, h * p, 0, split), gSecond.dInitialStates);

      const expectClose = (a: ArrayLike<number>, e: ArrayLike<number>): void => {
        expect(allFinite(a)).toBe(true);
        expect(l2(e)).toBeGreaterThan(0);
        expect(relativeL2(a, e)).toBeLessThan(FLOAT64_ROUTE_BOUND);
      };
      expectClose(join(gFirst.dx, gSecond.dx, b, split, L - split, h * p), gWhole.dx);
      expectClose(join(gFirst.dz!, gSecond.dz!, b, split, L - split, h * p), gWhole.dz!);
      expectClose(join(gFirst.ddt, gSecond.ddt, b, split, L - split, h), gWhole.ddt);
      expectClose(join(gFirst.dB, gSecond.dB, b, split, L - split, g * n), gWhole.dB);
      expectClose(join(gFirst.dC, gSecond.dC, b, split, L - split, g * n), gWhole.dC);
      expectClose(add(gFirst.dA, gSecond.dA), gWhole.dA);
      expectClose(add(gFirst.dD!, gSecond.dD!), gWhole.dD!);
      expectClose(add(gFirst.dDtBias!, gSecond.dDtBias!), gWhole.dDtBias!);
      expectClose(gFirst.dInitialStates!, gWhole.dInitialStates!);
    }
  });

  // Speed is a benchmark's business, not a unit test's: this only checks a large case is finite and nonzero.
  test('b·L·h·p·n of about 1e6 with every option gives finite, nonzero gradients', () => {
    const cfg: ExampleConfig = { batch: 2, seqlen: 1024, nheads: 8, headdim: 16, ngroups: 2, dstate: 4 };
    const { ref } = makeExample(new Random(1), cfg, { D: 'channel', z: true, dtBias: true, initialStates: true, seqStarts: [300, 700] });
    const r: RefInputs = { ...ref, dtSoftplus: true, dtLimit: [0.001, 0.1] };
    const { dy, dF } = randomCotangents(r, 2, true);
    const grads = ssdReferenceBackward(r, dy, dF);
    for (const key of ['dx', 'ddt', 'dA', 'dB', 'dC', 'dD', 'dz', 'dDtBias', 'dInitialStates'] as const) {
      expect(allFinite(grads[key]!)).toBe(true);
      expect(l2(grads[key]!)).toBeGreaterThan(0);
    }
  });
});

/** Concatenates two (b, L1, inner) and (b, L2, inner) arrays along L. */
function join(a: ArrayLike<number>, c: ArrayLike<number>, b: number, L1: number, L2: number, inner: number): Float64Array {
  const out = new Float64Array(b * (L1 + L2) * inner);
  for (let bi = 0; bi < b; bi++) {
    for (let k = 0; k < L1 * inner; k++) out[bi * (L1 + L2) * inner + k] = a[bi * L1 * inner + k];
    for (let k = 0; k < L2 * inner; k++) out[(bi * (L1 + L2) + L1) * inner + k] = c[bi * L2 * inner + k];
  }
  return out;
}

function add(a: ArrayLike<number>, c: ArrayLike<number>): Float64Array {
  return Float64Array.from(a, (v, i) => v + c[i]);
}
