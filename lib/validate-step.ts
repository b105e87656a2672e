/**
 * Validation of ssdStep() arguments, done in full before anything crosses into native code,
 * including the values of host stateIndices. Same message shape as validate.ts.
 */
import { SsdError, typeError } from './errors';
import { STEP_INPUT_TYPES as TYPES, STEP_STATE_TYPES, type StepSizes } from './rules';
import type { Tensor, TensorLike } from './tensor';
import {
  checkFiniteA,
  checkInputsObject,
  checkKnownKeys,
  checkSizes,
  isPlainObject,
  optionsObject,
  readOptions,
  STEP_OPTION_NAMES,
  readSkipGateBias,
  sameDims,
  shapeError,
  tensorArg,
  type OptionValues,
  type OwnOptionValues,
  type SsdOptions,
  type StepOptionName,
} from './validate';

export interface SsdStepInputs<T extends TensorLike = Tensor> {
  /** (batch, nheads, headdim): the new token's input */
  x: T;
  /** (batch, nheads): raw step sizes */
  dt: T;
  /** (nheads) */
  A: T;
  /** (batch, ngroups, dstate) */
  B: T;
  /** (batch, ngroups, dstate) */
  C: T;
  /** (nheads) or (nheads, headdim) */
  D?: T;
  /** (batch, nheads, headdim): output gate */
  z?: T;
  /** (nheads) */
  dtBias?: T;
  /**
   * (batch) int32: the row of the state cache each batch entry steps; a negative entry marks
   * padding (its y is zeros, no row is touched). Non-negative entries must be distinct.
   */
  stateIndices?: T;
}

/**
 * dtSoftplus, dtLimit and device as for ssd(); with host tensors, device 'auto' runs the step on the
 * CPU (shipping the state to a GPU costs more than stepping it). threads: the CPU threads, 1 to 1024
 * (default: the cores available, fewer for a small state).
 */
export interface SsdStepOptions<T extends TensorLike = Tensor> extends Pick<SsdOptions, Exclude<StepOptionName, 'out'>> {
  /** A tensor to write y into (x's type, (batch, nheads, headdim)) instead of a new one. */
  out?: { y?: T };
}

const STEP_INPUT_NAMES = ['x', 'dt', 'A', 'B', 'C', 'D', 'z', 'dtBias', 'stateIndices'] as const;
const STATE_LAYOUT = '(rows, nheads, headdim, dstate)';

/** The normalised description of one step. */
export interface SsdStepPlan extends StepSizes, OptionValues<StepOptionName>, OwnOptionValues {
  /** rows of the state cache: state.dims[0] */
  stateRows: number;
  out: { y?: Tensor };
}

