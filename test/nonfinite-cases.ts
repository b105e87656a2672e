/**
 * NaN propagation cases shared by the CPU suite (test/nonfinite.test.ts) and the GPU suite
 * (test/cuda/nonfinite.cuda.test.ts): one NaN placed in one input of the forward, the backward or the
 * step, the same call made by the package and by the float64 reference, and the outputs compared
 * element by element:
 *
 * - where the reference gives a non-finite value, so must the package ('exact' mode: also the other
 *   way round, the CPU's token recurrence gives exactly the reference's pattern; 'superset' mode,
 *   for the chunked CUDA kernels, whose masked products also reach the other positions of the
 *   NaN's chunk);
 * - outside what the NaN feeds (other batch rows, heads outside its head or group, other sequences
 *   of a seqIdx or cuSeqlens pack) every output is finite, with a nonzero norm;
 * - where both are finite, the values agree with the reference within `bound`.
 *
 * The module runs under jest and in plain child processes (the instruction-set runs), so it reports
 * failures as strings instead of calling expect().
 */
import { Tensor, ssd, ssdBackward, ssdStep, type FloatType, type SsdDevice, type SsdStepOptions } from '../lib/index';
import { Random, makeExample, withOptions, type ExampleConfig, type ExampleOptions } from '../lib/examples';
import { makeStepExample, ssdStepReference, type StepExampleConfig } from '../lib/reference-step';
import { ssdReference, type RefInputs } from '../lib/reference';
import { ssdReferenceBackward } from '../lib/reference-backward';

// Math's functions bound once: the hot loops below then read no global, which costs much more
// inside a vm context such as jest's.
const { floor, sqrt } = Math;
const finite = Number.isFinite;

export type NanPath = 'forward' | 'varlen' | 'backward' | 'step';

/** The inputs a NaN can be placed in, per path (A only on a device: a host A must be finite). */
export const NAN_INPUTS: Readonly<Record<NanPath, readonly string[]>> = {
  forward: ['x', 'dt', 'A', 'B', 'C', 'D', 'z', 'dtBias', 'initialStates'],
  varlen: ['x', 'dt', 'B', 'C', 'z'],
  backward: ['x', 'dt', 'A', 'B', 'C', 'D', 'z', 'dtBias', 'initialStates', 'dy', 'dFinalStates'],
  step: ['x', 'dt', 'A', 'B', 'C', 'D', 'z', 'dtBias', 'state'],
};

export interface NanCase {
  path: NanPath;
  dtype: FloatType;
  input: string;
  /** without softplus (dt already positive): the clamp alone sees the NaN */
  noSoftplus?: boolean;
  /** backward: hand it the forward's yUngated (the CUDA backward then reads y before the gate) */
  ungated?: boolean;
}

/** Sizes and packing of a case; the NaN goes to batch row 1, head 2, position nanT. */
export interface NanLayout {
  config: ExampleConfig;
  /** where the sequences of each row start (seqIdx; none: no seqIdx), or the cuSeqlens offsets for 'varlen' */
  seqStarts: number[];
  nanT: number;
  chunkSize: number;
}

/** CPU: sequence starts inside chunks of 16, odd sizes. */
export const CPU_LAYOUT: NanLayout = {
  config: { batch: 2, seqlen: 40, nheads: 4, headdim: 6, ngroups: 2, dstate: 5 },
  seqStarts: [13, 27],
  nanT: 18,
  chunkSize: 16,
};

/**
 * CUDA: sequence starts on chunk edges (chunk 16). Inside a chunk the chunked kernels multiply masked
 * zeros by every position's values, so a NaN reaches the whole chunk; sequences that share no chunk
 * with it stay finite.
 */
export const CUDA_LAYOUT: NanLayout = {
  config: { batch: 2, seqlen: 48, nheads: 4, headdim: 6, ngroups: 2, dstate: 5 },
  seqStarts: [16, 32],
  nanT: 20,
  chunkSize: 16,
};

