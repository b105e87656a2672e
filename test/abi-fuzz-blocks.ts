/**
 * The C ABI fuzz's parameter blocks (test/abi-fuzz.test.ts, test/cuda/abi-fuzz.cuda.test.ts):
 * SsdParams, SsdBackwardParams and SsdStepParams written byte by byte at the offsets the compiler
 * gave them (the consumer's layout(), test/abi-consumer), valid blocks of random sizes, dtypes,
 * options and strided views (a random order of the outer dimensions, padding at every level,
 * broadcast inputs with stride 0) over host buffers, the logical tensors the same views hold (for
 * the TypeScript API's results to compare with), and the catalogue of malformed blocks: for each
 * field, the values the entries must refuse with a status and a message, without reading a buffer
 * or writing an output.
 *
 * What cannot be checked is left out: the ABI is not told how long a buffer is, so a size or
 * stride within the limits but past the end of its buffer, or a non-null host pointer to memory
 * that is not there, would be read; such blocks are never made.
 */
import fc from 'fast-check';
import { Tensor, type FloatType, type SsdInputs, type SsdOptions, type TensorType } from '../lib/index';
import type { SsdStepInputs, SsdStepOptions } from '../lib/step';
import { Random, makeExample, withOptions, type RefInputs } from './reference';

// ---- The consumer and raw blocks -----------------------------------------------------------------

export interface FieldInfo {
  offset: number;
  size: number;
  kind: 'i' | 'f' | 'p' | 's';
}
export interface StructInfo {
  size: number;
  fields: Record<string, FieldInfo>;
}
export interface Layouts {
  SsdParams: StructInfo;
  SsdBackwardParams: StructInfo;
  SsdStepParams: StructInfo;
}
export type Entry = 'forward' | 'backward' | 'step';
export interface Outcome {
  status: number;
  message: string;
}

/** What test/abi-consumer/consumer.c exports for the fuzz. */
export interface RawConsumer {
  layout(): Layouts;
  address(view: ArrayBufferView): bigint;
  callRaw(api: unknown, entry: Entry, block: Uint8Array | null, memory: number, stream?: bigint | null): Outcome;
  cudaSynchronize(): number;
}

export const SSD_OK = 0;
export const SSD_ERR_INVALID_ARGUMENT = 1;
export const SSD_ERR_UNSUPPORTED = 3;
export const DTYPE_CODE: Record<FloatType, number> = { float32: 0, bfloat16: 1, float16: 2 };
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

export type FieldValue = number | bigint | ArrayBufferView | null;

/** A parameter block's bytes, written field by field (little-endian, as x86-64 and arm64 are). */
export class Block {
  readonly bytes: Uint8Array;
  readonly keep: unknown[];
  private readonly view: DataView;

  constructor(
    private readonly consumer: RawConsumer,
    readonly info: StructInfo,
    bytes?: Uint8Array,
    private readonly base = 0,
    keep?: unknown[],
  ) {
    this.bytes = bytes ?? new Uint8Array(new ArrayBuffer(info.size));
    this.view = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
    this.keep = keep ?? [];
  }

  private field(name: string): FieldInfo {
    const f = this.info.fields[name];
    if (f === undefined) throw new Error(`the block has no field '${name}'`);
    return f;
  }

  /** Pointers take a TypedArray (its first byte), a BigInt address or null; integers and floats a number or BigInt. */
  set(name: string, value: FieldValue): this {
    const f = this.field(name);
    const at = this.base + f.offset;
    if (f.kind === 'p') {
      let address = 0n;
      if (ArrayBuffer.isView(value)) {
        address = this.consumer.address(value);
        this.keep.push(value);
      } else if (typeof value === 'bigint') address = value;
      else if (typeof value === 'number') address = BigInt(value);
      this.view.setBigUint64(at, BigInt.asUintN(64, address), true);
    } else if (f.kind === 'f') {
      this.view.setFloat32(at, Number(value), true);
    } else if (f.kind === 'i') {
      if (f.size === 8) this.view.setBigInt64(at, BigInt.asIntN(64, BigInt(value as number | bigint)), true);
      else this.view.setInt32(at, Number(BigInt.asIntN(32, BigInt(value as number | bigint))), true);
    } else {
      throw new Error(`'${name}' is a nested block`);
    }
    return this;
  }

  get(name: string): bigint {
    const f = this.field(name);
    const at = this.base + f.offset;
    if (f.kind === 'p') return this.view.getBigUint64(at, true);
    if (f.kind === 'i') return f.size === 8 ? this.view.getBigInt64(at, true) : BigInt(this.view.getInt32(at, true));
    throw new Error(`'${name}' is not an integer field`);
  }

  /** The nested block `name` (SsdBackwardParams.fwd), over the same bytes. */
  nested(name: string, info: StructInfo): Block {
    return new Block(this.consumer, info, this.bytes, this.base + this.field(name).offset, this.keep);
  }
}

// ---- Strided views -------------------------------------------------------------------------------

export type Elements = Float32Array | Uint16Array | Int32Array;

/** How a view lays out its outer dimensions: their memory order (a permutation), padding, a broadcast dimension. */
export interface ViewLayout {
  /** index of the permutation of the outer dimensions in memory order (outermost first) */
  perm: number;
  /** elements of padding after the contiguous inner run and after each outer dimension */
  pads: number[];
  /** an outer dimension read with stride 0 (inputs only; -1: none) */
  broadcast: number;
}

