/**
 * The property-based fuzzer (fast-check), shared by the CPU suite (test/fuzz.test.ts) and the GPU
 * suite (test/cuda/fuzz.cuda.test.ts): arbitraries that describe one call (sizes, dtypes, every
 * option, packing), builders that turn a description into seeded tensors at realistic scales and
 * the float64 reference's inputs, checks of the results against the float64 references (the token
 * recurrence, its reverse, and the step), and a runner with the CI budget and replay hints.
 *
 * A case is a plain object (printed as the counterexample when a property fails): the tensors come
 * from its `seed` through lib/examples.ts (x, B, C, z ~ N(0, 1); dt = softplus(randn − 4) after
 * dtSoftplus; A = −exp(U(0, log 16)) < 0; D ~ N(0, 1); dtBias ~ 0.1·N(0, 1)), so a case is its own
 * reproduction. Budget (environment, read by the runner):
 *   (none)               the CI default: a fixed number of cases from a fixed seed (the same cases every run)
 *   SSD_FUZZ_RUNS=N      N cases per property instead of the CI default, from a fresh seed
 *   SSD_FUZZ_SECONDS=S   as many cases as S seconds allow, per property, from a fresh seed
 *   SSD_FUZZ_SEED=s      replay a run (with SSD_FUZZ_PATH=p, only the failing case and its shrinks)
 */
import fc from 'fast-check';
import { Tensor, type FloatType, type SsdGrads, type SsdInputs, type SsdOptions, type SsdResult } from '../lib/index';
import { makeStepExample, ssdStepReference, type RefStepInputs } from '../lib/reference-step';
import { ssdReferenceBackward, type RefAbsSums, type RefGrads } from '../lib/reference-backward';
import { GRAD_INPUT, GRAD_NAMES, type SsdGradName } from '../lib/validate-backward';
import type { SsdStepInputs, SsdStepOptions } from '../lib/step';
import { ROUNDING_ALLOWANCE } from '../lib/tolerances';
import { Random, allFinite, distanceL2, l2, makeExample, relativeL2, roundingError, softplus, ssdReference, type RefInputs } from './reference';

const FLOAT_TYPES: readonly FloatType[] = ['float32', 'bfloat16', 'float16'];
/** The seed of the default budget's cases (see runProperty). */
const CI_SEED = 20261206;
const CHUNK_SIZES = [16, 32, 64, 128, 256] as const;

// ---- Describing a call ---------------------------------------------------------------------------

/**
 * How the sequences of a row are packed. Positions are given in thousandths of seqlen (so that a
 * case shrinks independently of its length): seqIdx changes at each start, cuSeqlens cuts the one
 * row at each cut (equal cuts: empty sequences).
 */
export type Packing = { kind: 'none' } | { kind: 'seqIdx'; first: number; starts: number[] } | { kind: 'cuSeqlens'; cuts: number[] };

/** dtLimit as quantiles (thousandths) of the call's step sizes; null: that side unclamped (0, ∞). */
export interface LimitCase {
  lo: number | null;
  hi: number | null;
}

/** The dtypes of the inputs that may differ from x's (null: dt, B, C and z have x's, the rest float32). */
export interface MixedTypes {
  dt: FloatType;
  B: FloatType;
  C: FloatType;
  z: FloatType;
  A: FloatType;
  D: FloatType;
  dtBias: FloatType;
  initialStates: FloatType;
}

/** One ssd() / ssdBackward() call. */
export interface ScanCase {
  batch: number;
  seqlen: number;
  ngroups: number;
  headsPerGroup: number;
  headdim: number;
  dstate: number;
  chunkSize: number;
  dtype: FloatType;
  mixed: MixedTypes | null;
  D: 'none' | 'head' | 'channel';
  z: boolean;
  dtBias: boolean;
  dtSoftplus: boolean;
  dtLimit: LimitCase | null;
  initialStates: boolean;
  pack: Packing;
  returnFinalStates: boolean;
  returnVarlenStates: boolean;
  returnUngated: boolean;
  /** pass preallocated outputs (options.out), filled with NaN */
  out: boolean;
  /** the calling-thread call (ssdSync, ssdBackwardSync) instead of the Promise one (CPU only) */
  sync: boolean;
  /** options.threads (0: the default) */
  threads: number;
  /** the backward's dFinalStates, of this type (null: none) */
  dFinalStates: FloatType | null;
  /** GPU suite: device tensors in (outputs stay on the device) instead of host tensors */
  onDevice: boolean;
  seed: number;
}

