/**
 * Seeded random inputs with realistic scales, for tests, `ssd-kernels check` and the benchmark:
 * x, B, C, z ~ N(0, 1); raw dt = randn − 4 fed through softplus (so d ≈ softplus(randn − 4));
 * A = −exp(U(log 1, log 16)); D ~ N(0, 1); dtBias ~ 0.1·N(0, 1). Each tensor is rounded to its
 * dtype, and the reference inputs are the rounded values, so that a check measures the kernel's
 * error and not the input rounding.
 */
import { Tensor, type FloatType } from './tensor';
import type { SsdInputs, SsdOptions } from './validate';
import { relativeL2, softplus, type RefInputs } from './reference';
import type { ScanSizes } from './rules';

// Math's functions bound once: the hot loops below then read no global, which costs much more
// inside a vm context such as jest's.
const { cos, exp, imul, log, sin, sqrt, PI } = Math;
const TWO_PI = 2 * PI;

/** A small, fast, seedable generator (mulberry32) with Box–Muller normals. */
export class Random {
  #state: number;
  #spare: number | undefined;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  uniform(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = imul(t ^ (t >>> 15), t | 1);
    t ^= t + imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  normal(): number {
    if (this.#spare !== undefined) {
      const s = this.#spare;
      this.#spare = undefined;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = sqrt(-2 * log(u));
    this.#spare = r * sin(TWO_PI * v);
    return r * cos(TWO_PI * v);
  }

  normals(count: number, scale = 1, shift = 0): Float32Array {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = shift + scale * this.normal();
    return out;
  }
}

/** The sizes of an example. */
export type ExampleConfig = ScanSizes;

export interface ExampleOptions {
  /** dtype of x, z, B, C and dt (default float32) */
  dtype?: FloatType;
  /** 'none', 'head' (h) or 'channel' (h, p); default 'head' */
  D?: 'none' | 'head' | 'channel';
  z?: boolean;
  dtBias?: boolean;
  initialStates?: boolean;
  /** seqIdx row: the positions where a new sequence starts (the first value may be nonzero) */
  seqStarts?: number[];
  /** the value of seqIdx at position 0 (default 0) */
  seqFirst?: number;
  /** shift added to raw dt (to force exp underflow, for instance) */
  dtShift?: number;
  /** store dt already through softplus (for calls without dtSoftplus); default false */
  positiveDt?: boolean;
}

export interface Example {
  inputs: SsdInputs;
  ref: RefInputs;
}

/** Rounds float32 values to `dtype` and back, returning the tensor and the rounded values. */
function rounded(type: FloatType, values: Float32Array, dims: number[]): { tensor: Tensor; values: Float32Array } {
  const tensor = Tensor.fromFloat32(type, values, dims);
  return { tensor, values: tensor.toFloat32() };
}

export function makeExample(rng: Random, c: ExampleConfig, o: ExampleOptions = {}): Example {
  const dtype = o.dtype ?? 'float32';
  const { batch: b, seqlen: L, nheads: h, headdim: p, ngroups: g, dstate: n } = c;
  const x = rounded(dtype, rng.normals(b * L * h * p), [b, L, h, p]);
  const rawDt = rng.normals(b * L * h, 1, -4 + (o.dtShift ?? 0));
  if (o.positiveDt) for (let i = 0; i < rawDt.length; i++) rawDt[i] = softplus(rawDt[i]);
  const dt = rounded(dtype, rawDt, [b, L, h]);
  const A = new Float32Array(h);
  for (let i = 0; i < h; i++) A[i] = -exp(rng.uniform() * log(16));
  const B = rounded(dtype, rng.normals(b * L * g * n), [b, L, g, n]);
  const C = rounded(dtype, rng.normals(b * L * g * n), [b, L, g, n]);

  const inputs: SsdInputs = { x: x.tensor, dt: dt.tensor, A: new Tensor('float32', A, [h]), B: B.tensor, C: C.tensor };
  const ref: RefInputs = { ...c, x: x.values, dt: dt.values, A, B: B.values, C: C.values };

  const dMode = o.D ?? 'head';
  if (dMode !== 'none') {
    const dims = dMode === 'channel' ? [h, p] : [h];
    const D = rng.normals(dMode === 'channel' ? h * p : h);
    inputs.D = new Tensor('float32', D, dims);
    ref.D = D;
    ref.dPerChannel = dMode === 'channel';
  }
  if (o.z) {
    const z = rounded(dtype, rng.normals(b * L * h * p), [b, L, h, p]);
    inputs.z = z.tensor;
    ref.z = z.values;
  }
  if (o.dtBias) {
    const bias = rng.normals(h, 0.1);
    inputs.dtBias = new Tensor('float32', bias, [h]);
    ref.dtBias = bias;
  }
  if (o.initialStates) {
    const s = rng.normals(b * h * p * n, 0.5);
    inputs.initialStates = new Tensor('float32', s, [b, h, p, n]);
    ref.initialStates = s;
  }
  if (o.seqStarts !== undefined || o.seqFirst !== undefined) {
    const seq = new Int32Array(b * L);
    for (let bi = 0; bi < b; bi++) {
      let value = o.seqFirst ?? 0;
      for (let t = 0; t < L; t++) {
        if (t > 0 && (o.seqStarts ?? []).includes(t)) value += 1;
        seq[bi * L + t] = value;
      }
    }
    inputs.seqIdx = new Tensor('int32', seq, [b, L]);
    ref.seqIdx = seq;
  }
  return { inputs, ref };
}

/** Copies the reference-relevant options (dtSoftplus, dtLimit) from ssd() options. */
export function withOptions(ref: RefInputs, options: SsdOptions): RefInputs {
  return {
    ...ref,
    dtSoftplus: options.dtSoftplus ?? false,
    dtLimit: options.dtLimit ? [options.dtLimit[0], options.dtLimit[1]] : undefined,
  };
}

/** The relative L2 error of rounding `values` to `type`: what a 16-bit output loses on the way out. */
export function roundingError(type: FloatType, values: Float64Array): number {
  if (type === 'float32') return 0;
  return relativeL2(Tensor.fromFloat32(type, Float32Array.from(values)).toFloat32(), values);
}