export const viewLayout: fc.Arbitrary<ViewLayout> = fc.record({
  perm: fc.integer({ min: 0, max: 5 }),
  pads: fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 4, maxLength: 4 }),
  broadcast: fc.oneof({ arbitrary: fc.constant(-1), weight: 4 }, { arbitrary: fc.integer({ min: 0, max: 2 }), weight: 1 }),
});

export const CONTIGUOUS: ViewLayout = { perm: 0, pads: [0, 0, 0, 0], broadcast: -1 };

function permutation(k: number, index: number): number[] {
  const rest = Array.from({ length: k }, (_, i) => i);
  const out: number[] = [];
  for (let f = k; f > 0; f--) {
    const fact = [1, 1, 2, 6][f - 1];
    out.push(rest.splice(Math.floor(index / fact) % f, 1)[0]);
    index %= fact;
  }
  return out;
}

/** A strided view: `outer` dimensions over `inner` contiguous elements, inside `data`. */
export interface View {
  data: Elements;
  outer: number[];
  inner: number;
  strides: number[];
}

function stridesOf(outer: readonly number[], inner: number, layout: ViewLayout, exclusive: boolean): number[] {
  const order = permutation(outer.length, layout.perm);
  const strides = new Array<number>(outer.length).fill(0);
  let step = inner + layout.pads[0];
  for (let i = outer.length - 1, level = 1; i >= 0; i--, level++) {
    strides[order[i]] = step;
    step = step * outer[order[i]] + (layout.pads[level] ?? 0);
  }
  if (!exclusive && layout.broadcast >= 0 && layout.broadcast < outer.length && outer[layout.broadcast] > 1) strides[layout.broadcast] = 0;
  return strides;
}

/** Every (outer index, base offset in the view, base offset in the logical contiguous array). */
function forEachRow(outer: readonly number[], inner: number, strides: readonly number[], f: (viewAt: number, logicalAt: number) => void): void {
  const count = outer.reduce((a, b) => a * b, 1);
  for (let flat = 0; flat < count; flat++) {
    let rest = flat;
    let at = 0;
    for (let d = outer.length - 1; d >= 0; d--) {
      at += (rest % outer[d]) * strides[d];
      rest = Math.floor(rest / outer[d]);
    }
    f(at, flat * inner);
  }
}

/** Lays out `logical` (contiguous) in a new buffer with `layout`; gaps hold `fill`. */
export function makeView(logical: Elements, outer: number[], inner: number, layout: ViewLayout, exclusive: boolean, fill: number): View {
  const strides = stridesOf(outer, inner, layout, exclusive);
  const span = outer.reduce((last, n, d) => last + (n - 1) * strides[d], 0) + inner;
  const Ctor = logical.constructor as new (n: number) => Elements;
  const data = new Ctor(Math.max(span, 1));
  data.fill(fill);
  forEachRow(outer, inner, strides, (v, l) => data.set(logical.subarray(l, l + inner), v));
  return { data, outer, inner, strides };
}

/** The view's elements in logical (contiguous) order. */
export function gather(view: View): Elements {
  const Ctor = view.data.constructor as new (n: number) => Elements;
  const out = new Ctor(view.outer.reduce((a, b) => a * b, 1) * view.inner);
  forEachRow(view.outer, view.inner, view.strides, (v, l) => out.set(view.data.subarray(v, v + view.inner), l));
  return out;
}

/** A tensor's elements as they sit in its data (bits for 16-bit types). */
function elements(t: Tensor): Elements {
  return t.data as Elements;
}

function tensorOf(type: TensorType, data: Elements, dims: readonly number[]): Tensor {
  return new Tensor(type as 'float32', data as Float32Array, [...dims]);
}

