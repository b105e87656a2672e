/**
 * Validation of ssd() inputs and options, done in full before anything crosses into native code.
 * Message shape: "Expected <what> for <name> but received <what came>".
 */
import { SsdError, describe, rangeError, typeError } from './errors';
import { asTensor, dataProblem, type Tensor, type TensorLike, type TensorType } from './tensor';
import { CHUNK_SIZE, CHUNK_SIZE_RULE, FORWARD_INPUT_TYPES as TYPES, MIN_SIZE, MIN_SIZE_RULE, THREADS_RULE, isChunkSize, isThreadCount, type ScanSizes } from './rules';

export interface SsdInputs<T extends TensorLike = Tensor> {
  /** (batch, seqlen, nheads, headdim) */
  x: T;
  /** (batch, seqlen, nheads): raw step sizes */
  dt: T;
  /** (nheads): one log-decay rate per head, normally negative */
  A: T;
  /** (batch, seqlen, ngroups, dstate) */
  B: T;
  /** (batch, seqlen, ngroups, dstate) */
  C: T;
  /** (nheads) or (nheads, headdim): skip connection */
  D?: T;
  /** (batch, seqlen, nheads, headdim): output gate, y *= silu(z) */
  z?: T;
  /** (nheads): added to dt before softplus and clamping */
  dtBias?: T;
  /** (batch, nheads, headdim, dstate): the state before position 0 */
  initialStates?: T;
  /** (batch, seqlen) int32, non-decreasing: packed sequences; the state resets where it changes */
  seqIdx?: T;
  /**
   * (numSeqs + 1) int32, batch 1: packed sequences by their offsets (0 first, non-decreasing,
   * seqlen last), instead of seqIdx; the state resets at each sequence start. Excludes
   * initialStates.
   */
  cuSeqlens?: T;
}

export type SsdDevice = 'auto' | 'cpu' | 'cuda' | `cuda:${number}`;

export interface SsdOptions<T extends TensorLike = Tensor> {
  /** Chunk length of the chunked algorithm: a power of two from 16 to 256 (default 256). */
  chunkSize?: number;
  /** Apply softplus to dt + dtBias (identity above 20). Default false. */
  dtSoftplus?: boolean;
  /** Clamp the step size to [lo, hi] after softplus. Default [0, Infinity]. */
  dtLimit?: readonly [number, number];
  /** Also return the state after the last position, (batch, nheads, headdim, dstate) float32. */
  returnFinalStates?: boolean;
  /** With inputs.cuSeqlens: also return each sequence's final state, (numSeqs, nheads, headdim, dstate) float32. */
  returnVarlenStates?: boolean;
  /**
   * With inputs.z: also return `yUngated`, the output before the gate (y = yUngated · silu(z)), of y's
   * type and dims: mamba_chunk_scan_combined's out_x. Given back to ssdBackward() as
   * options.yUngated (ssdWithGrad() does so itself), it spares the CUDA backward recomputing it for
   * dz, at the price of one more tensor of y's size kept from the forward to the backward.
   */
  returnUngated?: boolean;
  /**
   * Where to run: 'auto' (default: the device of device tensors; with host tensors CUDA when it is
   * available and its path supports the call, else the CPU), 'cpu', 'cuda' or 'cuda:N'.
   */
  device?: SsdDevice;
  /** CPU threads, 1 to 1024 (default: the cores available to the process). */
  threads?: number;
  /**
   * Tensors to write the results into instead of new ones: `y` of x's type and dims,
   * `finalStates` float32 (batch, nheads, headdim, dstate) (requires returnFinalStates), on the
   * device the call runs on. Reusing outputs saves an allocation per call, which on some machines
   * costs more than the scan (fresh memory is slow to touch the first time). `yUngated` of y's type
   * and dims (requires returnUngated).
   */
  out?: { y?: T; finalStates?: T; varlenStates?: T; yUngated?: Tensor };
}