const permille = fc.integer({ min: 0, max: 1000 });
const floatType = fc.constantFrom<FloatType>(...FLOAT_TYPES);
/** null (the given share of the time, in quarters) or a value of `arbitrary`. */
function sometimes<T>(arbitrary: fc.Arbitrary<T>, nullQuarters: number): fc.Arbitrary<T | null> {
  return fc.oneof({ arbitrary: fc.constant(null), weight: nullQuarters }, { arbitrary, weight: 4 - nullQuarters });
}

const limit: fc.Arbitrary<LimitCase | null> = sometimes(fc.record({ lo: fc.option(permille), hi: fc.option(permille) }), 2);

/** Lengths from 1 to a few hundred, mostly short (the reference's cost grows with every size). */
const seqlen = fc.oneof({ arbitrary: fc.integer({ min: 1, max: 40 }), weight: 3 }, { arbitrary: fc.integer({ min: 1, max: 320 }), weight: 1 });
const width = fc.oneof({ arbitrary: fc.integer({ min: 1, max: 17 }), weight: 3 }, { arbitrary: fc.integer({ min: 1, max: 48 }), weight: 1 });

const packing: fc.Arbitrary<Packing> = fc.oneof(
  fc.constant<Packing>({ kind: 'none' }),
  fc.record({ kind: fc.constant('seqIdx' as const), first: fc.integer({ min: 0, max: 2 }), starts: fc.array(permille, { maxLength: 5 }) }),
  fc.record({ kind: fc.constant('cuSeqlens' as const), cuts: fc.array(permille, { maxLength: 6 }) }),
);

/** Mixed dtypes in a quarter of the cases. */
const mixed: fc.Arbitrary<MixedTypes | null> = sometimes(
  fc.record({ dt: floatType, B: floatType, C: floatType, z: floatType, A: floatType, D: floatType, dtBias: floatType, initialStates: floatType }),
  3,
);

/** Makes a description consistent: cuSeqlens takes batch 1 and no initialStates; returnVarlenStates needs cuSeqlens, returnUngated z. */
function normalize(c: ScanCase): ScanCase {
  const packed = c.pack.kind === 'cuSeqlens';
  return {
    ...c,
    batch: packed ? 1 : c.batch,
    initialStates: packed ? false : c.initialStates,
    returnVarlenStates: packed && c.returnVarlenStates,
    returnUngated: c.z && c.returnUngated,
  };
}

/** Every call of ssd() and ssdBackward() the API takes, at small sizes. */
export const scanCase: fc.Arbitrary<ScanCase> = fc
  .record({
    batch: fc.integer({ min: 1, max: 3 }),
    seqlen,
    ngroups: fc.integer({ min: 1, max: 3 }),
    headsPerGroup: fc.integer({ min: 1, max: 3 }),
    headdim: width,
    dstate: width,
    chunkSize: fc.constantFrom(...CHUNK_SIZES),
    dtype: floatType,
    mixed,
    D: fc.constantFrom('none' as const, 'head' as const, 'channel' as const),
    z: fc.boolean(),
    dtBias: fc.boolean(),
    dtSoftplus: fc.boolean(),
    dtLimit: limit,
    initialStates: fc.boolean(),
    pack: packing,
    returnFinalStates: fc.boolean(),
    returnVarlenStates: fc.boolean(),
    returnUngated: fc.boolean(),
    out: fc.boolean(),
    sync: fc.boolean(),
    threads: fc.constantFrom(0, 1, 2, 3),
    dFinalStates: fc.option(floatType),
    onDevice: fc.boolean(),
    seed: fc.integer({ min: 0, max: 0x7fffffff }),
  })
  .map(normalize);

/** One ssdStep() call. */
export interface StepCase {
  batch: number;
  /** rows of the cache beyond batch (with stateIndices) */
  extraRows: number;
  /** stateIndices: a seeded permutation of the rows, these thousandths of the entries padding (−1); null: none */
  indices: { padding: number } | null;
  ngroups: number;
  headsPerGroup: number;
  headdim: number;
  dstate: number;
  dtype: FloatType;
  stateType: 'float32' | 'bfloat16';
  D: 'none' | 'head' | 'channel';
  z: boolean;
  dtBias: boolean;
  dtSoftplus: boolean;
  dtLimit: LimitCase | null;
  out: boolean;
  sync: boolean;
  threads: number;
  onDevice: boolean;
  seed: number;
}