/**
 * CUDA's fixed-shape kernels (16-bit, headdim 64, dstate 64, chunk 64): the backward's fixed launches
 * take seqIdx (sequence starts on chunk edges again); the forward's only run without it, with enough
 * (batch, head) chains for the sequential state pass.
 */
export const CUDA_FIXED_BACKWARD_LAYOUT: NanLayout = {
  config: { batch: 2, seqlen: 192, nheads: 4, headdim: 64, ngroups: 2, dstate: 64 },
  seqStarts: [64, 128],
  nanT: 70,
  chunkSize: 64,
};
/** The same sizes without seqIdx: the backward the sm_90a kernels take on a Hopper GPU (elsewhere sm_80's). */
export const CUDA_SM90_BACKWARD_LAYOUT: NanLayout = { ...CUDA_FIXED_BACKWARD_LAYOUT, seqStarts: [] };
export const CUDA_FIXED_FORWARD_LAYOUT: NanLayout = {
  config: { batch: 2, seqlen: 192, nheads: 32, headdim: 64, ngroups: 2, dstate: 64 },
  seqStarts: [],
  nanT: 70,
  chunkSize: 64,
};

const NAN_BATCH = 1;
const NAN_HEAD = 2;
const NAN_CHANNEL = 3;
const NAN_STATE = 2;

/**
 * The cases of `paths` and `dtypes`; `withA`: also NaN in A (device runs only); `ungated`: the
 * backward cases also with the forward's yUngated handed to the backward.
 */
export function nanCases(paths: readonly NanPath[], dtypes: readonly FloatType[], withA: boolean, ungated = false): NanCase[] {
  const cases: NanCase[] = [];
  for (const path of paths)
    for (const dtype of dtypes)
      for (const input of NAN_INPUTS[path]) {
        if (input === 'A' && !withA) continue;
        cases.push({ path, dtype, input });
        if (input === 'dt') cases.push({ path, dtype, input, noSoftplus: true });
        if (path === 'backward' && ungated) cases.push({ path, dtype, input, ungated: true });
      }
  return cases;
}

export function caseName(c: NanCase): string {
  return `${c.path} ${c.dtype} NaN in ${c.input}${c.noSoftplus ? ' (no softplus)' : ''}${c.ungated ? ' (yUngated kept)' : ''}`;
}

/** How an output's elements map to batch row, position and head (or group). */
type Axes = 'bthp' | 'bth' | 'btgn' | 'bhpn' | 'shpn' | 'h' | 'hp' | 'bhp' | 'rhpn';

interface Element {
  batch: number | null; // null: summed over rows
  seq: number | null; // the sequence (seqIdx value) the element belongs to; null: all
  head: number | null; // null for group axes (see group)
  group: number | null;
}

interface Source {
  batch: number | null; // null: every row
  seq: number | null; // null: every sequence
  heads: Set<number>;
}

export interface Outcome {
  name: string;
  type: string;
  got: Float32Array;
  expected: Float64Array;
  axes: Axes;
}

export interface NanRun {
  outcomes: Outcome[];
  element: (axes: Axes, i: number) => Element;
  source: Source;
}

/** NaN in a tensor's own type, at element i (the tensor's data array is written). */
function poison(t: Tensor, i: number): void {
  const d = t.data;
  if (t.type === 'float32') (d as Float32Array)[i] = NaN;
  else if (t.type === 'bfloat16') (d as Uint16Array)[i] = 0x7fc0;
  else (d as Uint16Array)[i] = 0x7e00;
}

function poisonBoth(t: Tensor, values: Float32Array | Float64Array, i: number): void {
  poison(t, i);
  values[i] = NaN;
}

function seqRow(layout: NanLayout): number[] {
  const row: number[] = [];
  let s = 0;
  for (let t = 0; t < layout.config.seqlen; t++) {
    if (t > 0 && layout.seqStarts.includes(t)) s++;
    row.push(s);
  }
  return row;
}