/** Validates a step's state, inputs and options; throws TypeError, RangeError or SsdError. */
export function validateStep(state: unknown, inputs: unknown, options: unknown): { state: Tensor; inputs: SsdStepInputs; plan: SsdStepPlan } {
  const s = tensorArg('state', state, STEP_STATE_TYPES, 4, STATE_LAYOUT);
  checkInputsObject(inputs, STEP_INPUT_NAMES);
  const opts = optionsObject(options, STEP_OPTION_NAMES);

  const x = tensorArg('inputs.x', inputs.x, TYPES.x, 3, '(batch, nheads, headdim)');
  const [batch, nheads, headdim] = x.dims;
  const dt = tensorArg('inputs.dt', inputs.dt, TYPES.dt, 2, '(batch, nheads)');
  const A = tensorArg('inputs.A', inputs.A, TYPES.A, 1, '(nheads)');
  const B = tensorArg('inputs.B', inputs.B, TYPES.B, 3, '(batch, ngroups, dstate)');
  const C = tensorArg('inputs.C', inputs.C, TYPES.C, 3, '(batch, ngroups, dstate)');
  const [, ngroups, dstate] = B.dims;
  const stateRows = s.dims[0];
  checkSizes([
    ['batch', 'x.dims[0]', batch], ['nheads', 'x.dims[1]', nheads], ['headdim', 'x.dims[2]', headdim],
    ['ngroups', 'B.dims[1]', ngroups], ['dstate', 'B.dims[2]', dstate],
    ['rows', 'state.dims[0]', stateRows],
  ]);
  if (!sameDims(dt.dims, [batch, nheads])) throw shapeError('inputs.dt', [batch, nheads], '(batch, nheads)', dt.dims);
  if (!sameDims(A.dims, [nheads])) throw shapeError('inputs.A', [nheads], '(nheads)', A.dims);
  if (!sameDims(B.dims, [batch, ngroups, dstate])) throw shapeError('inputs.B', [batch, ngroups, dstate], '(batch, ngroups, dstate)', B.dims);
  if (!sameDims(C.dims, B.dims)) throw shapeError('inputs.C', [batch, ngroups, dstate], '(batch, ngroups, dstate), the dims of B,', C.dims);
  if (!sameDims(s.dims.slice(1), [nheads, headdim, dstate])) {
    throw shapeError('state', [stateRows, nheads, headdim, dstate], STATE_LAYOUT, s.dims);
  }
  checkFiniteA(A);

  const result: SsdStepInputs = { x, dt, A, B, C, ...readSkipGateBias(inputs, x, '(batch, nheads, headdim)') };
  if (inputs.stateIndices !== undefined) {
    result.stateIndices = readStateIndices(inputs.stateIndices, batch, stateRows);
  } else if (stateRows !== batch) {
    throw new SsdError(
      'ERR_SSD_SHAPE',
      `Expected state.dims[0] to be batch (x.dims[0]) = ${batch} without inputs.stateIndices but received ${stateRows}; pass stateIndices to step rows of a larger cache`,
    );
  }

  const plan: SsdStepPlan = {
    batch,
    nheads,
    headdim,
    ngroups,
    dstate,
    stateRows,
    ...readOptions(opts, STEP_OPTION_NAMES),
    out: readStepOut(opts.out, x, s, result),
  };
  return { state: s, inputs: result, plan };
}

/** inputs.stateIndices: int32 (batch), each < rows, the non-negative ones distinct (not read back from device memory). */
function readStateIndices(value: unknown, batch: number, rows: number): Tensor {
  const t = tensorArg('inputs.stateIndices', value, TYPES.stateIndices, 1, '(batch)');
  if (!sameDims(t.dims, [batch])) throw shapeError('inputs.stateIndices', [batch], '(batch)', t.dims);
  if (t.location !== 'cpu') return t;
  const data = t.data as Int32Array;
  const seen = new Map<number, number>();
  for (let i = 0; i < data.length; i++) {
    const row = data[i];
    if (row >= rows) {
      throw new SsdError('ERR_SSD_VALUE', `Expected inputs.stateIndices entries below the state's ${rows} rows (state.dims[0]) but received ${row} at index ${i}`);
    }
    if (row < 0) continue;
    const first = seen.get(row);
    if (first !== undefined) {
      throw new SsdError(
        'ERR_SSD_VALUE',
        `Expected distinct non-negative inputs.stateIndices (each state row stepped at most once per call) but received row ${row} at indices ${first} and ${i}`,
      );
    }
    seen.set(row, i);
  }
  return t;
}

function readStepOut(out: unknown, x: Tensor, state: Tensor, inputs: SsdStepInputs): SsdStepPlan['out'] {
  if (out === undefined) return {};
  if (!isPlainObject(out)) throw typeError('options.out', 'an object { y? } of Tensors', out);
  checkKnownKeys('key of options.out', out, ['y']);
  if (out.y === undefined) return {};
  const y = tensorArg('options.out.y', out.y, [x.type], 3, '(batch, nheads, headdim)');
  if (!sameDims(y.dims, x.dims)) throw shapeError('options.out.y', x.dims, '(batch, nheads, headdim)', y.dims);
  if (y === state || Object.values(inputs).includes(y)) {
    throw new SsdError('ERR_SSD_VALUE', 'Expected options.out.y to be a tensor apart from the state and the inputs but received one of them');
  }
  return { y };
}