export const stepCase: fc.Arbitrary<StepCase> = fc.record({
  batch: fc.integer({ min: 1, max: 6 }),
  extraRows: fc.integer({ min: 0, max: 3 }),
  indices: fc.option(fc.record({ padding: fc.integer({ min: 0, max: 1000 }) })),
  ngroups: fc.integer({ min: 1, max: 3 }),
  headsPerGroup: fc.integer({ min: 1, max: 3 }),
  headdim: width,
  dstate: fc.oneof({ arbitrary: width, weight: 3 }, { arbitrary: fc.integer({ min: 1, max: 160 }), weight: 1 }),
  dtype: floatType,
  stateType: fc.constantFrom('float32' as const, 'bfloat16' as const),
  D: fc.constantFrom('none' as const, 'head' as const, 'channel' as const),
  z: fc.boolean(),
  dtBias: fc.boolean(),
  dtSoftplus: fc.boolean(),
  dtLimit: limit,
  out: fc.boolean(),
  sync: fc.boolean(),
  threads: fc.constantFrom(0, 1, 2, 3),
  onDevice: fc.boolean(),
  seed: fc.integer({ min: 0, max: 0x7fffffff }),
});

// ---- Building the tensors and the reference's inputs ---------------------------------------------

/** Positions (thousandths of L) as sorted distinct positions in [lo, hi]. */
function positions(thousandths: readonly number[], L: number, lo: number, hi: number): number[] {
  const at = thousandths.map((q) => Math.min(hi, Math.max(lo, Math.floor((q * (L + 1)) / 1001))));
  return [...new Set(at)].sort((a, b) => a - b);
}

/**
 * A float32 value for a clamp bound at quantile q (thousandths) of the step sizes `v` (before the
 * clamp), placed in a gap between two of them: no step size lies within 1e-3 (relative) of a bound,
 * so that the float32 kernels and the float64 reference agree on which steps the clamp holds (the
 * gradient jumps there). Only non-negative bounds: a negative step size would make exp(d·A) grow.
 */
function boundAt(v: readonly number[], q: number): number {
  const sorted = v.filter((x) => x > 0).sort((a, b) => a - b);
  if (sorted.length === 0) return 0;
  const start = Math.min(sorted.length - 1, Math.floor((q * sorted.length) / 1001));
  for (let k = 0; k < sorted.length; k++) {
    for (const i of [start + k, start - k]) {
      if (i < 0 || i >= sorted.length) continue;
      const below = sorted[i];
      const above = i + 1 < sorted.length ? sorted[i + 1] : 2 * below;
      if (above - below > 4e-3 * above) {
        const bound = Math.fround((below + above) / 2);
        if (Math.abs(bound - below) > 1e-3 * above && Math.abs(above - bound) > 1e-3 * above) return bound;
      }
    }
  }
  return Math.fround(sorted[0] / 2);
}

/** dtLimit for a case: [lo, hi] with both at gaps among the step sizes `v`, or undefined. */
function dtLimitOf(limitCase: LimitCase | null, v: readonly number[]): [number, number] | undefined {
  if (limitCase === null) return undefined;
  let lo = limitCase.lo === null ? 0 : boundAt(v, limitCase.lo);
  let hi = limitCase.hi === null ? Infinity : boundAt(v, limitCase.hi);
  if (lo > hi) [lo, hi] = [hi, lo];
  return [lo, hi];
}

/** The step sizes before the clamp, sp(dt + dtBias), of every (position, head) of dt (…, h). */
function stepSizes(dt: ArrayLike<number>, bias: ArrayLike<number> | undefined, h: number, dtSoftplus: boolean): number[] {
  const out: number[] = [];
  for (let i = 0; i < dt.length; i++) {
    const u = dt[i] + (bias ? bias[i % h] : 0);
    out.push(dtSoftplus ? softplus(u) : u);
  }
  return out;
}

/** A tensor rounded to `type`; the reference reads the rounded values. */
function cast(t: Tensor, type: FloatType): { tensor: Tensor; values: Float32Array } {
  const tensor = Tensor.fromFloat32(type, t.toFloat32(), t.dims);
  return { tensor, values: tensor.toFloat32() };
}