/** Bitwise equality of two element arrays. */
export function sameElements(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint8Array((a as Elements).buffer, (a as Elements).byteOffset, (a as Elements).byteLength);
  const y = new Uint8Array((b as Elements).buffer, (b as Elements).byteOffset, (b as Elements).byteLength);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

// ---- Valid blocks --------------------------------------------------------------------------------

/** One valid call through the table: sizes, dtypes, options and a layout per strided tensor. */
export interface AbiCase {
  batch: number;
  seqlen: number;
  ngroups: number;
  headsPerGroup: number;
  headdim: number;
  dstate: number;
  chunkSize: number;
  dtype: FloatType;
  D: 'none' | 'head' | 'channel';
  z: boolean;
  dtBias: boolean;
  initialStates: boolean;
  seqIdx: boolean;
  /** pack one row with cuSeqlens (batch 1, no seqIdx, no initialStates); the forward also asks for varlenStates */
  cuSeqlens: boolean;
  finalStates: boolean;
  yUngated: boolean;
  dtSoftplus: boolean;
  dtLimit: boolean;
  /** the step: rows of the cache beyond batch, with state_indices (null: none) */
  stateIndices: { extraRows: number } | null;
  stateType: 'float32' | 'bfloat16';
  layouts: Record<string, ViewLayout>;
  seed: number;
}

const VIEW_NAMES = ['x', 'dt', 'B', 'C', 'z', 'y', 'y_ungated', 'seq_idx', 'dy', 'dx', 'ddt', 'dB', 'dC', 'dz'];

export const abiCase: fc.Arbitrary<AbiCase> = fc.record({
  batch: fc.integer({ min: 1, max: 3 }),
  seqlen: fc.integer({ min: 1, max: 40 }),
  ngroups: fc.integer({ min: 1, max: 2 }),
  headsPerGroup: fc.integer({ min: 1, max: 3 }),
  headdim: fc.integer({ min: 1, max: 12 }),
  dstate: fc.integer({ min: 1, max: 12 }),
  chunkSize: fc.constantFrom(16, 32, 64, 128, 256),
  dtype: fc.constantFrom<FloatType>('float32', 'bfloat16', 'float16'),
  D: fc.constantFrom('none' as const, 'head' as const, 'channel' as const),
  z: fc.boolean(),
  dtBias: fc.boolean(),
  initialStates: fc.boolean(),
  seqIdx: fc.boolean(),
  cuSeqlens: fc.boolean(),
  finalStates: fc.boolean(),
  yUngated: fc.boolean(),
  dtSoftplus: fc.boolean(),
  dtLimit: fc.boolean(),
  stateIndices: fc.option(fc.record({ extraRows: fc.integer({ min: 0, max: 3 }) })),
  stateType: fc.constantFrom('float32' as const, 'bfloat16' as const),
  layouts: fc.record(Object.fromEntries(VIEW_NAMES.map((n) => [n, viewLayout])) as Record<string, fc.Arbitrary<ViewLayout>>),
  seed: fc.integer({ min: 0, max: 0x7fffffff }),
});

/** A strided tensor of a block: its view and the fields that describe it. */
export interface BlockView {
  view: View;
  /** the pointer field ('x', 'dy', ...) */
  field: string;
  /** its stride fields, one per outer dimension */
  strideFields: string[];
  /** its dtype field, or null (int32 seq_idx) */
  typeField: string | null;
  type: TensorType;
  output: boolean;
  /** no two elements share memory (outputs, and y_ungated also where the backward reads it) */
  exclusive: boolean;
  /** the block that holds its fields (the backward's fwd for the forward's tensors) */
  owner: Block;
}

/** A valid block and what it was made of. */
export interface Built {
  entry: Entry;
  c: AbiCase;
  block: Block;
  /** the SsdParams part (the block itself, or the backward's fwd) */
  params: Block;
  views: Record<string, BlockView>;
  /** contiguous buffers of the block (A, D, states, gradients of float32 ...), by field */
  plain: Record<string, Elements>;
  /** the block that holds each plain buffer's field */
  plainOwner: Record<string, Block>;
  /** every output buffer, with its contents before the call */
  outputs: { name: string; data: Elements; before: Elements }[];
  /** the same call through the TypeScript API */
  inputs?: SsdInputs;
  options?: SsdOptions;
  stepInputs?: SsdStepInputs;
  stepOptions?: SsdStepOptions;
  stepState?: Tensor;
  dy?: Tensor;
  dFinalStates?: Tensor;
  /** the float64 reference's inputs of a scan block, options applied */
  ref?: RefInputs;
}

const FILL_OUT = { float32: NaN, bfloat16: 0x7fc1, float16: 0x7e01, int32: 0 } as const;

function elementFill(type: TensorType, output: boolean): number {
  if (!output) return type === 'float32' ? 1e30 : type === 'int32' ? 0 : 0x7bff;
  return FILL_OUT[type];
}

/** Normalises a case for an entry: the combinations the block contract excludes are dropped. */
export function normalizeCase(c: AbiCase, entry: Entry): AbiCase {
  const cu = entry !== 'step' && c.cuSeqlens;
  return {
    ...c,
    batch: cu ? 1 : c.batch,
    cuSeqlens: cu,
    seqIdx: cu ? false : c.seqIdx,
    initialStates: cu ? false : c.initialStates,
    yUngated: c.z && c.yUngated,
  };
}

function strideNames(prefix: string, dims: string[]): string[] {
  return dims.map((d) => `${prefix}_${d}_stride`);
}

/** A valid SsdParams / SsdBackwardParams block for `entry` ('forward' or 'backward') with random views. */
export function buildScanBlock(consumer: RawConsumer, layouts: Layouts, raw: AbiCase, entry: 'forward' | 'backward'): Built {
  const c = normalizeCase(raw, entry);
  const rng = new Random(c.seed);
  const h = c.ngroups * c.headsPerGroup;
  const { batch: b, seqlen: L, headdim: p, ngroups: g, dstate: n } = c;
  let starts: number[] | undefined;
  if (c.seqIdx && L > 1) starts = [1 + Math.floor(rng.uniform() * (L - 1)), 1 + Math.floor(rng.uniform() * (L - 1))];
  const ex = makeExample(rng, { batch: b, seqlen: L, nheads: h, headdim: p, ngroups: g, dstate: n }, {
    dtype: c.dtype,
    D: c.D,
    z: c.z,
    dtBias: c.dtBias,
    initialStates: c.initialStates,
    positiveDt: !c.dtSoftplus,
    ...(c.seqIdx ? { seqStarts: starts ?? [], seqFirst: Math.floor(rng.uniform() * 2) } : {}),
  });
  const top = new Block(consumer, entry === 'forward' ? layouts.SsdParams : layouts.SsdBackwardParams);
  const P = entry === 'forward' ? top : top.nested('fwd', layouts.SsdParams);
  const built: Built = { entry, c, block: top, params: P, views: {}, plain: {}, plainOwner: {}, outputs: [] };
  const tensors: SsdInputs = { ...ex.inputs };

  const blockOf = (name: string): Block => (['x', 'dt', 'B', 'C', 'z', 'y', 'y_ungated', 'seq_idx'].includes(name) ? P : top);
  const addView = (name: string, t: Tensor, outer: number[], inner: number, dims: string[], output: boolean, exclusive = output): Tensor => {
    const view = makeView(elements(t), outer, inner, c.layouts[name] ?? CONTIGUOUS, exclusive, elementFill(t.type, output));
    const typeField = t.type === 'int32' ? null : `${name}_type`;
    const B = blockOf(name);
    const bv: BlockView = { view, field: name, strideFields: strideNames(name, dims), typeField, type: t.type, output, exclusive, owner: B };
    built.views[name] = bv;
    B.set(name, view.data);
    view.strides.forEach((s, i) => B.set(bv.strideFields[i], s));
    if (typeField) B.set(typeField, DTYPE_CODE[t.type as FloatType]);
    if (output) built.outputs.push({ name, data: view.data, before: view.data.slice() });
    // the logical tensor the view holds (a broadcast input repeats one slice)
    return tensorOf(t.type, gather(view), t.dims);
  };
  const addPlain = (B: Block, field: string, data: Elements, output: boolean): void => {
    built.plain[field] = data;
    built.plainOwner[field] = B;
    B.set(field, data);
    if (output) built.outputs.push({ name: field, data, before: data.slice() });
  };

  const sizes: [string, number][] = [['batch', b], ['seqlen', L], ['nheads', h], ['headdim', p], ['ngroups', g], ['dstate', n], ['chunk_size', c.chunkSize]];
  for (const [k, v] of sizes) P.set(k, v);
  tensors.x = addView('x', ex.inputs.x, [b, L, h], p, ['batch', 'seq', 'head'], false);
  tensors.dt = addView('dt', ex.inputs.dt, [b, L], h, ['batch', 'seq'], false);
  tensors.B = addView('B', ex.inputs.B, [b, L, g], n, ['batch', 'seq', 'group'], false);
  tensors.C = addView('C', ex.inputs.C, [b, L, g], n, ['batch', 'seq', 'group'], false);
  if (ex.inputs.z) tensors.z = addView('z', ex.inputs.z, [b, L, h], p, ['batch', 'seq', 'head'], false);
  else P.set('z_type', DTYPE_CODE[c.dtype]);
  const f32 = (t: Tensor | undefined): Float32Array | null => (t ? Float32Array.from(t.toFloat32()) : null);
  addPlain(P, 'A', f32(ex.inputs.A)!, false);
  if (ex.inputs.D) {
    addPlain(P, 'D', f32(ex.inputs.D)!, false);
    P.set('D_per_channel', c.D === 'channel' ? 1 : 0);
  }
  if (ex.inputs.dtBias) addPlain(P, 'dt_bias', f32(ex.inputs.dtBias)!, false);
  if (ex.inputs.initialStates) addPlain(P, 'initial_states', f32(ex.inputs.initialStates)!, false);
  if (ex.inputs.seqIdx) tensors.seqIdx = addView('seq_idx', ex.inputs.seqIdx, [b], L, ['batch'], false);
  const lo = c.dtLimit ? 0.01 : 0;
  const hi = c.dtLimit ? 0.2 : Infinity;
  P.set('dt_softplus', c.dtSoftplus ? 1 : 0).set('dt_min', lo).set('dt_max', hi);

  const options: SsdOptions = { chunkSize: c.chunkSize, dtSoftplus: c.dtSoftplus };
  if (c.dtLimit) options.dtLimit = [lo, hi];
  const yDims = [b, L, h, p];
  const fresh = (type: TensorType, dims: number[]): Tensor => Tensor.fromFloat32(type as FloatType, new Float32Array(dims.reduce((a, x) => a * x, 1)), dims);
  let cu: Int32Array | undefined;
  if (c.cuSeqlens) {
    const cuts = [Math.floor(rng.uniform() * (L + 1)), Math.floor(rng.uniform() * (L + 1))].sort((x, y) => x - y);
    cu = Int32Array.from([0, ...cuts, L]);
    addPlain(P, 'cu_seqlens', cu, false);
    P.set('num_seqs', cu.length - 1);
    tensors.cuSeqlens = new Tensor('int32', cu, [cu.length]);
  }
  if (entry === 'forward') {
    addView('y', fresh(c.dtype, yDims), [b, L, h], p, ['batch', 'seq', 'head'], true);
    if (c.finalStates) {
      addPlain(P, 'final_states', new Float32Array(b * h * p * n).fill(NaN), true);
      options.returnFinalStates = true;
    }
    if (c.yUngated) {
      addView('y_ungated', fresh(c.dtype, yDims), [b, L, h], p, ['batch', 'seq', 'head'], true);
      options.returnUngated = true;
    }
    if (cu) {
      addPlain(P, 'varlen_states', new Float32Array((cu.length - 1) * h * p * n).fill(NaN), true);
      options.returnVarlenStates = true;
    }
  } else {
    built.dy = Tensor.fromFloat32(c.dtype, rng.normals(b * L * h * p), yDims);
    const dy = addView('dy', built.dy, [b, L, h], p, ['batch', 'seq', 'head'], false);
    built.dy = dy;
    if (c.finalStates) {
      built.dFinalStates = new Tensor('float32', rng.normals(b * h * p * n), [b, h, p, n]);
      addPlain(top, 'd_final_states', built.dFinalStates.data as Float32Array, false);
    }
    if (c.yUngated) {
      // read by the CUDA backward only (the CPU recomputes): a forward's yUngated would be right; zeros are fine on the CPU
      addView('y_ungated', fresh(c.dtype, yDims), [b, L, h], p, ['batch', 'seq', 'head'], false, true);
    }
    addView('dx', fresh(c.dtype, yDims), [b, L, h], p, ['batch', 'seq', 'head'], true);
    addView('ddt', fresh(c.dtype, [b, L, h]), [b, L], h, ['batch', 'seq'], true);
    addView('dB', fresh(c.dtype, [b, L, g, n]), [b, L, g], n, ['batch', 'seq', 'group'], true);
    addView('dC', fresh(c.dtype, [b, L, g, n]), [b, L, g], n, ['batch', 'seq', 'group'], true);
    addPlain(top, 'dA', new Float32Array(h).fill(NaN), true);
    if (ex.inputs.D) addPlain(top, 'dD', new Float32Array(ex.inputs.D.size).fill(NaN), true);
    if (ex.inputs.z) addView('dz', fresh(c.dtype, yDims), [b, L, h], p, ['batch', 'seq', 'head'], true);
    if (ex.inputs.dtBias) addPlain(top, 'd_dt_bias', new Float32Array(h).fill(NaN), true);
    if (ex.inputs.initialStates) addPlain(top, 'd_initial_states', new Float32Array(b * h * p * n).fill(NaN), true);
  }
  built.inputs = tensors;
  built.options = options;
  // a pack's reference is its seqIdx row (sequence k's positions get k)
  let seqIdx: Int32Array | undefined;
  if (cu) {
    seqIdx = new Int32Array(L);
    for (let k = 0; k + 1 < cu.length; k++) seqIdx.fill(k, cu[k], cu[k + 1]);
  }
  built.ref = withOptions(seqIdx ? { ...ex.ref, seqIdx } : ex.ref, options);
  return built;
}

/** A valid SsdStepParams block with random views. */
export function buildStepBlock(consumer: RawConsumer, layouts: Layouts, c: AbiCase): Built {
  const rng = new Random(c.seed);
  const h = c.ngroups * c.headsPerGroup;
  const { batch: b, headdim: p, ngroups: g, dstate: n } = c;
  const rows = c.stateIndices ? b + c.stateIndices.extraRows : b;
  const ex = makeExample(rng, { batch: b, seqlen: 1, nheads: h, headdim: p, ngroups: g, dstate: n }, { dtype: c.dtype, D: c.D, z: c.z, dtBias: c.dtBias, positiveDt: !c.dtSoftplus });
  const S = new Block(consumer, layouts.SsdStepParams);
  const built: Built = { entry: 'step', c, block: S, params: S, views: {}, plain: {}, plainOwner: {}, outputs: [] };
  const squeeze = (t: Tensor): Tensor => new Tensor(t.type as 'float32', t.data as Float32Array, [t.dims[0], ...t.dims.slice(2)]);
  const addView = (name: string, t: Tensor, outer: number[], inner: number, dims: string[], output: boolean): Tensor => {
    const view = makeView(elements(t), outer, inner, c.layouts[name] ?? CONTIGUOUS, output, elementFill(t.type, output));
    const bv: BlockView = { view, field: name, strideFields: strideNames(name, dims), typeField: `${name}_type`, type: t.type, output, exclusive: output, owner: S };
    built.views[name] = bv;
    S.set(name, view.data);
    view.strides.forEach((s, i) => S.set(bv.strideFields[i], s));
    S.set(`${name}_type`, DTYPE_CODE[t.type as FloatType]);
    if (output) built.outputs.push({ name, data: view.data, before: view.data.slice() });
    return tensorOf(t.type, gather(view), t.dims);
  };
  const addPlain = (field: string, data: Elements, output: boolean): void => {
    built.plain[field] = data;
    built.plainOwner[field] = S;
    S.set(field, data);
    if (output) built.outputs.push({ name: field, data, before: data.slice() });
  };
  for (const [k, v] of [['batch', b], ['nheads', h], ['headdim', p], ['ngroups', g], ['dstate', n], ['state_rows', rows]] as [string, number][]) S.set(k, v);
  const inputs: SsdStepInputs = {
    x: addView('x', squeeze(ex.inputs.x), [b, h], p, ['batch', 'head'], false),
    dt: addView('dt', squeeze(ex.inputs.dt), [b], h, ['batch'], false),
    A: ex.inputs.A,
    B: addView('B', squeeze(ex.inputs.B), [b, g], n, ['batch', 'group'], false),
    C: addView('C', squeeze(ex.inputs.C), [b, g], n, ['batch', 'group'], false),
  };
  if (ex.inputs.z) inputs.z = addView('z', squeeze(ex.inputs.z), [b, h], p, ['batch', 'head'], false);
  else S.set('z_type', DTYPE_CODE[c.dtype]);
  addPlain('A', Float32Array.from(ex.inputs.A.toFloat32()), false);
  if (ex.inputs.D) {
    inputs.D = ex.inputs.D;
    addPlain('D', Float32Array.from(ex.inputs.D.toFloat32()), false);
    S.set('D_per_channel', c.D === 'channel' ? 1 : 0);
  }
  if (ex.inputs.dtBias) {
    inputs.dtBias = ex.inputs.dtBias;
    addPlain('dt_bias', Float32Array.from(ex.inputs.dtBias.toFloat32()), false);
  }
  if (c.stateIndices) {
    const order = Array.from({ length: rows }, (_, i) => i);
    for (let i = rows - 1; i > 0; i--) {
      const j = Math.floor(rng.uniform() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    const indices = Int32Array.from(order.slice(0, b).map((r) => (rng.uniform() < 0.2 ? -1 : r)));
    addPlain('state_indices', indices, false);
    inputs.stateIndices = new Tensor('int32', indices.slice(), [b]);
  }
  const state = Tensor.fromFloat32(c.stateType, rng.normals(rows * h * p * n, 0.5), [rows, h, p, n]);
  addPlain('state', (state.data as Elements).slice(), true);
  S.set('state_type', DTYPE_CODE[c.stateType]);
  const lo = c.dtLimit ? 0.01 : 0;
  const hi = c.dtLimit ? 0.2 : Infinity;
  S.set('dt_softplus', c.dtSoftplus ? 1 : 0).set('dt_min', lo).set('dt_max', hi);
  addView('y', Tensor.fromFloat32(c.dtype, new Float32Array(b * h * p), [b, h, p]), [b, h], p, ['batch', 'head'], true);
  built.stepInputs = inputs;
  built.stepOptions = { dtSoftplus: c.dtSoftplus, ...(c.dtLimit ? { dtLimit: [lo, hi] as [number, number] } : {}) };
  built.stepState = state;
  return built;
}

/** Whether every output buffer holds what it held before the call. */
export function outputsUntouched(built: Built): string | null {
  for (const o of built.outputs) if (!sameElements(o.data, o.before)) return o.name;
  return null;
}

// ---- Malformed blocks ----------------------------------------------------------------------------

/** One way to break a valid block, with the status and message the entry must answer. */
export interface Mutation {
  name: string;
  apply(): void;
  status: number;
  message: RegExp;
}

const SIZE_VALUES: (number | bigint)[] = [0, -1, -(2 ** 31), 2 ** 31, 2 ** 40, INT64_MIN, INT64_MAX];
const CHUNK_VALUES: (number | bigint)[] = [0, -16, 8, 15, 17, 48, 255, 512, 2 ** 33, INT64_MIN, INT64_MAX];
const DTYPE_VALUES = [3, -1, 255, 2 ** 31 - 1, -(2 ** 31)];
const BIG = 2 ** 31 - 1;

function m(name: string, apply: () => void, message: RegExp, status = SSD_ERR_INVALID_ARGUMENT): Mutation {
  return { name, apply, status, message };
}

/** The stride mutations of a view: negative, past 64-bit offsets, and (outputs) overlapping. */
function viewMutations(B: Block, bv: BlockView, prefix: string): Mutation[] {
  const out: Mutation[] = [];
  bv.view.outer.forEach((extent, d) => {
    if (extent <= 1) return;
    const field = bv.strideFields[d];
    for (const v of [-1, -1000, INT64_MIN]) out.push(m(`${field} = ${v}`, () => B.set(field, v), new RegExp(`${prefix}: expected a stride >= 0 for dimension`)));
    for (const v of [2 ** 62, INT64_MAX]) out.push(m(`${field} = ${v}`, () => B.set(field, v), new RegExp(`${prefix}: strides reach past 64-bit offsets`)));
    if (bv.exclusive) out.push(m(`${field} = 0 (elements sharing memory)`, () => B.set(field, 0), new RegExp(`${prefix}: strides overlap`)));
  });
  return out;
}

/** Misaligned pointers: a present pointer moved by one byte (and two and three, for 4-byte elements); `label` names it in the message. */
function misaligned(B: Block, field: string, bytes: number, label = field): Mutation[] {
  const at = B.get(field);
  if (at === 0n) return [];
  const shifts = bytes === 4 ? [1n, 2n, 3n] : [1n];
  return shifts.map((s) => m(`${field} + ${s} byte(s)`, () => B.set(field, at + s), new RegExp(`${label}: expected a pointer aligned to its ${bytes}-byte elements`)));
}

const BYTES: Record<TensorType, number> = { float32: 4, bfloat16: 2, float16: 2, int32: 4 };

/** The SsdParams part's mutations, for a forward or a backward. */
function paramsMutations(built: Built, cuda: boolean): Mutation[] {
  const P = built.params;
  const c = built.c;
  const h = c.ngroups * c.headsPerGroup;
  const backward = built.entry === 'backward';
  const prefix = backward ? 'dx/' : '';
  const out: Mutation[] = [];
  for (const size of ['batch', 'seqlen', 'nheads', 'headdim', 'ngroups', 'dstate']) {
    for (const v of SIZE_VALUES) out.push(m(`${size} = ${v}`, () => P.set(size, v), new RegExp(`^${size} must be in \\[1, 2\\^31-1\\], got`)));
  }
  out.push(m(`ngroups = nheads + 1`, () => P.set('ngroups', h + 1), /ngroups \(\d+\) must divide nheads/));
  for (const v of CHUNK_VALUES) out.push(m(`chunk_size = ${v}`, () => P.set('chunk_size', v), /^chunk_size must be a power of two in \[16, 256\], got/));
  for (const fields of [['batch', 'seqlen', 'nheads', 'headdim'], ['batch', 'nheads', 'headdim', 'dstate']]) {
    const apply = (): void => {
      for (const f of fields) P.set(f, BIG);
      P.set('ngroups', 1);
    };
    out.push(m(`${fields.join('·')} past 2^53`, apply, /^tensor sizes overflow 64-bit indexing$/));
  }
  const required = backward ? /^x, dt, A, B and C are required$/ : /^x, dt, A, B, C and y are required$/;
  for (const f of backward ? ['x', 'dt', 'A', 'B', 'C'] : ['x', 'dt', 'A', 'B', 'C', 'y']) out.push(m(`${f} = NULL`, () => P.set(f, null), required));
  for (const f of backward ? ['x_type', 'dt_type', 'B_type', 'C_type', 'z_type'] : ['x_type', 'dt_type', 'B_type', 'C_type', 'z_type', 'y_type']) {
    for (const v of DTYPE_VALUES) out.push(m(`${f} = ${v}`, () => P.set(f, v), /^unknown dtype code/));
  }
  const someBuffer = built.views.x.view.data;
  if (!c.z) out.push(m('y_ungated without z', () => P.set('y_ungated', someBuffer), /^y_ungated needs z/));
  else out.push(m('y_ungated of dtype code 7', () => P.set('y_ungated', someBuffer).set('y_ungated_type', 7), /^unknown dtype code 7 for y_ungated$/));
  for (const [lo, hi] of [[1, 0.5], [NaN, 1], [0, NaN], [Infinity, 1]]) {
    out.push(m(`dt_min ${lo}, dt_max ${hi}`, () => P.set('dt_min', lo).set('dt_max', hi), /^dt_min must not exceed dt_max/));
  }
  for (const v of [2, -1, 2 ** 31 - 1]) out.push(m(`D_per_channel = ${v}`, () => P.set('D_per_channel', v), /D_per_channel: expected 0 \(D is \(h\)\) or 1/));
  if (!P.get('cu_seqlens')) {
    out.push(m('varlen_states without cu_seqlens', () => P.set('varlen_states', new Float32Array(4)), /^varlen_states needs cu_seqlens$/));
    const cu = Int32Array.from([0, c.seqlen]);
    if (c.batch > 1) out.push(m('cu_seqlens with batch > 1', () => P.set('cu_seqlens', cu).set('num_seqs', 1), /^cu_seqlens needs batch 1 and excludes seq_idx and initial_states$/));
    if (P.get('seq_idx')) out.push(m('cu_seqlens with seq_idx', () => P.set('cu_seqlens', cu).set('num_seqs', 1), /^cu_seqlens needs batch 1 and excludes seq_idx and initial_states$/));
    if (P.get('initial_states')) out.push(m('cu_seqlens with initial_states', () => P.set('cu_seqlens', cu).set('num_seqs', 1), /^cu_seqlens needs batch 1 and excludes seq_idx and initial_states$/));
  } else {
    for (const v of [0, -1, 2 ** 31 - 1, 2 ** 40]) out.push(m(`num_seqs = ${v}`, () => P.set('num_seqs', v), /^num_seqs must be in \[1, 2\^31-2\], got/));
    if (backward) {
      const states = new Float32Array(c.dstate * c.headdim * h);
      out.push(m('the backward given varlen_states', () => P.set('varlen_states', states), /^the backward does not take varlen_states/));
      out.push(m('d_initial_states with cu_seqlens', () => built.block.set('d_initial_states', states), /^d_initial_states needs no cu_seqlens/));
    }
    if (!cuda) {
      // values are read on the host (the CPU path): a copy of the offsets, broken
      const cu = built.plain.cu_seqlens as Int32Array;
      const L = c.seqlen;
      out.push(m('cu_seqlens[0] = 1', () => P.set('cu_seqlens', Int32Array.from(cu, (v, i) => (i === 0 ? 1 : v))), /^cu_seqlens must start at 0 and end at seqlen/));
      out.push(m('cu_seqlens ending past seqlen', () => P.set('cu_seqlens', Int32Array.from(cu, (v, i) => (i === cu.length - 1 ? L + 1 : v))), /^cu_seqlens must start at 0 and end at seqlen/));
      if (L >= 1) out.push(m('decreasing cu_seqlens', () => P.set('cu_seqlens', Int32Array.from([0, L, 0, L])).set('num_seqs', 3), /^cu_seqlens must be non-decreasing/));
    }
  }
  // in the backward, the forward's views are checked with dx in y's place, and named 'dx/...'
  for (const [name, bv] of Object.entries(built.views)) {
    if (!['x', 'dt', 'B', 'C', 'z', 'y', 'y_ungated', 'seq_idx'].includes(name)) continue;
    out.push(...viewMutations(P, bv, `${prefix}${name}`));
    out.push(...misaligned(P, name, BYTES[bv.type], `${prefix}${name}`));
  }
  for (const f of ['A', 'D', 'dt_bias', 'initial_states', 'final_states', 'cu_seqlens', 'varlen_states']) out.push(...misaligned(P, f, 4, `${prefix}${f}`));
  return out;
}

/** The backward's own mutations (beyond its fwd block). */
function backwardMutations(built: Built): Mutation[] {
  const T = built.block;
  const P = built.params;
  const out: Mutation[] = [];
  for (const f of ['dy', 'dx', 'ddt', 'dA', 'dB', 'dC']) out.push(m(`${f} = NULL`, () => T.set(f, null), /^dy, dx, ddt, dA, dB and dC are required$/));
  if (!P.get('D')) out.push(m('dD without D', () => T.set('dD', new Float32Array(8)), /^dD needs D and dz needs z$/));
  if (!P.get('z')) out.push(m('dz without z', () => T.set('dz', built.views.dx.view.data), /^dD needs D and dz needs z$/));
  for (const f of ['dy_type', 'dx_type', 'ddt_type', 'dB_type', 'dC_type', ...(P.get('z') ? ['dz_type'] : [])]) {
    for (const v of DTYPE_VALUES) out.push(m(`${f} = ${v}`, () => T.set(f, v), /^unknown dtype code/));
  }
  for (const name of ['dy', 'ddt', 'dB', 'dC', 'dz']) {
    const bv = built.views[name];
    if (bv) out.push(...viewMutations(T, bv, name));
  }
  // dx is checked in y's place of the forward's views: 'dx/y'
  const dx = built.views.dx;
  out.push(...viewMutations(T, dx, 'dx/y'));
  out.push(...misaligned(T, 'dx', BYTES[dx.type], 'dx/y'));
  for (const name of ['dy', 'ddt', 'dB', 'dC', 'dz']) {
    const bv = built.views[name];
    if (bv) out.push(...misaligned(T, name, BYTES[bv.type]));
  }
  for (const f of ['dA', 'dD', 'd_dt_bias', 'd_initial_states', 'd_final_states']) out.push(...misaligned(T, f, 4));
  return out;
}

/** The step's mutations. */
function stepMutations(built: Built, cuda: boolean): Mutation[] {
  const S = built.block;
  const c = built.c;
  const h = c.ngroups * c.headsPerGroup;
  const out: Mutation[] = [];
  for (const size of ['batch', 'nheads', 'headdim', 'ngroups', 'dstate', 'state_rows']) {
    for (const v of SIZE_VALUES) out.push(m(`${size} = ${v}`, () => S.set(size, v), new RegExp(`^${size} must be in \\[1, 2\\^31-1\\], got`)));
  }
  out.push(m('ngroups = nheads + 1', () => S.set('ngroups', h + 1), /ngroups \(\d+\) must divide nheads/));
  if (!S.get('state_indices')) out.push(m('state_rows != batch without state_indices', () => S.set('state_rows', c.batch + 1), /^without state_indices, state_rows \(\d+\) must equal batch/));
  const overflow = (): void => {
    for (const f of ['batch', 'state_rows', 'nheads', 'headdim', 'dstate']) S.set(f, BIG);
    S.set('ngroups', 1);
  };
  out.push(m('state_rows·nheads·headdim·dstate past 2^53', overflow, /^tensor sizes overflow 64-bit indexing$/));
  for (const f of ['state', 'x', 'dt', 'A', 'B', 'C', 'y']) out.push(m(`${f} = NULL`, () => S.set(f, null), /^state, x, dt, A, B, C and y are required$/));
  for (const v of [2, 3, -1, 255]) out.push(m(`state_type = ${v}`, () => S.set('state_type', v), /^the state must be float32 or bfloat16, got dtype code/));
  for (const f of ['x_type', 'dt_type', 'B_type', 'C_type', 'y_type', 'z_type']) {
    for (const v of DTYPE_VALUES) out.push(m(`${f} = ${v}`, () => S.set(f, v), /^unknown dtype code/));
  }
  for (const [lo, hi] of [[1, 0.5], [NaN, 1], [0, NaN]]) out.push(m(`dt_min ${lo}, dt_max ${hi}`, () => S.set('dt_min', lo).set('dt_max', hi), /^dt_min must not exceed dt_max/));
  for (const v of [2, -1, 2 ** 31 - 1]) out.push(m(`D_per_channel = ${v}`, () => S.set('D_per_channel', v), /D_per_channel: expected 0 \(D is \(h\)\) or 1/));
  for (const bv of Object.values(built.views)) out.push(...viewMutations(S, bv, bv.field));
  for (const bv of Object.values(built.views)) out.push(...misaligned(S, bv.field, BYTES[bv.type]));
  out.push(...misaligned(S, 'state', c.stateType === 'float32' ? 4 : 2));
  for (const f of ['A', 'D', 'dt_bias', 'state_indices']) out.push(...misaligned(S, f, 4));
  if (S.get('state_indices') && !cuda) {
    const rows = Number(S.get('state_rows'));
    const indices = built.plain.state_indices as Int32Array;
    out.push(m('a state index past the last row', () => S.set('state_indices', Int32Array.from(indices, (v, i) => (i === 0 ? rows : v))), /^state_indices\[0\] = \d+ is past the last state row/));
    out.push(m('a state index of 2^31 - 1', () => S.set('state_indices', Int32Array.from(indices, (v, i) => (i === indices.length - 1 ? 2 ** 31 - 1 : v))), /is past the last state row/));
    if (c.batch >= 2) out.push(m('a state row used twice', () => S.set('state_indices', Int32Array.from(indices, (_, i) => (i < 2 ? 0 : -1))), /^state_indices uses state row 0 more than once$/));
  }
  return out;
}

/** Every mutation of a valid block that its entry can tell apart from a good one. */
export function mutationsOf(built: Built, cuda = false): Mutation[] {
  if (built.entry === 'step') return stepMutations(built, cuda);
  return [...paramsMutations(built, cuda), ...(built.entry === 'backward' ? backwardMutations(built) : [])];
}

/** Whether an output view's gaps (the elements between its rows) hold what they held before the call. */
export function gapsIntact(bv: BlockView, before: ArrayLike<number>): boolean {
  const touched = new Uint8Array(bv.view.data.length);
  forEachRow(bv.view.outer, bv.view.inner, bv.view.strides, (v) => touched.fill(1, v, v + bv.view.inner));
  const now = new Uint8Array(bv.view.data.buffer, bv.view.data.byteOffset, bv.view.data.byteLength);
  const was = new Uint8Array((before as Elements).buffer, (before as Elements).byteOffset, (before as Elements).byteLength);
  const size = bv.view.data.BYTES_PER_ELEMENT;
  for (let i = 0; i < touched.length; i++) {
    if (touched[i]) continue;
    for (let k = 0; k < size; k++) if (now[i * size + k] !== was[i * size + k]) return false;
  }
  return true;
}