function outcome(name: string, t: Tensor, expected: Float64Array | Float32Array, axes: Axes): Outcome {
  return { name, type: t.type, got: t.toFloat32(), expected: Float64Array.from(expected), axes };
}

/** Runs one case on `device` and with the reference. */
export async function runNanCase(c: NanCase, layout: NanLayout, device: SsdDevice, seed = 11): Promise<NanRun> {
  if (c.path === 'step') return runStepCase(c, device, seed);
  const rng = new Random(seed);
  const cfg = layout.config;
  const { seqlen: L, nheads: h, headdim: p, ngroups: g, dstate: n } = cfg;
  const varlen = c.path === 'varlen';
  const ex: ExampleOptions = {
    dtype: c.dtype,
    D: c.path === 'backward' ? 'channel' : 'head',
    z: true,
    dtBias: true,
    initialStates: !varlen,
    seqStarts: varlen || layout.seqStarts.length === 0 ? undefined : layout.seqStarts,
    positiveDt: c.noSoftplus,
  };
  const config = varlen ? { ...cfg, batch: 1 } : cfg;
  const { inputs, ref } = makeExample(rng, config, ex);
  if (varlen) inputs.cuSeqlens = new Tensor('int32', Int32Array.from([0, ...layout.seqStarts, L]), [layout.seqStarts.length + 2]);
  const options = { dtSoftplus: !c.noSoftplus, chunkSize: layout.chunkSize };
  const refIn: RefInputs = withOptions(ref, options);
  const bN = varlen ? 0 : NAN_BATCH;
  const tN = layout.nanT;
  const gN = floor(NAN_HEAD / (h / g));
  const row = seqRow(layout);
  if (varlen) refIn.seqIdx = Int32Array.from(row);

  const dy = Tensor.fromFloat32(c.dtype, rng.normals(inputs.x.size), inputs.x.dims);
  const dyValues = dy.toFloat32();
  const dF = new Tensor('float32', rng.normals(config.batch * h * p * n, 0.5), [config.batch, h, p, n]);
  const dFValues = dF.toFloat32();

  const xIndex = ((bN * L + tN) * h + NAN_HEAD) * p + NAN_CHANNEL;
  const bcIndex = ((bN * L + tN) * g + gN) * n + NAN_STATE;
  const stateIndex = ((bN * h + NAN_HEAD) * p + NAN_CHANNEL) * n + NAN_STATE;
  let source: Source = { batch: bN, seq: row[tN], heads: new Set([NAN_HEAD]) };
  switch (c.input) {
    case 'x': poisonBoth(inputs.x, ref.x as Float32Array, xIndex); break;
    case 'z': poisonBoth(inputs.z!, ref.z as Float32Array, xIndex); break;
    case 'dy': poisonBoth(dy, dyValues, xIndex); break;
    case 'dt': poisonBoth(inputs.dt, ref.dt as Float32Array, (bN * L + tN) * h + NAN_HEAD); break;
    case 'B':
    case 'C': {
      poisonBoth(inputs[c.input], ref[c.input] as Float32Array, bcIndex);
      const heads = new Set<number>();
      for (let k = 0; k < h; k++) if (floor(k / (h / g)) === gN) heads.add(k);
      source = { batch: bN, seq: row[tN], heads };
      break;
    }
    case 'A':
    case 'dtBias':
      poisonBoth(inputs[c.input]!, ref[c.input] as Float32Array, NAN_HEAD);
      source = { batch: null, seq: null, heads: new Set([NAN_HEAD]) };
      break;
    case 'D':
      poisonBoth(inputs.D!, ref.D as Float32Array, ref.dPerChannel ? NAN_HEAD * p + NAN_CHANNEL : NAN_HEAD);
      source = { batch: null, seq: null, heads: new Set([NAN_HEAD]) };
      break;
    case 'initialStates':
      poisonBoth(inputs.initialStates!, ref.initialStates as Float32Array, stateIndex);
      source = { batch: bN, seq: 0, heads: new Set([NAN_HEAD]) }; // the state before position 0 counts as sequence 0
      break;
    case 'dFinalStates':
      poisonBoth(dF, dFValues, stateIndex);
      source = { batch: bN, seq: row[L - 1], heads: new Set([NAN_HEAD]) };
      break;
    default:
      throw new Error(`no input ${c.input}`);
  }
  // A NaN in A passes validation only where it is not read on the host: on a device.
  if (c.input === 'A') inputs.A = inputs.A.toDevice();

  const element = (axes: Axes, i: number): Element => {
    switch (axes) {
      case 'bthp': {
        const bt = floor(i / (h * p));
        return { batch: floor(bt / L), seq: row[bt % L], head: floor(i / p) % h, group: null };
      }
      case 'bth': {
        const bt = floor(i / h);
        return { batch: floor(bt / L), seq: row[bt % L], head: i % h, group: null };
      }
      case 'btgn': {
        const bt = floor(i / (g * n));
        return { batch: floor(bt / L), seq: row[bt % L], head: null, group: floor(i / n) % g };
      }
      case 'bhpn': // a final state belongs to the row's last sequence, an initial state's gradient to sequence 0
        return { batch: floor(i / (h * p * n)), seq: null, head: floor(i / (p * n)) % h, group: null };
      case 'shpn':
        return { batch: 0, seq: floor(i / (h * p * n)), head: floor(i / (p * n)) % h, group: null };
      case 'h':
        return { batch: null, seq: null, head: i, group: null };
      case 'hp':
        return { batch: null, seq: null, head: floor(i / p), group: null };
      default:
        throw new Error(`axes ${axes}`);
    }
  };
  const withSeq = (axes: Axes, seq: number) => (e: Element): Element => ({ ...e, seq: axes === 'bhpn' ? seq : e.seq });

  const outcomes: Outcome[] = [];
  if (c.path === 'forward' || c.path === 'varlen') {
    const out = await ssd(inputs, { ...options, device, returnFinalStates: true, returnUngated: true, returnVarlenStates: varlen });
    const expected = ssdReference(refIn);
    outcomes.push(outcome('y', out.y, expected.y, 'bthp'));
    outcomes.push(outcome('yUngated', out.yUngated!, expected.yUngated!, 'bthp'));
    outcomes.push(outcome('finalStates', out.finalStates!, expected.finalStates, 'bhpn'));
    if (varlen) {
      // each sequence alone: the reference's state at its end
      const states = new Float64Array((layout.seqStarts.length + 1) * h * p * n);
      const bounds = [0, ...layout.seqStarts, L];
      for (let s = 0; s + 1 < bounds.length; s++) {
        const part = ssdReference(slice(refIn, bounds[s], bounds[s + 1]));
        states.set(part.finalStates, s * h * p * n);
      }
      outcomes.push(outcome('varlenStates', out.varlenStates!, states, 'shpn'));
    }
    const last = row[L - 1];
    return { outcomes, element: (axes, i) => withSeq(axes, last)(element(axes, i)), source };
  }

  // with c.ungated, the forward's y before the gate, from the same (poisoned) inputs
  const yUngated = c.ungated ? (await ssd(inputs, { ...options, device, returnUngated: true })).yUngated : undefined;
  const grads = await ssdBackward(inputs, { dy, dFinalStates: dF }, { ...options, device, yUngated });
  const expected = ssdReferenceBackward(refIn, dyValues, dFValues);
  const axesOf: Record<string, Axes> = { dx: 'bthp', dz: 'bthp', ddt: 'bth', dB: 'btgn', dC: 'btgn', dA: 'h', dDtBias: 'h', dD: 'hp', dInitialStates: 'bhpn' };
  for (const key of Object.keys(expected)) {
    const got = (grads as unknown as Record<string, Tensor>)[key];
    outcomes.push(outcome(key, got, (expected as unknown as Record<string, Float64Array>)[key], axesOf[key]));
  }
  return { outcomes, element: (axes, i) => withSeq(axes, 0)(element(axes, i)), source };
}