export interface BuiltScan {
  inputs: SsdInputs;
  /** the options of the call, without device, out and threads */
  options: SsdOptions;
  /** the reference's inputs, options included (a cuSeqlens call: its equivalent seqIdx) */
  ref: RefInputs;
  /** the offsets of a cuSeqlens call */
  cu?: Int32Array;
  dy: Tensor;
  dFinalStates?: Tensor;
}

export function nheadsOf(c: { ngroups: number; headsPerGroup: number }): number {
  return c.ngroups * c.headsPerGroup;
}

/** The seeded tensors of a case, its options, and the float64 reference's inputs. */
export function buildScan(c: ScanCase): BuiltScan {
  const rng = new Random(c.seed);
  const h = nheadsOf(c);
  const config = { batch: c.batch, seqlen: c.seqlen, nheads: h, headdim: c.headdim, ngroups: c.ngroups, dstate: c.dstate };
  const L = c.seqlen;
  const pack = c.pack;
  const example = makeExample(rng, config, {
    dtype: 'float32',
    D: c.D,
    z: c.z,
    dtBias: c.dtBias,
    initialStates: c.initialStates,
    positiveDt: !c.dtSoftplus,
    ...(pack.kind === 'seqIdx' ? { seqFirst: pack.first, seqStarts: positions(pack.starts, L, 1, L - 1) } : {}),
  });
  const inputs: SsdInputs = { ...example.inputs };
  const ref: RefInputs = { ...example.ref };
  const types: MixedTypes = c.mixed ?? { dt: c.dtype, B: c.dtype, C: c.dtype, z: c.dtype, A: 'float32', D: 'float32', dtBias: 'float32', initialStates: 'float32' };
  const rounded = (name: 'x' | 'dt' | 'B' | 'C' | 'z' | 'A' | 'D' | 'dtBias' | 'initialStates', type: FloatType): void => {
    const t = inputs[name];
    if (t === undefined) return;
    const r = cast(t, type);
    inputs[name] = r.tensor;
    ref[name] = r.values;
  };
  rounded('x', c.dtype);
  for (const name of ['dt', 'B', 'C', 'z', 'A', 'D', 'dtBias', 'initialStates'] as const) rounded(name, types[name]);

  let cu: Int32Array | undefined;
  if (pack.kind === 'cuSeqlens') {
    // cuts may repeat (empty sequences) and sit at 0 or L (an empty first or last sequence)
    cu = Int32Array.from([0, ...pack.cuts.map((q) => Math.min(L, Math.floor((q * (L + 1)) / 1001))).sort((a, b) => a - b), L]);
    inputs.cuSeqlens = new Tensor('int32', cu, [cu.length]);
    const seq = new Int32Array(L);
    for (let k = 0; k + 1 < cu.length; k++) seq.fill(k, cu[k], cu[k + 1]);
    ref.seqIdx = seq;
  }

  const options: SsdOptions = { chunkSize: c.chunkSize, dtSoftplus: c.dtSoftplus };
  const dtLimit = dtLimitOf(c.dtLimit, stepSizes(ref.dt, ref.dtBias, h, c.dtSoftplus));
  if (dtLimit) options.dtLimit = dtLimit;
  if (c.returnFinalStates) options.returnFinalStates = true;
  if (c.returnVarlenStates) options.returnVarlenStates = true;
  if (c.returnUngated) options.returnUngated = true;
  ref.dtSoftplus = c.dtSoftplus;
  ref.dtLimit = dtLimit;

  const { batch: b, headdim: p, dstate: n } = c;
  const dy = Tensor.fromFloat32(c.dtype, rng.normals(b * L * h * p), [b, L, h, p]);
  const built: BuiltScan = { inputs, options, ref, dy };
  if (cu) built.cu = cu;
  if (c.dFinalStates) built.dFinalStates = Tensor.fromFloat32(c.dFinalStates, rng.normals(b * h * p * n), [b, h, p, n]);
  return built;
}

/** options.out for a forward: NaN-filled tensors of every output the call returns. */
export function forwardOut(c: ScanCase, built: BuiltScan): NonNullable<SsdOptions['out']> {
  const h = nheadsOf(c);
  const { batch: b, seqlen: L, headdim: p, dstate: n } = c;
  const filled = (type: FloatType, dims: number[]): Tensor => Tensor.fromFloat32(type, new Float32Array(dims.reduce((a, x) => a * x, 1)).fill(NaN), dims);
  const out: NonNullable<SsdOptions['out']> = { y: filled(c.dtype, [b, L, h, p]) };
  if (c.returnFinalStates) out.finalStates = filled('float32', [b, h, p, n]);
  if (c.returnVarlenStates) out.varlenStates = filled('float32', [built.cu!.length - 1, h, p, n]);
  if (c.returnUngated) out.yUngated = filled(c.dtype, [b, L, h, p]);
  return out;
}