/**
 * Every option, one row each, in the order messages list them; its type and documentation are its
 * field in SsdOptions (a field without a row, or a row without a field, does not compile). ssd()
 * and ssdBackward() take them all, ssdStep() those with `step`. readOptions() puts each in the plan
 * under its name, by `kind`: 'flag', a boolean (default false); 'number', `default` or a number that
 * `ok` accepts (else a TypeError expecting `type`, or a RangeError expecting `rule`); 'own', its own
 * code (dtLimit, as dtMin and dtMax, and device in readOptions(); out with the tensors).
 * `native`: the addon takes the plan's value under the same name (nativeOptions()) and reads it
 * through its row in csrc/core/params.h. A new option is a field in SsdOptions and a row here.
 */
const OPTIONS = {
  chunkSize: { kind: 'number', default: CHUNK_SIZE.default, type: CHUNK_SIZE_RULE, rule: CHUNK_SIZE_RULE, ok: isChunkSize, native: true },
  dtSoftplus: { kind: 'flag', step: true, native: true },
  dtLimit: { kind: 'own', step: true },
  returnFinalStates: { kind: 'flag' },
  device: { kind: 'own', step: true },
  threads: { kind: 'number', default: 0, type: 'a positive integer', rule: THREADS_RULE, ok: isThreadCount, step: true, native: true },
  out: { kind: 'own', step: true },
  returnVarlenStates: { kind: 'flag' },
  returnUngated: { kind: 'flag' },
} as const satisfies Record<keyof SsdOptions, OptionRow>;

type OptionRow = { step?: true; native?: true } & (
  | { kind: 'flag' | 'own' }
  | { kind: 'number'; default: number; type: string; rule: string; ok: (value: number) => boolean }
);
type Rows = typeof OPTIONS;
export type OptionName = keyof Rows;
/** The options of ssdStep(). */
export type StepOptionName = { [K in OptionName]: Rows[K] extends { step: true } ? K : never }[OptionName];
type NativeName = { [K in OptionName]: Rows[K] extends { native: true } ? K : never }[OptionName];

/** The plan's value of each flag and number option among N. */
export type OptionValues<N extends OptionName> = {
  [K in N as Rows[K]['kind'] extends 'own' ? never : K]: Rows[K]['kind'] extends 'flag' ? boolean : number;
};
/** The plan fields of dtLimit and device. */
export interface OwnOptionValues {
  dtMin: number;
  dtMax: number;
  device: { kind: 'auto' | 'cpu' | 'cuda'; index: number };
}
/** What the addon takes of the options N (lib/native.ts): each native one, and dtLimit as dtMin and dtMax. */
export type NativeOptions<N extends OptionName> = OptionValues<N & NativeName> & Pick<OwnOptionValues, 'dtMin' | 'dtMax'>;

const INPUT_NAMES = ['x', 'dt', 'A', 'B', 'C', 'D', 'z', 'dtBias', 'initialStates', 'seqIdx', 'cuSeqlens'] as const;
export const OPTION_NAMES = Object.keys(OPTIONS) as OptionName[];
export const STEP_OPTION_NAMES = OPTION_NAMES.filter((name) => 'step' in OPTIONS[name]) as StepOptionName[];

/** The normalised description of one call. */
export interface SsdPlan extends ScanSizes, OptionValues<OptionName>, OwnOptionValues {
  /** sequences in inputs.cuSeqlens (0 without it) */
  numSeqs: number;
  xType: TensorType;
  out: { y?: Tensor; finalStates?: Tensor; varlenStates?: Tensor; yUngated?: Tensor };
}

/** The closest edit-distance match among `names`, for "did you mean" hints. */
function suggest(name: string, names: readonly string[]): string {
  let best = '';
  let bestDistance = Infinity;
  for (const candidate of names) {
    const a = name.toLowerCase();
    const b = candidate.toLowerCase();
    const row = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i++) {
      let previous = row[0];
      row[0] = i;
      for (let j = 1; j <= b.length; j++) {
        const saved = row[j];
        row[j] = Math.min(row[j] + 1, row[j - 1] + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
        previous = saved;
      }
    }
    if (row[b.length] < bestDistance) {
      bestDistance = row[b.length];
      best = candidate;
    }
  }
  return bestDistance <= 3 ? ` (did you mean '${best}'?)` : '';
}