/** Positions [t0, t1) of a single-row reference input (cuSeqlens packs have batch 1). */
function slice(r: RefInputs, t0: number, t1: number): RefInputs {
  const { nheads: h, headdim: p, ngroups: g, dstate: n } = r;
  const cut = (a: ArrayLike<number>, inner: number): Float64Array => {
    const out = new Float64Array((t1 - t0) * inner);
    for (let i = 0; i < out.length; i++) out[i] = a[t0 * inner + i];
    return out;
  };
  return {
    ...r,
    seqlen: t1 - t0,
    x: cut(r.x, h * p),
    dt: cut(r.dt, h),
    B: cut(r.B, g * n),
    C: cut(r.C, g * n),
    z: r.z ? cut(r.z, h * p) : undefined,
    seqIdx: undefined,
    initialStates: undefined,
  };
}

const STEP_CONFIG: StepExampleConfig = { batch: 3, nheads: 4, headdim: 6, ngroups: 2, dstate: 5, stateRows: 4 };
const STEP_INDICES = [2, 0, 3]; // entry 1 steps row 0; row 1 is not stepped

async function runStepCase(c: NanCase, device: SsdDevice, seed: number): Promise<NanRun> {
  const rng = new Random(seed);
  const { nheads: h, headdim: p, ngroups: g, dstate: n } = STEP_CONFIG;
  const ex = makeStepExample(rng, STEP_CONFIG, { dtype: c.dtype, D: 'channel', z: true, dtBias: true, stateIndices: STEP_INDICES, positiveDt: c.noSoftplus });
  const { state, inputs, ref } = ex;
  const options: SsdStepOptions = { dtSoftplus: !c.noSoftplus };
  const bN = NAN_BATCH;
  const gN = floor(NAN_HEAD / (h / g));
  const rowOfEntry = (b: number): number => STEP_INDICES[b];
  let source: Source = { batch: bN, seq: null, heads: new Set([NAN_HEAD]) };
  switch (c.input) {
    case 'x': poisonBoth(inputs.x, ref.x as Float32Array, (bN * h + NAN_HEAD) * p + NAN_CHANNEL); break;
    case 'z': poisonBoth(inputs.z!, ref.z as Float32Array, (bN * h + NAN_HEAD) * p + NAN_CHANNEL); break;
    case 'dt': poisonBoth(inputs.dt, ref.dt as Float32Array, bN * h + NAN_HEAD); break;
    case 'B':
    case 'C': {
      poisonBoth(inputs[c.input], ref[c.input] as Float32Array, (bN * g + gN) * n + NAN_STATE);
      const heads = new Set<number>();
      for (let k = 0; k < h; k++) if (floor(k / (h / g)) === gN) heads.add(k);
      source = { batch: bN, seq: null, heads };
      break;
    }
    case 'A':
    case 'dtBias':
      poisonBoth(inputs[c.input]!, ref[c.input] as Float32Array, NAN_HEAD);
      source = { batch: null, seq: null, heads: new Set([NAN_HEAD]) };
      break;
    case 'D':
      poisonBoth(inputs.D!, ref.D as Float32Array, NAN_HEAD * p + NAN_CHANNEL);
      source = { batch: null, seq: null, heads: new Set([NAN_HEAD]) };
      break;
    case 'state': {
      const i = ((rowOfEntry(bN) * h + NAN_HEAD) * p + NAN_CHANNEL) * n + NAN_STATE;
      poisonBoth(state, ref.state as Float32Array, i);
      break;
    }
    default:
      throw new Error(`no step input ${c.input}`);
  }
  if (c.input === 'A') inputs.A = inputs.A.toDevice();
  const { y } = await ssdStep(state, inputs, { ...options, device });
  const expected = ssdStepReference({ ...ref, dtSoftplus: options.dtSoftplus });
  // a row that no entry steps belongs to no entry: UNTOUCHED, outside every source
  const entryOfRow = (r: number): number => {
    const b = STEP_INDICES.indexOf(r);
    return b < 0 ? UNTOUCHED : b;
  };
  const element = (axes: Axes, i: number): Element => {
    if (axes === 'bhp') return { batch: floor(i / (h * p)), seq: null, head: floor(i / p) % h, group: null };
    return { batch: entryOfRow(floor(i / (h * p * n))), seq: null, head: floor(i / (p * n)) % h, group: null };
  };
  return {
    outcomes: [outcome('y', y, expected.y, 'bhp'), outcome('state', state, expected.state, 'rhpn')],
    element,
    source,
  };
}