export interface BuiltStep {
  state: Tensor;
  inputs: SsdStepInputs;
  options: SsdStepOptions;
  ref: RefStepInputs;
}

export function buildStep(c: StepCase): BuiltStep {
  const rng = new Random(c.seed);
  const h = nheadsOf(c);
  const rows = c.indices ? c.batch + c.extraRows : c.batch;
  let stateIndices: number[] | undefined;
  if (c.indices) {
    const order = Array.from({ length: rows }, (_, i) => i);
    for (let i = rows - 1; i > 0; i--) {
      const j = Math.floor(rng.uniform() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    stateIndices = order.slice(0, c.batch).map((row) => (rng.uniform() * 1000 < c.indices!.padding ? -1 - Math.floor(rng.uniform() * 3) : row));
  }
  const example = makeStepExample(
    rng,
    { batch: c.batch, nheads: h, headdim: c.headdim, ngroups: c.ngroups, dstate: c.dstate, stateRows: rows },
    { dtype: c.dtype, stateType: c.stateType, D: c.D, z: c.z, dtBias: c.dtBias, positiveDt: !c.dtSoftplus, ...(stateIndices ? { stateIndices } : {}) },
  );
  const options: SsdStepOptions = { dtSoftplus: c.dtSoftplus };
  const dtLimit = dtLimitOf(c.dtLimit, stepSizes(example.ref.dt, example.ref.dtBias, h, c.dtSoftplus));
  if (dtLimit) options.dtLimit = dtLimit;
  const ref: RefStepInputs = { ...example.ref, dtSoftplus: c.dtSoftplus, dtLimit };
  return { state: example.state, inputs: example.inputs, options, ref };
}

// ---- Checking results ----------------------------------------------------------------------------

/** What a device is held to against the float64 reference (lib/tolerances.ts). */
export interface Bounds {
  /** y, yUngated (plus the rounding of a 16-bit output), finalStates and varlenStates of a forward with these input types */
  forward(types: readonly FloatType[]): number;
  /**
   * a gradient of a backward with these input types (plus the rounding of a 16-bit gradient); for the
   * gradients summed over positions (dA, dD, dDtBias) the error is measured against Σ|term|
   */
  grad(key: SsdGradName, types: readonly FloatType[]): number;
  /** the step's y and state (plus the rounding of 16-bit ones) */
  step: number;
  /** the L2 norm allowed where the reference is exactly zero */
  zero: number;
}

/** Fails with a message naming the output, its error and its bound. */
function expectClose(name: string, got: Float32Array, want: Float64Array, bound: number, zero: number): void {
  if (!allFinite(want)) throw new Error(`${name}: the float64 reference is not finite (the case is outside the realistic scales)`);
  if (!allFinite(got)) {
    const at = got.findIndex((v) => !Number.isFinite(v));
    throw new Error(`${name}: not finite (element ${at} is ${got[at]}; the reference has ${want[at]})`);
  }
  if (l2(want) === 0) {
    if (!(l2(got) <= zero)) throw new Error(`${name}: the reference is exactly zero but the L2 norm is ${l2(got)} (allowed ${zero})`);
    return;
  }
  const error = relativeL2(got, want);
  if (!(error <= bound)) throw new Error(`${name}: relative L2 error ${error.toExponential(3)} above the bound ${bound.toExponential(3)}`);
}

/** The bound of a possibly 16-bit output: the device's bound plus twice the rounding of the reference to its type. */
function withRounding(bound: number, type: string, want: Float64Array): number {
  return bound + ROUNDING_ALLOWANCE * roundingError(type as FloatType, want);
}

/** The dtypes of a case's inputs that the kernels compute from. */
export function inputTypes(inputs: SsdInputs): FloatType[] {
  return [...new Set([inputs.x, inputs.dt, inputs.B, inputs.C, inputs.z].filter((t): t is Tensor => t !== undefined).map((t) => t.type as FloatType))];
}

/** The reference's inputs for positions [from, to) of batch row 0 (a cuSeqlens sequence alone). */
function sliceRef(ref: RefInputs, from: number, to: number): RefInputs {
  const part = (a: ArrayLike<number>, inner: number): number[] => Array.prototype.slice.call(a, from * inner, to * inner) as number[];
  const { nheads: h, headdim: p, ngroups: g, dstate: n } = ref;
  const sliced: RefInputs = { ...ref, batch: 1, seqlen: to - from, x: part(ref.x, h * p), dt: part(ref.dt, h), B: part(ref.B, g * n), C: part(ref.C, g * n) };
  if (ref.z) sliced.z = part(ref.z, h * p);
  delete sliced.seqIdx;
  delete sliced.initialStates;
  return sliced;
}

/** A forward's host results against the float64 reference. */
export function checkForward(result: SsdResult, c: ScanCase, built: BuiltScan, bounds: Bounds): void {
  const expected = ssdReference(built.ref);
  const bound = bounds.forward(inputTypes(built.inputs));
  if (result.y.type !== c.dtype) throw new Error(`y: type ${result.y.type}, expected ${c.dtype}`);
  expectClose('y', result.y.toFloat32(), expected.y, withRounding(bound, c.dtype, expected.y), bounds.zero);
  if (c.returnUngated) expectClose('yUngated', result.yUngated!.toFloat32(), expected.yUngated!, withRounding(bound, c.dtype, expected.yUngated!), bounds.zero);
  else if (result.yUngated) throw new Error('yUngated returned without returnUngated');
  if (c.returnFinalStates) expectClose('finalStates', result.finalStates!.toFloat32(), expected.finalStates, bound, bounds.zero);
  else if (result.finalStates) throw new Error('finalStates returned without returnFinalStates');
  if (c.returnVarlenStates) {
    const cu = built.cu!;
    const size = nheadsOf(c) * c.headdim * c.dstate;
    const states = result.varlenStates!.toFloat32();
    for (let k = 0; k + 1 < cu.length; k++) {
      const got = states.slice(k * size, (k + 1) * size);
      if (cu[k + 1] === cu[k]) {
        if (!got.every((v) => v === 0)) throw new Error(`varlenStates[${k}]: an empty sequence's state must be zeros`);
        continue;
      }
      const alone = ssdReference(sliceRef(built.ref, cu[k], cu[k + 1]));
      expectClose(`varlenStates[${k}] (positions ${cu[k]}..${cu[k + 1] - 1})`, got, alone.finalStates, bound, bounds.zero);
    }
  }
}

/** The float64 reference backward of a case; `absSums` receives Σ|term| of the summed gradients. */
export function referenceGrads(built: BuiltScan, absSums?: RefAbsSums): RefGrads {
  return ssdReferenceBackward(built.ref, built.dy.toFloat32(), built.dFinalStates?.toFloat32(), absSums);
}

const FLOAT32_GRADS: readonly SsdGradName[] = ['dA', 'dD', 'dDtBias', 'dInitialStates'];

/**
 * A backward's host gradients against the float64 reverse of the recurrence. The gradients summed
 * over every position (dA, dD, dDtBias) are sums of b·L terms of both signs: their error is measured
 * against the L2 norm of Σ|term| per entry (a relative L2 error where no term cancels another, and
 * the error a float32 sum of those terms can have where they do: with Σ|ddt| = 655 and Σ ddt = 0.32,
 * a correct float32 sum was 1.2e-5 away in relative terms).
 */
export function checkBackward(grads: SsdGrads, built: BuiltScan, bounds: Bounds): void {
  const absSums: RefAbsSums = {};
  const expected = referenceGrads(built, absSums);
  const types = inputTypes(built.inputs);
  for (const key of GRAD_NAMES) {
    const input = built.inputs[GRAD_INPUT[key]];
    const grad = grads[key];
    if (input === undefined) {
      if (grad !== undefined) throw new Error(`${key} returned without its input`);
      continue;
    }
    if (grad === undefined) throw new Error(`${key} is missing`);
    const type = FLOAT32_GRADS.includes(key) ? 'float32' : input.type;
    if (grad.type !== type) throw new Error(`${key}: type ${grad.type}, expected ${type}`);
    if (grad.dims.join() !== input.dims.join()) throw new Error(`${key}: dims [${grad.dims.join(', ')}], expected [${input.dims.join(', ')}]`);
    const want = Float64Array.from(expected[key]!);
    const got = grad.toFloat32();
    const bound = withRounding(bounds.grad(key, types), grad.type, want);
    const scale = key === 'dA' || key === 'dD' || key === 'dDtBias' ? absSums[key]! : undefined;
    if (scale !== undefined && l2(want) > 0 && allFinite(got)) {
      const error = distanceL2(got, want) / l2(scale);
      const cancellation = l2(scale) / l2(want);
      if (!(error <= bound)) throw new Error(`${key}: error ${error.toExponential(3)} (against Σ|term|, ${cancellation.toPrecision(3)} times its norm) above the bound ${bound.toExponential(3)}`);
      continue;
    }
    expectClose(key, got, want, bound, bounds.zero);
  }
}

/** A step's y and whole state cache (host tensors) against the float64 step. */
export function checkStep(y: Tensor, state: Tensor, built: BuiltStep, c: StepCase, bounds: Bounds): void {
  const expected = ssdStepReference(built.ref);
  if (y.type !== c.dtype) throw new Error(`y: type ${y.type}, expected ${c.dtype}`);
  expectClose('y', y.toFloat32(), expected.y, withRounding(bounds.step, y.type, expected.y), bounds.zero);
  expectClose('state', state.toFloat32(), expected.state, withRounding(bounds.step, state.type, expected.state), bounds.zero);
}

// ---- Running a property --------------------------------------------------------------------------

function envNumber(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, got '${raw}'`);
  return value;
}

/** The jest timeout of a property: its time budget with room, or `fallback` ms for a fixed number of runs. */
export function fuzzTimeout(fallback: number): number {
  const seconds = envNumber('SSD_FUZZ_SECONDS');
  return seconds === undefined ? fallback : seconds * 1000 * 1.5 + 120000;
}

export interface FuzzStats {
  runs: number;
  seconds: number;
  perMinute: number;
  seed: number;
}

/**
 * Runs `predicate` on cases of `arbitrary` (defaultRuns of them, or the environment's budget) and
 * throws, when a case fails, an Error that gives the seed, the path of the shrunk case, the shrunk
 * case itself, the error it raised, and the command that replays it. Returns the count and rate.
 */
export async function runProperty<T>(name: string, file: string, arbitrary: fc.Arbitrary<T>, predicate: (c: T) => Promise<void>, defaultRuns: number): Promise<FuzzStats> {
  const seconds = envNumber('SSD_FUZZ_SECONDS');
  const runs = envNumber('SSD_FUZZ_RUNS');
  const seedText = process.env.SSD_FUZZ_SEED;
  if (seedText !== undefined && seedText !== '' && !Number.isInteger(Number(seedText))) throw new Error(`SSD_FUZZ_SEED must be an integer, got '${seedText}'`);
  // The default budget (npm test, CI) draws the same cases on every run, so that a red CI names a change
  // and not a draw; a longer run (a budget from the environment) explores from a fresh seed.
  const longer = seconds !== undefined || runs !== undefined;
  const seed = seedText ? Number(seedText) | 0 : longer ? (Date.now() ^ (Math.random() * 0x100000000)) | 0 : CI_SEED;
  const path = process.env.SSD_FUZZ_PATH;
  const params: fc.Parameters<[T]> = { seed, numRuns: seconds !== undefined ? 1e9 : Math.floor(runs ?? defaultRuns) };
  if (seconds !== undefined) params.plugins = [fc.interruptAfterTimeLimit(seconds * 1000)];
  if (path) params.path = path;
  const started = performance.now();
  const details = await fc.check(fc.asyncProperty(arbitrary, predicate), params);
  const elapsed = (performance.now() - started) / 1000;
  if (details.failed) {
    const error = details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance);
    const replay = `SSD_FUZZ_SEED=${details.seed} SSD_FUZZ_PATH=${details.counterexamplePath} npx jest ${file} -t '${name}'`;
    throw new Error(
      `fuzz property '${name}' failed after ${details.numRuns} case(s) (seed ${details.seed}, path ${details.counterexamplePath}; shrunk ${details.numShrinks} time(s))\n` +
        `shrunk case: ${fc.stringify(details.counterexample)}\n` +
        `error: ${error}\n` +
        `replay: ${replay}`,
    );
  }
  const stats: FuzzStats = { runs: details.numRuns, seconds: elapsed, perMinute: (details.numRuns / elapsed) * 60, seed };
  console.log(`fuzz ${name}: ${stats.runs} cases in ${elapsed.toFixed(1)} s (${Math.round(stats.perMinute)} per minute), seed ${seed}`);
  return stats;
}