export function checkKnownKeys(what: string, object: object, names: readonly string[]): void {
  for (const key of Object.keys(object)) {
    if (!names.includes(key)) {
      throw new SsdError(
        'ERR_SSD_OPTION',
        `Unknown ${what} '${key}'${suggest(key, names)}; expected one of ${names.join(', ')}`,
      );
    }
  }
}

/** `inputs`: an object { x, dt, A, B, C, ... } with only the keys `names`. */
export function checkInputsObject(inputs: unknown, names: readonly string[]): asserts inputs is Record<string, unknown> {
  if (!isPlainObject(inputs)) throw typeError('inputs', 'an object { x, dt, A, B, C, ... } of Tensors', inputs);
  checkKnownKeys('input', inputs, names);
}

/** `options`: an object with only the keys `names`, or undefined (read as {}). */
export function optionsObject(options: unknown, names: readonly string[]): Record<string, unknown> {
  if (options === undefined) options = {};
  if (!isPlainObject(options)) throw typeError('options', 'an object or undefined', options);
  checkKnownKeys('option', options, names);
  return options;
}

/** An object literal (or Object.create(null)): not an array, TypedArray, Map, Tensor or other class instance. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * Checks that `value` is a live tensor (a Tensor, or a foreign CPU tensor that asTensor() wraps) of
 * one of `types` with `rank` dims; returns it as a Tensor.
 */
export function tensorArg(name: string, arg: unknown, types: readonly TensorType[], rank: number, layout: string): Tensor {
  const value = asTensor(arg, name, `a Tensor ${layout}`);
  if (value.disposed) throw new SsdError('ERR_SSD_DISPOSED', `${name} was disposed before the call`);
  if (value.location === 'cpu') {
    // a Tensor's data was checked when it was made; since then its buffer may have been detached
    const problem = dataProblem(value.data);
    if (problem !== undefined) {
      throw new TypeError(`Expected a Tensor ${layout} for ${name} but received a Tensor whose data (${describe(value.data)}) is on ${problem}`);
    }
  }
  if (!types.includes(value.type)) {
    throw new TypeError(
      `Expected a Tensor of type ${types.map((t) => `'${t}'`).join(' or ')} for ${name} but received a Tensor of type '${value.type}'`,
    );
  }
  if (value.dims.length !== rank) {
    throw rangeError(name, `a ${rank}-D tensor ${layout}`, `${value.dims.length}-D dims [${value.dims.join(', ')}]`);
  }
  return value;
}

export function shapeError(name: string, expected: readonly number[], layout: string, got: readonly number[]): SsdError {
  return new SsdError(
    'ERR_SSD_SHAPE',
    `Expected dims [${expected.join(', ')}] ${layout} for ${name} but received [${got.join(', ')}]`,
  );
}

