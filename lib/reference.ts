/**
 * The float64 reference: the token-level recurrence of §1 of the spec, with every option.
 * Every implementation is tested against this, never only against another fast path; it ships
 * in lib/ because `ssd-kernels check` uses it too. Inputs are plain arrays of values (already
 * rounded to the input dtype where that matters); all arithmetic is float64.
 */
import type { ScanSizes } from './rules';

// Math's functions bound once: the hot loops below then read no global, which costs much more
// inside a vm context such as jest's.
const { exp, floor, log1p, max, min, sqrt } = Math;
const finite = Number.isFinite;

export interface RefInputs extends ScanSizes {
  x: ArrayLike<number>; // (b, L, h, p)
  dt: ArrayLike<number>; // (b, L, h)
  A: ArrayLike<number>; // (h)
  B: ArrayLike<number>; // (b, L, g, n)
  C: ArrayLike<number>; // (b, L, g, n)
  D?: ArrayLike<number>; // (h) or (h, p)
  dPerChannel?: boolean;
  z?: ArrayLike<number>; // (b, L, h, p)
  dtBias?: ArrayLike<number>; // (h)
  initialStates?: ArrayLike<number>; // (b, h, p, n)
  seqIdx?: ArrayLike<number>; // (b, L)
  dtSoftplus?: boolean;
  dtLimit?: [number, number];
}

export interface RefOutputs {
  y: Float64Array; // (b, L, h, p)
  finalStates: Float64Array; // (b, h, p, n)
  yUngated?: Float64Array; // with z: y before the gate (b, L, h, p)
}

/** softplus(u) = log(1 + exp(u)), the identity above 20 (as the standard kernels do). */
export function softplus(u: number): number {
  return u > 20 ? u : log1p(exp(u));
}

/**
 * The step size d_t of §1: clamp(sp(dt + dtBias), lo, hi). A NaN stays NaN (Math.max and Math.min
 * return NaN when either argument is NaN), as every path of the package keeps it.
 */
export function stepSize(dt: number, bias: number, dtSoftplus: boolean, lo: number, hi: number): number {
  const u = dt + bias;
  const v = dtSoftplus ? softplus(u) : u;
  return min(max(v, lo), hi);
}

export function ssdReference(r: RefInputs): RefOutputs {
  const { batch, seqlen: L, nheads: h, headdim: p, ngroups: g, dstate: n } = r;
  const [lo, hi] = r.dtLimit ?? [0, Infinity];
  const headsPerGroup = h / g;
  const y = new Float64Array(batch * L * h * p);
  const finalStates = new Float64Array(batch * h * p * n);
  const yUngated = r.z ? new Float64Array(y.length) : undefined;
  const H = new Float64Array(p * n);

  for (let b = 0; b < batch; b++) {
    for (let head = 0; head < h; head++) {
      const group = floor(head / headsPerGroup);
      const stateBase = (b * h + head) * p * n;
      for (let i = 0; i < p * n; i++) H[i] = r.initialStates ? r.initialStates[stateBase + i] : 0;
      let previousSeq = 0; // seqIdx_{-1} := 0
      for (let t = 0; t < L; t++) {
        const d = stepSize(r.dt[(b * L + t) * h + head], r.dtBias ? r.dtBias[head] : 0, r.dtSoftplus ?? false, lo, hi);
        if (r.seqIdx) {
          // a new sequence starts from a zero state: the old one is dropped, not multiplied by 0,
          // so that a NaN or infinity in one sequence does not reach the next
          const s = r.seqIdx[b * L + t];
          if (s !== previousSeq) H.fill(0);
          previousSeq = s;
        }
        const decay = exp(d * r.A[head]);
        const xBase = ((b * L + t) * h + head) * p;
        const bcBase = ((b * L + t) * g + group) * n;
        for (let i = 0; i < p; i++) {
          const dx = d * r.x[xBase + i];
          let acc = 0;
          for (let j = 0; j < n; j++) {
            const v = decay * H[i * n + j] + dx * r.B[bcBase + j];
            H[i * n + j] = v;
            acc += v * r.C[bcBase + j];
          }
          if (r.D) acc += (r.dPerChannel ? r.D[head * p + i] : r.D[head]) * r.x[xBase + i];
          if (r.z) {
            yUngated![xBase + i] = acc;
            const zv = r.z[xBase + i];
            acc *= zv / (1 + exp(-zv));
          }
          y[xBase + i] = acc;
        }
      }
      finalStates.set(H, stateBase);
    }
  }
  return yUngated ? { y, finalStates, yUngated } : { y, finalStates };
}

/** ‖a − b‖, in float64. */
export function distanceL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`);
  let num = 0;
  for (let i = 0; i < a.length; i++) num += (a[i] - b[i]) ** 2;
  return sqrt(num);
}

/** ‖a − b‖ / ‖b‖, with both norms in float64. */
export function relativeL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  return distanceL2(a, b) / l2(b);
}

export function l2(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * a[i];
  return sqrt(s);
}

export function allFinite(a: ArrayLike<number>): boolean {
  for (let i = 0; i < a.length; i++) if (!finite(a[i])) return false;
  return true;
}