/** The batch entry of a state row that the step leaves alone. */
const UNTOUCHED = -1;

/** Whether element e lies outside everything the source feeds. */
function outside(run: NanRun, e: Element, headsPerGroup: number): boolean {
  const s = run.source;
  if (e.batch === UNTOUCHED) return true;
  if (s.batch !== null && e.batch !== null && e.batch !== s.batch) return true;
  if (s.seq !== null && e.seq !== null && e.seq !== s.seq) return true;
  if (e.head !== null) return !s.heads.has(e.head);
  if (e.group !== null) return ![...s.heads].some((k) => floor(k / headsPerGroup) === e.group);
  return false;
}

/**
 * The failures of one run (empty when it passes). `bound(outcome, expectedFinite)` is the relative
 * L2 bound for the elements finite in both.
 */
export function checkNanRun(
  run: NanRun,
  mode: 'exact' | 'superset',
  headsPerGroup: number,
  bound: (o: Outcome, expectedFinite: Float64Array) => number,
): string[] {
  const failures: string[] = [];
  let reached = 0;
  for (const o of run.outcomes) {
    const missing: number[] = [];
    const extra: number[] = [];
    const escaped: number[] = [];
    let outsideCount = 0;
    let outsideNorm = 0;
    const gotFinite: number[] = [];
    const expFinite: number[] = [];
    for (let i = 0; i < o.got.length; i++) {
      const e = !finite(o.expected[i]);
      const gNan = !finite(o.got[i]);
      if (e) reached++;
      if (e && !gNan) missing.push(i);
      if (!e && gNan) extra.push(i);
      if (outside(run, run.element(o.axes, i), headsPerGroup)) {
        outsideCount++;
        if (gNan) escaped.push(i);
        else outsideNorm += o.got[i] * o.got[i];
      }
      if (!e && !gNan) {
        gotFinite.push(o.got[i]);
        expFinite.push(o.expected[i]);
      }
    }
    const few = (a: number[]): string => a.slice(0, 6).join(', ') + (a.length > 6 ? ` … (${a.length})` : '');
    if (missing.length > 0) failures.push(`${o.name}: finite where the reference is not, at ${few(missing)}`);
    if (mode === 'exact' && extra.length > 0) failures.push(`${o.name}: not finite where the reference is, at ${few(extra)}`);
    if (escaped.length > 0) failures.push(`${o.name}: not finite outside what the NaN feeds, at ${few(escaped)}`);
    if (outsideCount > 0 && !(outsideNorm > 0)) failures.push(`${o.name}: zero outside what the NaN feeds`);
    if (expFinite.length > 0) {
      const ef = Float64Array.from(expFinite);
      let num = 0;
      let den = 0;
      for (let i = 0; i < ef.length; i++) {
        num += (gotFinite[i] - ef[i]) ** 2;
        den += ef[i] ** 2;
      }
      const err = den > 0 ? sqrt(num / den) : sqrt(num);
      const limit = bound(o, ef);
      if (!(err <= limit)) failures.push(`${o.name}: finite values off the reference by ${err.toExponential(2)} (bound ${limit.toExponential(2)})`);
    }
  }
  if (reached === 0) failures.push('the reference has no non-finite output: the case tests nothing');
  return failures;
}
