/**
 * The float64 reference of the decode step, and seeded step examples for tests, `check` and the
 * benchmark. The step is the token recurrence of lib/reference.ts at seqlen 1 with the stepped
 * state rows as initial states, so it is computed by that one reference: rows are gathered by
 * stateIndices, advanced by ssdReference, and scattered back; padding entries give zeros.
 */
import { Tensor, type FloatType } from './tensor';
import { makeExample, type Random } from './examples';
import { ssdReference, type RefInputs } from './reference';
import type { StepSizes, StepStateDtype } from './rules';
import type { SsdStepInputs } from './validate-step';

export interface RefStepInputs extends StepSizes {
  /** rows of the state cache */
  stateRows: number;
  state: ArrayLike<number>; // (stateRows, h, p, n)
  stateIndices?: ArrayLike<number>; // (b); negative: padding
  x: ArrayLike<number>; // (b, h, p)
  dt: ArrayLike<number>; // (b, h)
  A: ArrayLike<number>; // (h)
  B: ArrayLike<number>; // (b, g, n)
  C: ArrayLike<number>; // (b, g, n)
  D?: ArrayLike<number>; // (h) or (h, p)
  dPerChannel?: boolean;
  z?: ArrayLike<number>; // (b, h, p)
  dtBias?: ArrayLike<number>; // (h)
  dtSoftplus?: boolean;
  dtLimit?: [number, number];
}

export interface RefStepOutputs {
  y: Float64Array; // (b, h, p)
  state: Float64Array; // (stateRows, h, p, n): the whole cache after the step
}

export function ssdStepReference(r: RefStepInputs): RefStepOutputs {
  const { batch, nheads: h, headdim: p, dstate: n } = r;
  const rowSize = h * p * n;
  const state = Float64Array.from(r.state);
  const y = new Float64Array(batch * h * p);
  const rowOf = (b: number): number => (r.stateIndices ? r.stateIndices[b] : b);
  const live = Array.from({ length: batch }, (_, b) => b).filter((b) => rowOf(b) >= 0);
  if (live.length === 0) return { y, state };
  // seqlen 1: the (b, 1, h, p) layouts of the scan are the (b, h, p) layouts of the step.
  const pick = (a: ArrayLike<number>, inner: number): Float64Array => {
    const out = new Float64Array(live.length * inner);
    live.forEach((b, i) => {
      for (let j = 0; j < inner; j++) out[i * inner + j] = a[b * inner + j];
    });
    return out;
  };
  const initial = new Float64Array(live.length * rowSize);
  live.forEach((b, i) => initial.set(state.subarray(rowOf(b) * rowSize, (rowOf(b) + 1) * rowSize), i * rowSize));
  const scan: RefInputs = {
    batch: live.length,
    seqlen: 1,
    nheads: h,
    headdim: p,
    ngroups: r.ngroups,
    dstate: n,
    x: pick(r.x, h * p),
    dt: pick(r.dt, h),
    A: r.A,
    B: pick(r.B, r.ngroups * n),
    C: pick(r.C, r.ngroups * n),
    D: r.D,
    dPerChannel: r.dPerChannel,
    z: r.z ? pick(r.z, h * p) : undefined,
    dtBias: r.dtBias,
    initialStates: initial,
    dtSoftplus: r.dtSoftplus,
    dtLimit: r.dtLimit,
  };
  const out = ssdReference(scan);
  live.forEach((b, i) => {
    y.set(out.y.subarray(i * h * p, (i + 1) * h * p), b * h * p);
    state.set(out.finalStates.subarray(i * rowSize, (i + 1) * rowSize), rowOf(b) * rowSize);
  });
  return { y, state };
}

export interface StepExampleConfig extends StepSizes {
  /** rows of the state cache (default batch) */
  stateRows?: number;
}

export interface StepExampleOptions {
  /** dtype of x, z, B, C and dt (default float32) */
  dtype?: FloatType;
  /** the state's dtype (default float32) */
  stateType?: StepStateDtype;
  D?: 'none' | 'head' | 'channel';
  z?: boolean;
  dtBias?: boolean;
  /** the row of the cache each batch entry steps; negative for padding */
  stateIndices?: number[];
  /** store dt already through softplus (for calls without dtSoftplus) */
  positiveDt?: boolean;
  /** shift added to raw dt */
  dtShift?: number;
}

export interface StepExample {
  state: Tensor;
  inputs: SsdStepInputs;
  ref: RefStepInputs;
}

/** Drops the seqlen axis (of size 1) of a (b, 1, ...) tensor. */
function squeeze(t: Tensor): Tensor {
  return new Tensor(t.type, t.data, [t.dims[0], ...t.dims.slice(2)]);
}

/**
 * Random step inputs with the scales of lib/examples.ts (they are a seqlen-1 example) and a random
 * state cache (0.5·N(0, 1), rounded to its dtype; the reference gets the rounded values).
 */
export function makeStepExample(rng: Random, c: StepExampleConfig, o: StepExampleOptions = {}): StepExample {
  const { batch: b, nheads: h, headdim: p, ngroups: g, dstate: n } = c;
  const rows = c.stateRows ?? b;
  const ex = makeExample(rng, { batch: b, seqlen: 1, nheads: h, headdim: p, ngroups: g, dstate: n }, {
    dtype: o.dtype,
    D: o.D,
    z: o.z,
    dtBias: o.dtBias,
    positiveDt: o.positiveDt,
    dtShift: o.dtShift,
  });
  const inputs: SsdStepInputs = {
    x: squeeze(ex.inputs.x),
    dt: squeeze(ex.inputs.dt),
    A: ex.inputs.A,
    B: squeeze(ex.inputs.B),
    C: squeeze(ex.inputs.C),
  };
  if (ex.inputs.D) inputs.D = ex.inputs.D;
  if (ex.inputs.z) inputs.z = squeeze(ex.inputs.z);
  if (ex.inputs.dtBias) inputs.dtBias = ex.inputs.dtBias;
  const state = Tensor.fromFloat32(o.stateType ?? 'float32', rng.normals(rows * h * p * n, 0.5), [rows, h, p, n]);
  const ref: RefStepInputs = {
    batch: b,
    nheads: h,
    headdim: p,
    ngroups: g,
    dstate: n,
    stateRows: rows,
    state: Float32Array.from(state.toFloat32()), // a copy: the step writes the tensor in place
    x: ex.ref.x,
    dt: ex.ref.dt,
    A: ex.ref.A,
    B: ex.ref.B,
    C: ex.ref.C,
    D: ex.ref.D,
    dPerChannel: ex.ref.dPerChannel,
    z: ex.ref.z,
    dtBias: ex.ref.dtBias,
  };
  if (o.stateIndices) {
    const indices = Int32Array.from(o.stateIndices);
    inputs.stateIndices = new Tensor('int32', indices, [b]);
    ref.stateIndices = indices;
  }
  return { state, inputs, ref };
}