export function sameDims(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** Validates inputs and options; throws TypeError, RangeError or SsdError. */
export function validate(inputs: unknown, options: unknown): { inputs: SsdInputs; plan: SsdPlan } {
  checkInputsObject(inputs, INPUT_NAMES);
  const o = optionsObject(options, OPTION_NAMES);

  const x = tensorArg('inputs.x', inputs.x, TYPES.x, 4, '(batch, seqlen, nheads, headdim)');
  const [batch, seqlen, nheads, headdim] = x.dims;
  const dt = tensorArg('inputs.dt', inputs.dt, TYPES.dt, 3, '(batch, seqlen, nheads)');
  const A = tensorArg('inputs.A', inputs.A, TYPES.A, 1, '(nheads)');
  const B = tensorArg('inputs.B', inputs.B, TYPES.B, 4, '(batch, seqlen, ngroups, dstate)');
  const C = tensorArg('inputs.C', inputs.C, TYPES.C, 4, '(batch, seqlen, ngroups, dstate)');
  const ngroups = B.dims[2];
  const dstate = B.dims[3];

  checkSizes([
    ['batch', 'x.dims[0]', batch], ['seqlen', 'x.dims[1]', seqlen], ['nheads', 'x.dims[2]', nheads], ['headdim', 'x.dims[3]', headdim],
    ['ngroups', 'B.dims[2]', ngroups], ['dstate', 'B.dims[3]', dstate],
  ]);
  if (!sameDims(dt.dims, [batch, seqlen, nheads])) throw shapeError('inputs.dt', [batch, seqlen, nheads], '(batch, seqlen, nheads)', dt.dims);
  if (!sameDims(A.dims, [nheads])) throw shapeError('inputs.A', [nheads], '(nheads)', A.dims);
  if (!sameDims(B.dims, [batch, seqlen, ngroups, dstate])) {
    throw shapeError('inputs.B', [batch, seqlen, ngroups, dstate], '(batch, seqlen, ngroups, dstate)', B.dims);
  }
  if (!sameDims(C.dims, B.dims)) {
    throw shapeError('inputs.C', [batch, seqlen, ngroups, dstate], '(batch, seqlen, ngroups, dstate), the dims of B,', C.dims);
  }
  checkFiniteA(A);

  const result: SsdInputs = { x, dt, A, B, C, ...readSkipGateBias(inputs, x, '(batch, seqlen, nheads, headdim)') };
  if (inputs.initialStates !== undefined) {
    const s = tensorArg('inputs.initialStates', inputs.initialStates, TYPES.initialStates, 4, '(batch, nheads, headdim, dstate)');
    const expected = [batch, nheads, headdim, dstate];
    if (!sameDims(s.dims, expected)) throw shapeError('inputs.initialStates', expected, '(batch, nheads, headdim, dstate)', s.dims);
    result.initialStates = s;
  }
  if (inputs.seqIdx !== undefined) {
    const s = tensorArg('inputs.seqIdx', inputs.seqIdx, TYPES.seqIdx, 2, '(batch, seqlen)');
    if (!sameDims(s.dims, [batch, seqlen])) throw shapeError('inputs.seqIdx', [batch, seqlen], '(batch, seqlen)', s.dims);
    const data = s.location === 'cpu' ? (s.data as Int32Array) : new Int32Array(0);
    for (let b = 0; b < (s.location === 'cpu' ? batch : 0); b++) {
      for (let t = 1; t < seqlen; t++) {
        const i = b * seqlen + t;
        if (data[i] < data[i - 1]) {
          throw new SsdError(
            'ERR_SSD_VALUE',
            `Expected non-decreasing values along each row of inputs.seqIdx but received ${data[i]} after ${data[i - 1]} at [${b}, ${t}]`,
          );
        }
      }
    }
    result.seqIdx = s;
  }
  let numSeqs = 0;
  if (inputs.cuSeqlens !== undefined) {
    result.cuSeqlens = readCuSeqlens(inputs.cuSeqlens, result, batch, seqlen);
    numSeqs = result.cuSeqlens.dims[0] - 1;
  }

  const plan: SsdPlan = { ...readOptions(o, OPTION_NAMES), batch, seqlen, nheads, headdim, ngroups, dstate, numSeqs, xType: x.type, out: {} };
  if (plan.returnVarlenStates && result.cuSeqlens === undefined) {
    throw new SsdError('ERR_SSD_OPTION', 'options.returnVarlenStates needs inputs.cuSeqlens');
  }
  if (plan.returnUngated && result.z === undefined) {
    throw new SsdError('ERR_SSD_OPTION', 'options.returnUngated needs inputs.z (without the gate, yUngated would equal y)');
  }
  plan.out = readOut(o.out, plan, result);
  return { inputs: result, plan };
}

/**
 * inputs.cuSeqlens: int32 (numSeqs + 1) with numSeqs >= 1, batch 1, neither seqIdx nor
 * initialStates; values 0 first, non-decreasing, seqlen last (not read back from device memory).
 */
function readCuSeqlens(value: unknown, inputs: SsdInputs, batch: number, seqlen: number): Tensor {
  const cu = tensorArg('inputs.cuSeqlens', value, TYPES.cuSeqlens, 1, '(numSeqs + 1)');
  if (cu.dims[0] < 2) throw rangeError('inputs.cuSeqlens', 'at least 2 offsets (one sequence)', `dims [${cu.dims.join(', ')}]`);
  if (batch !== 1) {
    throw new SsdError('ERR_SSD_SHAPE', `Expected batch (x.dims[0]) 1 with inputs.cuSeqlens (sequences are packed along seqlen) but received ${batch}`);
  }
  if (inputs.seqIdx !== undefined) {
    throw new SsdError('ERR_SSD_VALUE', 'Expected inputs.seqIdx or inputs.cuSeqlens, not both, but received both');
  }
  if (inputs.initialStates !== undefined) {
    throw new SsdError('ERR_SSD_VALUE', 'Expected no inputs.initialStates with inputs.cuSeqlens (each packed sequence starts from a zero state) but received initialStates');
  }
  if (cu.location !== 'cpu') return cu;
  checkCuSeqlensValues(cu.data as Int32Array, seqlen);
  return cu;
}

/** The values of a host cuSeqlens: 0 first, non-decreasing, seqlen last; throws ERR_SSD_VALUE. */
export function checkCuSeqlensValues(data: Int32Array, seqlen: number): void {
  const last = data.length - 1;
  if (data[0] !== 0) throw new SsdError('ERR_SSD_VALUE', `Expected inputs.cuSeqlens[0] to be 0 but received ${data[0]}`);
  for (let k = 1; k <= last; k++) {
    if (data[k] < data[k - 1]) {
      throw new SsdError('ERR_SSD_VALUE', `Expected non-decreasing values in inputs.cuSeqlens but received ${data[k]} after ${data[k - 1]} at index ${k}`);
    }
  }
  if (data[last] !== seqlen) {
    throw new SsdError('ERR_SSD_VALUE', `Expected the last value of inputs.cuSeqlens to be seqlen (x.dims[1]) = ${seqlen} but received ${data[last]}`);
  }
}

/**
 * The plan's values of the options `names` (OPTIONS), read in table order but the flags last (the
 * order their checks have always had: the first wrong option is the one a message names).
 */
export function readOptions<N extends OptionName>(options: Record<string, unknown>, names: readonly N[]): OptionValues<N> & OwnOptionValues {
  const plan: Record<string, unknown> = { dtMin: 0, dtMax: Infinity, device: { kind: 'auto', index: 0 } };
  const isFlag = (name: N): boolean => OPTIONS[name].kind === 'flag';
  for (const name of [...names.filter((n) => !isFlag(n)), ...names.filter(isFlag)]) {
    const row: OptionRow = OPTIONS[name];
    const v = options[name];
    if (row.kind === 'flag') {
      if (v !== undefined && typeof v !== 'boolean') throw typeError(`options.${name}`, 'a boolean', v);
      plan[name] = v ?? false;
    } else if (row.kind === 'number') {
      if (v !== undefined && typeof v !== 'number') throw typeError(`options.${name}`, row.type, v);
      if (v !== undefined && !row.ok(v)) throw rangeError(`options.${name}`, row.rule, String(v));
      plan[name] = v ?? row.default;
    } else if (name === 'dtLimit' && v !== undefined) {
      [plan.dtMin, plan.dtMax] = readDtLimit(v);
    } else if (name === 'device' && v !== undefined) {
      plan.device = readDevice(v);
    }
  }
  return plan as OptionValues<N> & OwnOptionValues;
}

function readDtLimit(limit: unknown): [number, number] {
  if (!Array.isArray(limit) || limit.length !== 2 || typeof limit[0] !== 'number' || typeof limit[1] !== 'number') {
    throw typeError('options.dtLimit', 'an array [lo, hi] of two numbers', limit);
  }
  const [lo, hi] = limit as [number, number];
  if (Number.isNaN(lo) || Number.isNaN(hi)) throw rangeError('options.dtLimit', '[lo, hi] without NaN', `[${lo}, ${hi}]`);
  if (lo > hi) throw rangeError('options.dtLimit', '[lo, hi] with lo <= hi', `[${lo}, ${hi}]`);
  return [lo, hi];
}

function readDevice(d: unknown): OwnOptionValues['device'] {
  if (typeof d !== 'string') throw typeError('options.device', "'auto', 'cpu', 'cuda' or 'cuda:N'", d);
  const match = /^cuda:(\d+)$/.exec(d);
  if (d === 'auto' || d === 'cpu' || d === 'cuda') return { kind: d, index: 0 };
  if (match) return { kind: 'cuda', index: Number(match[1]) };
  throw rangeError('options.device', "'auto', 'cpu', 'cuda' or 'cuda:N'", describe(d));
}

/** The plan values the addon takes for a call of the options `names` (NativeOptions). */
export function nativeOptions<N extends OptionName>(plan: OptionValues<N> & OwnOptionValues, names: readonly N[]): NativeOptions<N> {
  const values: Record<string, unknown> = { dtMin: plan.dtMin, dtMax: plan.dtMax };
  for (const name of names) if ('native' in OPTIONS[name]) values[name] = (plan as Record<string, unknown>)[name];
  return values as NativeOptions<N>;
}

/** Checks options.out: each given tensor must have the type and dims of the result it replaces and must not be an input. */
function readOut(out: unknown, plan: SsdPlan, inputs: SsdInputs): SsdPlan['out'] {
  if (out === undefined) return {};
  if (!isPlainObject(out)) throw typeError('options.out', 'an object { y?, finalStates?, varlenStates?, yUngated? } of Tensors', out);
  checkKnownKeys('key of options.out', out, ['y', 'finalStates', 'varlenStates', 'yUngated']);
  const result: SsdPlan['out'] = {};
  const expectations: [('y' | 'finalStates' | 'varlenStates' | 'yUngated'), TensorType, number[], string][] = [
    ['y', plan.xType, [plan.batch, plan.seqlen, plan.nheads, plan.headdim], '(batch, seqlen, nheads, headdim)'],
    ['finalStates', 'float32', [plan.batch, plan.nheads, plan.headdim, plan.dstate], '(batch, nheads, headdim, dstate)'],
    ['varlenStates', 'float32', [plan.numSeqs, plan.nheads, plan.headdim, plan.dstate], '(numSeqs, nheads, headdim, dstate)'],
    ['yUngated', plan.xType, [plan.batch, plan.seqlen, plan.nheads, plan.headdim], '(batch, seqlen, nheads, headdim)'],
  ];
  for (const [name, type, dims, layout] of expectations) {
    const t = out[name];
    if (t === undefined) continue;
    const tensor = tensorArg(`options.out.${name}`, t, [type], 4, layout);
    if (!sameDims(tensor.dims, dims)) throw shapeError(`options.out.${name}`, dims, layout, tensor.dims);
    if (Object.values(inputs).includes(tensor)) {
      throw new SsdError('ERR_SSD_VALUE', `Expected options.out.${name} to be a tensor apart from the inputs but received one of them`);
    }
    result[name] = tensor;
  }
  if (result.finalStates && !plan.returnFinalStates) {
    throw new SsdError('ERR_SSD_OPTION', 'options.out.finalStates is given but options.returnFinalStates is not true');
  }
  if (result.varlenStates && !plan.returnVarlenStates) {
    throw new SsdError('ERR_SSD_OPTION', 'options.out.varlenStates is given but options.returnVarlenStates is not true');
  }
  if (result.yUngated && !plan.returnUngated) {
    throw new SsdError('ERR_SSD_OPTION', 'options.out.yUngated is given but options.returnUngated is not true');
  }
  if (result.y !== undefined && result.y === result.yUngated) {
    throw new SsdError('ERR_SSD_VALUE', 'Expected options.out.y and options.out.yUngated to be two tensors but received the same one twice');
  }
  return result;
}

/** inputs.D: a float tensor (nheads) or (nheads, headdim); shared by the forward and the step (which accept the same types for D). */
export function readD(value: unknown, nheads: number, headdim: number): Tensor {
  const D = asTensor(value, 'inputs.D', 'a Tensor (nheads) or (nheads, headdim)');
  const rank = D.dims.length === 2 ? 2 : 1;
  tensorArg('inputs.D', D, TYPES.D, rank, rank === 2 ? '(nheads, headdim)' : '(nheads) or a 2-D tensor (nheads, headdim)');
  const expected = rank === 2 ? [nheads, headdim] : [nheads];
  if (!sameDims(D.dims, expected)) throw shapeError('inputs.D', expected, rank === 2 ? '(nheads, headdim)' : '(nheads)', D.dims);
  return D;
}

/** A size and where it is read from, e.g. ['nheads', 'x.dims[2]', 4]. */
export type NamedSize = readonly [name: string, where: string, size: number];

/** Each size at least MIN_SIZE, then ngroups dividing nheads (both among the sizes); ssd() and ssdStep(). */
export function checkSizes(sizes: readonly NamedSize[]): void {
  const by = new Map<string, NamedSize>();
  for (const entry of sizes) {
    const [name, where, size] = entry;
    if (size < MIN_SIZE) throw rangeError(`${name} (${where})`, MIN_SIZE_RULE, String(size));
    by.set(name, entry);
  }
  const [, headsFrom, nheads] = by.get('nheads') as NamedSize;
  const [, groupsFrom, ngroups] = by.get('ngroups') as NamedSize;
  if (nheads % ngroups !== 0) {
    throw new SsdError('ERR_SSD_SHAPE', `Expected ngroups (${groupsFrom}) to divide nheads (${headsFrom}) = ${nheads} but received ngroups = ${ngroups}`);
  }
}

/** inputs.A's values finite. Values in device memory are not read back for this (documented in docs/semantics.md). */
export function checkFiniteA(A: Tensor): void {
  const aValues = A.location === 'cpu' ? A.toFloat32() : new Float32Array(0);
  for (let i = 0; i < aValues.length; i++) {
    if (!Number.isFinite(aValues[i])) {
      throw new SsdError('ERR_SSD_VALUE', `Expected finite values for inputs.A but received ${aValues[i]} at index ${i}`);
    }
  }
}

/**
 * inputs.D, inputs.z (x's dims, `layout`) and inputs.dtBias, each when given: the optional inputs
 * that ssd() and ssdStep() share.
 */
export function readSkipGateBias(inputs: Record<string, unknown>, x: Tensor, layout: string): { D?: Tensor; z?: Tensor; dtBias?: Tensor } {
  const [nheads, headdim] = x.dims.slice(-2);
  const result: { D?: Tensor; z?: Tensor; dtBias?: Tensor } = {};
  if (inputs.D !== undefined) result.D = readD(inputs.D, nheads, headdim);
  if (inputs.z !== undefined) {
    const z = tensorArg('inputs.z', inputs.z, TYPES.z, x.dims.length, layout);
    if (!sameDims(z.dims, x.dims)) throw shapeError('inputs.z', x.dims, `${layout}, the dims of x,`, z.dims);
    result.z = z;
  }
  if (inputs.dtBias !== undefined) result.dtBias = readDtBias(inputs.dtBias, nheads);
  return result;
}

/** inputs.dtBias: a float tensor (nheads); shared by the forward and the step (which accept the same types for dtBias). */
export function readDtBias(value: unknown, nheads: number): Tensor {
  const dtBias = tensorArg('inputs.dtBias', value, TYPES.dtBias, 1, '(nheads)');
  if (!sameDims(dtBias.dims, [nheads])) throw shapeError('inputs.dtBias', [nheads], '(nheads)', dtBias.dims);
  return dtBias;
}
