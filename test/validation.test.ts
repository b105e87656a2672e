/**
 * Validation of ssd() / ssdSync() inputs and options: every rejected input by error class
 * (TypeError, RangeError, SsdError with its code) and message ("Expected <what> for <name> but
 * received <what came>"). Async calls reject; sync calls throw: every case below runs both ways.
 *
 * Validation happens in TypeScript before any native call, so these tests need the native addon
 * only for device 'cuda' (which asks the addon what CUDA can do). Inputs that are valid but odd
 * are checked with `validate` directly, which never touches the addon.
 */
import { SsdError, Tensor, backends, ssd, ssdSync, type SsdErrorCode, type SsdInputs } from '../lib/index';
import { validate } from '../lib/validate';
import { Random, makeExample, type ExampleConfig } from './reference';

const CONFIG: ExampleConfig = { batch: 2, seqlen: 5, nheads: 4, headdim: 3, ngroups: 2, dstate: 6 };
const { batch: b, seqlen: L, nheads: h, headdim: p, ngroups: g, dstate: n } = CONFIG;

/** Fresh inputs with every optional input present (D per head, z, dtBias, initialStates, seqIdx). */
function fullInputs(seed = 7): SsdInputs {
  return makeExample(new Random(seed), CONFIG, { D: 'head', z: true, dtBias: true, initialStates: true, seqStarts: [2] }).inputs;
}

/** Fresh inputs with only x, dt, A, B, C. */
function requiredInputs(seed = 7): SsdInputs {
  return makeExample(new Random(seed), CONFIG, { D: 'none' }).inputs;
}

/** A float32 tensor of zeros with these dims. */
function zeros(dims: number[], type: 'float32' | 'bfloat16' | 'float16' = 'float32'): Tensor {
  const size = dims.reduce((a, d) => a * d, 1);
  return type === 'float32' ? new Tensor(type, new Float32Array(size), dims) : new Tensor(type, new Uint16Array(size), dims);
}

/** `inputs` with one entry replaced (or removed, for `undefined` with remove = true). */
function withInput(name: string, value: unknown, remove = false): Record<string, unknown> {
  const inputs: Record<string, unknown> = { ...fullInputs() };
  if (remove) delete inputs[name];
  else inputs[name] = value;
  return inputs;
}

interface ErrorCase {
  /** test title */
  title: string;
  inputs: () => unknown;
  options?: unknown;
  kind: 'TypeError' | 'RangeError' | 'SsdError';
  code?: SsdErrorCode;
  /** substrings (or patterns) the message must contain: the argument, the expectation, what came */
  message: (string | RegExp)[];
  /**
   * whether the message must have the shape "Expected <what> for <name> but received <what came>"
   * (default), only "Expected <what> but received <what came>" ('loose': the name sits inside <what>),
   * or neither (false)
   */
  shaped?: boolean | 'loose';
}

const SHAPE = /^Expected .+ for .+ but received .+$/s;
const LOOSE_SHAPE = /^Expected .+ but received .+$/s;

function checkError(err: unknown, c: ErrorCase): void {
  expect(err).toBeInstanceOf(Error);
  const e = err as Error & { code?: unknown };
  switch (c.kind) {
    case 'TypeError':
      expect(e).toBeInstanceOf(TypeError);
      expect(e).not.toBeInstanceOf(SsdError);
      expect(e.name).toBe('TypeError');
      break;
    case 'RangeError':
      expect(e).toBeInstanceOf(RangeError);
      expect(e).not.toBeInstanceOf(SsdError);
      expect(e.name).toBe('RangeError');
      break;
    case 'SsdError':
      expect(e).toBeInstanceOf(SsdError);
      expect(e).not.toBeInstanceOf(TypeError);
      expect(e).not.toBeInstanceOf(RangeError);
      expect(e.name).toBe('SsdError');
      expect(c.code).toBeDefined();
      expect(e.code).toBe(c.code);
      break;
  }
  expect(c.message.length).toBeGreaterThan(0);
  for (const part of c.message) {
    if (typeof part === 'string') expect(e.message).toContain(part);
    else expect(e.message).toMatch(part);
  }
  if (c.shaped === 'loose') expect(e.message).toMatch(LOOSE_SHAPE);
  else if (c.shaped !== false) expect(e.message).toMatch(SHAPE);
}

/** Runs a case through ssdSync (must throw) and ssd (must return a Promise that rejects). */
function runBoth(cases: ErrorCase[]): void {
  describe.each(cases)('$title', (c) => {
    it('ssdSync throws', () => {
      let thrown: unknown;
      try {
        ssdSync(c.inputs() as SsdInputs, c.options as never);
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeDefined();
      checkError(thrown, c);
    });

    it('ssd rejects (and does not throw synchronously)', async () => {
      let promise: Promise<unknown> | undefined;
      expect(() => {
        promise = ssd(c.inputs() as SsdInputs, c.options as never);
      }).not.toThrow();
      expect(promise).toBeInstanceOf(Promise);
      let rejected: unknown;
      await promise!.then(
        () => {
          throw new Error('expected ssd() to reject, but it resolved');
        },
        (err: unknown) => {
          rejected = err;
        },
      );
      expect(rejected).toBeDefined();
      checkError(rejected, c);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// The inputs object itself
// ---------------------------------------------------------------------------------------------

describe('inputs and options that are not objects', () => {
  const expectation = 'Expected an object { x, dt, A, B, C, ... } of Tensors for inputs';
  runBoth([
    { title: 'inputs undefined', inputs: () => undefined, kind: 'TypeError', message: [expectation, 'but received undefined'] },
    { title: 'inputs null', inputs: () => null, kind: 'TypeError', message: [expectation, 'but received null'] },
    { title: 'inputs a number', inputs: () => 42, kind: 'TypeError', message: [expectation, 'but received number 42'] },
    { title: 'inputs a string', inputs: () => 'x', kind: 'TypeError', message: [expectation, 'but received the string "x"'] },
    { title: 'inputs an array', inputs: () => [1, 2], kind: 'TypeError', message: [expectation, 'but received an array of length 2'] },
    {
      title: 'inputs a Float32Array',
      inputs: () => new Float32Array(3),
      kind: 'TypeError',
      message: [expectation, 'but received a Float32Array of length 3'],
    },
    {
      title: 'options a number',
      inputs: () => fullInputs(),
      options: 5,
      kind: 'TypeError',
      message: ['Expected an object or undefined for options', 'but received number 5'],
    },
    {
      title: 'options null',
      inputs: () => fullInputs(),
      options: null,
      kind: 'TypeError',
      message: ['Expected an object or undefined for options', 'but received null'],
    },
    {
      title: 'options an array',
      inputs: () => fullInputs(),
      options: [],
      kind: 'TypeError',
      message: ['Expected an object or undefined for options', 'but received an array of length 0'],
    },
  ]);
});

describe('unknown input and option names', () => {
  const inputList = 'expected one of x, dt, A, B, C, D, z, dtBias, initialStates, seqIdx';
  const optionList = 'expected one of chunkSize, dtSoftplus, dtLimit, returnFinalStates, device, threads';
  const unknown = (key: string, where: 'inputs' | 'options'): Pick<ErrorCase, 'inputs' | 'options'> => {
    if (where === 'inputs') return { inputs: () => ({ ...fullInputs(), [key]: zeros([h]) }) };
    return { inputs: () => fullInputs(), options: { [key]: 1 } };
  };
  runBoth([
    {
      title: "input 'dtbias' suggests 'dtBias'",
      ...unknown('dtbias', 'inputs'),
      kind: 'SsdError',
      code: 'ERR_SSD_OPTION',
      message: ["Unknown input 'dtbias'", "(did you mean 'dtBias'?)", inputList],
      shaped: false,
    },
    {
      title: "input 'seq_idx' suggests 'seqIdx'",
      ...unknown('seq_idx', 'inputs'),
      kind: 'SsdError',
      code: 'ERR_SSD_OPTION',
      message: ["Unknown input 'seq_idx'", "(did you mean 'seqIdx'?)", inputList],
      shaped: false,
    },
    {
      title: "input 'initial_states' suggests 'initialStates'",
      ...unknown('initial_states', 'inputs'),
      kind: 'SsdError',
      code: 'ERR_SSD_OPTION',
      message: ["Unknown input 'initial_states'", "(did you mean 'initialStates'?)", inputList],
      shaped: false,
    },
    {
      title: 'an input name far from every known one gets no suggestion',
      ...unknown('somethingElseEntirely', 'inputs'),
      kind: 'SsdError',
      code: 'ERR_SSD_OPTION',
      message: [/^Unknown input 'somethingElseEntirely'; expected one of /],
      shaped: false,
    },
    {
      title: "option 'chunksize' suggests 'chunkSize'",
      ...unknown('chunksize', 'options'),
      kind: 'SsdError',
      code: 'ERR_SSD_OPTION',
      message: ["Unknown option 'chunksize'", "(did you mean 'chunkSize'?)", optionList],
      shaped: false,
    },
    {
      title: "option 'dtSoftPlus' suggests 'dtSoftplus'",
      ...unknown('dtSoftPlus', 'options'),
      kind: 'SsdError',
      code: 'ERR_SSD_OPTION',
      message: ["Unknown option 'dtSoftPlus'", "(did you mean 'dtSoftplus'?)", optionList],
      shaped: false,
    },
    {
      title: "option 'dt_limit' suggests 'dtLimit'",
      ...unknown('dt_limit', 'options'),
      kind: 'SsdError',
      code: 'ERR_SSD_OPTION',
      message: ["Unknown option 'dt_limit'", "(did you mean 'dtLimit'?)", optionList],
      shaped: false,
    },
    {
      title: "option 'returnFinalState' suggests 'returnFinalStates'",
      ...unknown('returnFinalState', 'options'),
      kind: 'SsdError',
      code: 'ERR_SSD_OPTION',
      message: ["Unknown option 'returnFinalState'", "(did you mean 'returnFinalStates'?)", optionList],
      shaped: false,
    },
    {
      title: 'an option name far from every known one gets no suggestion',
      ...unknown('useTensorCoresPlease', 'options'),
      kind: 'SsdError',
      code: 'ERR_SSD_OPTION',
      message: [/^Unknown option 'useTensorCoresPlease'; expected one of /],
      shaped: false,
    },
  ]);
});

// ---------------------------------------------------------------------------------------------
// Each input: missing, not a Tensor, wrong type, wrong rank, disposed
// ---------------------------------------------------------------------------------------------

describe('missing required inputs', () => {
  const layouts: [string, string][] = [
    ['x', '(batch, seqlen, nheads, headdim)'],
    ['dt', '(batch, seqlen, nheads)'],
    ['A', '(nheads)'],
    ['B', '(batch, seqlen, ngroups, dstate)'],
    ['C', '(batch, seqlen, ngroups, dstate)'],
  ];
  runBoth(
    layouts.flatMap(([name, layout]): ErrorCase[] => [
      {
        title: `${name} missing`,
        inputs: () => withInput(name, undefined, true),
        kind: 'TypeError',
        message: [`Expected a Tensor ${layout} for inputs.${name} but received undefined`],
      },
      {
        title: `${name} explicitly undefined`,
        inputs: () => withInput(name, undefined),
        kind: 'TypeError',
        message: [`Expected a Tensor ${layout} for inputs.${name} but received undefined`],
      },
    ]),
  );
});

describe('inputs that are not Tensors', () => {
  runBoth([
    {
      title: 'x a Float32Array',
      inputs: () => withInput('x', new Float32Array(b * L * h * p)),
      kind: 'TypeError',
      message: ['Expected a Tensor (batch, seqlen, nheads, headdim) for inputs.x', `but received a Float32Array of length ${b * L * h * p}`],
    },
    {
      title: 'dt a plain array',
      inputs: () => withInput('dt', [1, 2, 3]),
      kind: 'TypeError',
      message: ['Expected a Tensor (batch, seqlen, nheads) for inputs.dt', 'but received an array of length 3'],
    },
    {
      title: 'A a number',
      inputs: () => withInput('A', -1),
      kind: 'TypeError',
      message: ['Expected a Tensor (nheads) for inputs.A', 'but received number -1'],
    },
    {
      title: 'B null',
      inputs: () => withInput('B', null),
      kind: 'TypeError',
      message: ['Expected a Tensor (batch, seqlen, ngroups, dstate) for inputs.B', 'but received null'],
    },
    {
      // a complete { type, dims, data } object is a tensor (test/ort.test.ts); one without dims is not
      title: 'D a tensor-shaped plain object without dims',
      inputs: () => withInput('D', { type: 'float32', data: new Float32Array(h) }),
      kind: 'TypeError',
      message: ['Expected a Tensor (nheads) or (nheads, headdim) for inputs.D', 'but received an object without dims'],
    },
    {
      title: 'z a Map',
      inputs: () => withInput('z', new Map()),
      kind: 'TypeError',
      message: ['Expected a Tensor (batch, seqlen, nheads, headdim) for inputs.z', 'but received an instance of Map'],
    },
    {
      title: 'dtBias a string',
      inputs: () => withInput('dtBias', 'zero'),
      kind: 'TypeError',
      message: ['Expected a Tensor (nheads) for inputs.dtBias', 'but received the string "zero"'],
    },
    {
      title: 'initialStates null',
      inputs: () => withInput('initialStates', null),
      kind: 'TypeError',
      message: ['Expected a Tensor (batch, nheads, headdim, dstate) for inputs.initialStates', 'but received null'],
    },
    {
      title: 'seqIdx an Int32Array',
      inputs: () => withInput('seqIdx', new Int32Array(b * L)),
      kind: 'TypeError',
      message: ['Expected a Tensor (batch, seqlen) for inputs.seqIdx', `but received a Int32Array of length ${b * L}`],
    },
  ]);
});

describe('tensors of the wrong type', () => {
  const floats = "'float32' or 'bfloat16' or 'float16'";
  const int32 = (dims: number[]): Tensor => new Tensor('int32', new Int32Array(dims.reduce((a, d) => a * d, 1)), dims);
  runBoth([
    {
      title: 'int32 x',
      inputs: () => withInput('x', int32([b, L, h, p])),
      kind: 'TypeError',
      message: [`Expected a Tensor of type ${floats} for inputs.x but received a Tensor of type 'int32'`],
    },
    {
      title: 'int32 dt',
      inputs: () => withInput('dt', int32([b, L, h])),
      kind: 'TypeError',
      message: [`Expected a Tensor of type ${floats} for inputs.dt but received a Tensor of type 'int32'`],
    },
    {
      title: 'int32 A',
      inputs: () => withInput('A', int32([h])),
      kind: 'TypeError',
      message: [`Expected a Tensor of type ${floats} for inputs.A but received a Tensor of type 'int32'`],
    },
    {
      title: 'int32 C',
      inputs: () => withInput('C', int32([b, L, g, n])),
      kind: 'TypeError',
      message: [`Expected a Tensor of type ${floats} for inputs.C but received a Tensor of type 'int32'`],
    },
    {
      title: 'int32 D',
      inputs: () => withInput('D', int32([h])),
      kind: 'TypeError',
      message: [`Expected a Tensor of type ${floats} for inputs.D but received a Tensor of type 'int32'`],
    },
    {
      title: 'int32 initialStates',
      inputs: () => withInput('initialStates', int32([b, h, p, n])),
      kind: 'TypeError',
      message: [`Expected a Tensor of type ${floats} for inputs.initialStates but received a Tensor of type 'int32'`],
    },
    {
      title: 'float32 seqIdx',
      inputs: () => withInput('seqIdx', zeros([b, L])),
      kind: 'TypeError',
      message: ["Expected a Tensor of type 'int32' for inputs.seqIdx but received a Tensor of type 'float32'"],
    },
    {
      title: 'bfloat16 seqIdx',
      inputs: () => withInput('seqIdx', zeros([b, L], 'bfloat16')),
      kind: 'TypeError',
      message: ["Expected a Tensor of type 'int32' for inputs.seqIdx but received a Tensor of type 'bfloat16'"],
    },
  ]);
});

describe('tensors of the wrong rank', () => {
  const rank = (name: string, dims: number[], expected: string): ErrorCase => ({
    title: `${name} with dims [${dims.join(', ')}]`,
    inputs: () => withInput(name, zeros(dims)),
    kind: 'RangeError',
    message: [`Expected ${expected} for inputs.${name} but received ${dims.length}-D dims [${dims.join(', ')}]`],
  });
  runBoth([
    rank('x', [b, L, h * p], 'a 4-D tensor (batch, seqlen, nheads, headdim)'),
    rank('x', [1, b, L, h, p], 'a 4-D tensor (batch, seqlen, nheads, headdim)'),
    rank('dt', [b, L, h, 1], 'a 3-D tensor (batch, seqlen, nheads)'),
    rank('A', [h, 1], 'a 1-D tensor (nheads)'),
    rank('A', [], 'a 1-D tensor (nheads)'),
    rank('B', [b, L, g * n], 'a 4-D tensor (batch, seqlen, ngroups, dstate)'),
    rank('C', [b, L, g, n, 1], 'a 4-D tensor (batch, seqlen, ngroups, dstate)'),
    rank('D', [h, p, 1], 'a 1-D tensor (nheads) or a 2-D tensor (nheads, headdim)'),
    rank('D', [], 'a 1-D tensor (nheads) or a 2-D tensor (nheads, headdim)'),
    rank('z', [b, L, h * p], 'a 4-D tensor (batch, seqlen, nheads, headdim)'),
    rank('dtBias', [1, h], 'a 1-D tensor (nheads)'),
    rank('initialStates', [b, h, p * n], 'a 4-D tensor (batch, nheads, headdim, dstate)'),
    {
      title: 'seqIdx with dims [10]',
      inputs: () => withInput('seqIdx', new Tensor('int32', new Int32Array(b * L), [b * L])),
      kind: 'RangeError',
      message: [`Expected a 2-D tensor (batch, seqlen) for inputs.seqIdx but received 1-D dims [${b * L}]`],
    },
  ]);
});

describe('disposed tensors', () => {
  const disposed = (name: keyof SsdInputs): ErrorCase => ({
    title: `disposed ${name}`,
    inputs: () => {
      const inputs = fullInputs();
      inputs[name]!.dispose();
      return inputs;
    },
    kind: 'SsdError',
    code: 'ERR_SSD_DISPOSED',
    message: [`inputs.${name} was disposed before the call`],
    shaped: false,
  });
  runBoth((['x', 'dt', 'A', 'B', 'C', 'D', 'z', 'dtBias', 'initialStates', 'seqIdx'] as const).map(disposed));
});

// ---------------------------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------------------------

describe('zero-size dims', () => {
  /** Inputs whose x, dt, B, C agree on the given sizes (D, z, ... left out). */
  const sized = (c: ExampleConfig): SsdInputs => ({
    x: zeros([c.batch, c.seqlen, c.nheads, c.headdim]),
    dt: zeros([c.batch, c.seqlen, c.nheads]),
    A: Tensor.fromFloat32('float32', new Float32Array(c.nheads).fill(-1)),
    B: zeros([c.batch, c.seqlen, c.ngroups, c.dstate]),
    C: zeros([c.batch, c.seqlen, c.ngroups, c.dstate]),
  });
  const zero = (field: keyof ExampleConfig, label: string): ErrorCase => ({
    title: `${field} = 0`,
    inputs: () => sized({ ...CONFIG, [field]: 0 }),
    kind: 'RangeError',
    message: [`Expected a size of at least 1 for ${label} but received 0`],
  });
  runBoth([
    zero('batch', 'batch (x.dims[0])'),
    zero('seqlen', 'seqlen (x.dims[1])'),
    zero('nheads', 'nheads (x.dims[2])'),
    zero('headdim', 'headdim (x.dims[3])'),
    zero('ngroups', 'ngroups (B.dims[2])'),
    zero('dstate', 'dstate (B.dims[3])'),
  ]);
});

describe('sizes that disagree across inputs', () => {
  const shape = (name: string, dims: number[], expected: number[], layout: string): ErrorCase => ({
    title: `${name} with dims [${dims.join(', ')}]`,
    inputs: () => withInput(name, zeros(dims)),
    kind: 'SsdError',
    code: 'ERR_SSD_SHAPE',
    message: [`Expected dims [${expected.join(', ')}] ${layout} for inputs.${name} but received [${dims.join(', ')}]`],
  });
  const bc = '(batch, seqlen, ngroups, dstate)';
  const bcOfB = '(batch, seqlen, ngroups, dstate), the dims of B,';
  const xLayout = '(batch, seqlen, nheads, headdim), the dims of x,';
  runBoth([
    shape('dt', [b, L, h + 1], [b, L, h], '(batch, seqlen, nheads)'),
    shape('dt', [b, L + 1, h], [b, L, h], '(batch, seqlen, nheads)'),
    shape('dt', [b + 1, L, h], [b, L, h], '(batch, seqlen, nheads)'),
    shape('A', [h + 1], [h], '(nheads)'),
    shape('A', [g], [h], '(nheads)'),
    // B sets ngroups and dstate, so only its batch and seqlen can disagree (with x).
    {
      title: `B with dims [${[b + 1, L, g, n].join(', ')}] (and C the same)`,
      inputs: () => ({ ...fullInputs(), B: zeros([b + 1, L, g, n]), C: zeros([b + 1, L, g, n]) }),
      kind: 'SsdError',
      code: 'ERR_SSD_SHAPE',
      message: [`Expected dims [${[b, L, g, n].join(', ')}] ${bc} for inputs.B but received [${[b + 1, L, g, n].join(', ')}]`],
    },
    {
      title: `B with dims [${[b, L - 1, g, n].join(', ')}] (and C the same)`,
      inputs: () => ({ ...fullInputs(), B: zeros([b, L - 1, g, n]), C: zeros([b, L - 1, g, n]) }),
      kind: 'SsdError',
      code: 'ERR_SSD_SHAPE',
      message: [`Expected dims [${[b, L, g, n].join(', ')}] ${bc} for inputs.B but received [${[b, L - 1, g, n].join(', ')}]`],
    },
    shape('C', [b, L, g, n + 1], [b, L, g, n], bcOfB),
    shape('C', [b, L, 2 * g, n], [b, L, g, n], bcOfB),
    shape('C', [b, L + 2, g, n], [b, L, g, n], bcOfB),
    shape('D', [h + 1], [h], '(nheads)'),
    shape('D', [p], [h], '(nheads)'),
    shape('D', [h, p + 1], [h, p], '(nheads, headdim)'),
    shape('D', [h + 1, p], [h, p], '(nheads, headdim)'),
    shape('D', [p, h], [h, p], '(nheads, headdim)'),
    shape('z', [b, L, h, p + 1], [b, L, h, p], xLayout),
    shape('z', [b + 1, L, h, p], [b, L, h, p], xLayout),
    shape('dtBias', [h - 1], [h], '(nheads)'),
    shape('dtBias', [h + 1], [h], '(nheads)'),
    shape('initialStates', [b, h, p, n + 1], [b, h, p, n], '(batch, nheads, headdim, dstate)'),
    shape('initialStates', [b + 1, h, p, n], [b, h, p, n], '(batch, nheads, headdim, dstate)'),
    shape('initialStates', [b, h, n, p], [b, h, p, n], '(batch, nheads, headdim, dstate)'),
    {
      title: `seqIdx with dims [${[b, L + 1].join(', ')}]`,
      inputs: () => withInput('seqIdx', new Tensor('int32', new Int32Array(b * (L + 1)), [b, L + 1])),
      kind: 'SsdError',
      code: 'ERR_SSD_SHAPE',
      message: [`Expected dims [${b}, ${L}] (batch, seqlen) for inputs.seqIdx but received [${b}, ${L + 1}]`],
    },
    {
      title: `seqIdx with dims [${[1, L].join(', ')}]`,
      inputs: () => withInput('seqIdx', new Tensor('int32', new Int32Array(L), [1, L])),
      kind: 'SsdError',
      code: 'ERR_SSD_SHAPE',
      message: [`Expected dims [${b}, ${L}] (batch, seqlen) for inputs.seqIdx but received [1, ${L}]`],
    },
    {
      title: 'ngroups that does not divide nheads (4 heads, 3 groups)',
      inputs: () => ({ ...fullInputs(), B: zeros([b, L, 3, n]), C: zeros([b, L, 3, n]) }),
      kind: 'SsdError',
      code: 'ERR_SSD_SHAPE',
      message: [`Expected ngroups (B.dims[2]) to divide nheads (x.dims[2]) = ${h} but received ngroups = 3`],
      shaped: 'loose',
    },
    {
      title: 'ngroups larger than nheads (4 heads, 8 groups)',
      inputs: () => ({ ...fullInputs(), B: zeros([b, L, 8, n]), C: zeros([b, L, 8, n]) }),
      kind: 'SsdError',
      code: 'ERR_SSD_SHAPE',
      message: [`Expected ngroups (B.dims[2]) to divide nheads (x.dims[2]) = ${h} but received ngroups = 8`],
      shaped: 'loose',
    },
  ]);
});

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

describe('values the function is not defined for', () => {
  const aWith = (index: number, value: number): (() => Record<string, unknown>) => () => {
    const A = new Float32Array(h).fill(-1);
    A[index] = value;
    return withInput('A', new Tensor('float32', A, [h]));
  };
  const aBits = (type: 'bfloat16' | 'float16', index: number, bits: number): (() => Record<string, unknown>) => () => {
    const A = (type === 'bfloat16' ? new Uint16Array(h).fill(0xbf80) : new Uint16Array(h).fill(0xbc00)); // -1
    A[index] = bits;
    return withInput('A', new Tensor(type, A, [h]));
  };
  const seqIdx = (rows: number[][]): (() => Record<string, unknown>) => () =>
    withInput('seqIdx', new Tensor('int32', Int32Array.from(rows.flat()), [rows.length, rows[0].length]));
  runBoth([
    {
      title: 'A with NaN',
      inputs: aWith(2, NaN),
      kind: 'SsdError',
      code: 'ERR_SSD_VALUE',
      message: ['Expected finite values for inputs.A but received NaN at index 2'],
    },
    {
      title: 'A with Infinity',
      inputs: aWith(0, Infinity),
      kind: 'SsdError',
      code: 'ERR_SSD_VALUE',
      message: ['Expected finite values for inputs.A but received Infinity at index 0'],
    },
    {
      title: 'A with -Infinity',
      inputs: aWith(3, -Infinity),
      kind: 'SsdError',
      code: 'ERR_SSD_VALUE',
      message: ['Expected finite values for inputs.A but received -Infinity at index 3'],
    },
    {
      title: 'A of type float32 that overflowed from a large finite number',
      inputs: aWith(1, -1e39), // -1e39 is finite in float64, -Infinity in float32
      kind: 'SsdError',
      code: 'ERR_SSD_VALUE',
      message: ['Expected finite values for inputs.A but received -Infinity at index 1'],
    },
    {
      title: 'bfloat16 A with a NaN bit pattern (0x7fc0)',
      inputs: aBits('bfloat16', 1, 0x7fc0),
      kind: 'SsdError',
      code: 'ERR_SSD_VALUE',
      message: ['Expected finite values for inputs.A but received NaN at index 1'],
    },
    {
      title: 'bfloat16 A with -Infinity (0xff80)',
      inputs: aBits('bfloat16', 3, 0xff80),
      kind: 'SsdError',
      code: 'ERR_SSD_VALUE',
      message: ['Expected finite values for inputs.A but received -Infinity at index 3'],
    },
    {
      title: 'float16 A with Infinity (0x7c00)',
      inputs: aBits('float16', 0, 0x7c00),
      kind: 'SsdError',
      code: 'ERR_SSD_VALUE',
      message: ['Expected finite values for inputs.A but received Infinity at index 0'],
    },
    {
      title: 'seqIdx decreasing inside the second row',
      inputs: seqIdx([
        [0, 0, 1, 1, 2],
        [0, 1, 1, 0, 1],
      ]),
      kind: 'SsdError',
      code: 'ERR_SSD_VALUE',
      message: ['Expected non-decreasing values along each row of inputs.seqIdx but received 0 after 1 at [1, 3]'],
      shaped: 'loose',
    },
    {
      title: 'seqIdx decreasing at the first step',
      inputs: seqIdx([
        [3, 2, 2, 2, 2],
        [0, 0, 0, 0, 0],
      ]),
      kind: 'SsdError',
      code: 'ERR_SSD_VALUE',
      message: ['inputs.seqIdx', 'but received 2 after 3 at [0, 1]'],
      shaped: 'loose',
    },
  ]);
});

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

describe('option values', () => {
  const option = (
    title: string,
    options: Record<string, unknown>,
    kind: 'TypeError' | 'RangeError',
    message: string[],
  ): ErrorCase => ({ title, inputs: () => fullInputs(), options, kind, message });
  const chunk = 'Expected a power of two from 16 to 256 for options.chunkSize';
  const limit = 'for options.dtLimit';
  const device = "Expected 'auto', 'cpu', 'cuda' or 'cuda:N' for options.device";
  runBoth([
    option('chunkSize a string', { chunkSize: '64' }, 'TypeError', [chunk, 'but received the string "64"']),
    option('chunkSize null', { chunkSize: null }, 'TypeError', [chunk, 'but received null']),
    option('chunkSize 8', { chunkSize: 8 }, 'RangeError', [`${chunk} but received 8`]),
    option('chunkSize 512', { chunkSize: 512 }, 'RangeError', [`${chunk} but received 512`]),
    option('chunkSize 100', { chunkSize: 100 }, 'RangeError', [`${chunk} but received 100`]),
    option('chunkSize 16.5', { chunkSize: 16.5 }, 'RangeError', [`${chunk} but received 16.5`]),
    option('chunkSize 0', { chunkSize: 0 }, 'RangeError', [`${chunk} but received 0`]),
    option('chunkSize -16', { chunkSize: -16 }, 'RangeError', [`${chunk} but received -16`]),
    option('chunkSize NaN', { chunkSize: NaN }, 'RangeError', [`${chunk} but received NaN`]),
    option('chunkSize Infinity', { chunkSize: Infinity }, 'RangeError', [`${chunk} but received Infinity`]),

    option('dtLimit a number', { dtLimit: 1 }, 'TypeError', [`Expected an array [lo, hi] of two numbers ${limit}`, 'but received number 1']),
    option('dtLimit an object', { dtLimit: { 0: 0, 1: 1 } }, 'TypeError', [`an array [lo, hi] of two numbers ${limit}`, 'but received an object']),
    option('dtLimit a Float64Array', { dtLimit: new Float64Array(2) }, 'TypeError', [
      `an array [lo, hi] of two numbers ${limit}`,
      'but received a Float64Array of length 2',
    ]),
    option('dtLimit of length 1', { dtLimit: [0] }, 'TypeError', [`an array [lo, hi] of two numbers ${limit}`, 'but received an array of length 1']),
    option('dtLimit of length 3', { dtLimit: [0, 1, 2] }, 'TypeError', [`an array [lo, hi] of two numbers ${limit}`, 'but received an array of length 3']),
    option('dtLimit with a string', { dtLimit: [0, '1'] }, 'TypeError', [`an array [lo, hi] of two numbers ${limit}`, 'but received an array of length 2']),
    option('dtLimit with null', { dtLimit: [null, 1] }, 'TypeError', [`an array [lo, hi] of two numbers ${limit}`, 'but received an array of length 2']),
    option('dtLimit with NaN low', { dtLimit: [NaN, 1] }, 'RangeError', [`Expected [lo, hi] without NaN ${limit} but received [NaN, 1]`]),
    option('dtLimit with NaN high', { dtLimit: [0, NaN] }, 'RangeError', [`Expected [lo, hi] without NaN ${limit} but received [0, NaN]`]),
    option('dtLimit with lo > hi', { dtLimit: [0.2, 0.1] }, 'RangeError', [`Expected [lo, hi] with lo <= hi ${limit} but received [0.2, 0.1]`]),
    option('dtLimit [Infinity, 0]', { dtLimit: [Infinity, 0] }, 'RangeError', [`with lo <= hi ${limit} but received [Infinity, 0]`]),

    option('threads 0', { threads: 0 }, 'RangeError', ['Expected an integer from 1 to 1024 for options.threads but received 0']),
    option('threads -1', { threads: -1 }, 'RangeError', ['Expected an integer from 1 to 1024 for options.threads but received -1']),
    option('threads 1.5', { threads: 1.5 }, 'RangeError', ['Expected an integer from 1 to 1024 for options.threads but received 1.5']),
    option('threads NaN', { threads: NaN }, 'RangeError', ['Expected an integer from 1 to 1024 for options.threads but received NaN']),
    option('threads 1025', { threads: 1025 }, 'RangeError', ['Expected an integer from 1 to 1024 for options.threads but received 1025']),
    option("threads '2'", { threads: '2' }, 'TypeError', ['Expected a positive integer for options.threads but received the string "2"']),
    option('threads true', { threads: true }, 'TypeError', ['Expected a positive integer for options.threads but received boolean true']),

    option("device 'gpu'", { device: 'gpu' }, 'RangeError', [`${device} but received the string "gpu"`]),
    option("device 'cuda:x'", { device: 'cuda:x' }, 'RangeError', [`${device} but received the string "cuda:x"`]),
    option("device 'cuda:'", { device: 'cuda:' }, 'RangeError', [`${device} but received the string "cuda:"`]),
    option("device 'cuda:-1'", { device: 'cuda:-1' }, 'RangeError', [`${device} but received the string "cuda:-1"`]),
    option("device 'CPU'", { device: 'CPU' }, 'RangeError', [`${device} but received the string "CPU"`]),
    option("device ''", { device: '' }, 'RangeError', [`${device} but received the string ""`]),
    option('device 5', { device: 5 }, 'TypeError', [`${device} but received number 5`]),
    option('device null', { device: null }, 'TypeError', [`${device} but received null`]),

    option('dtSoftplus 1', { dtSoftplus: 1 }, 'TypeError', ['Expected a boolean for options.dtSoftplus but received number 1']),
    option("dtSoftplus 'true'", { dtSoftplus: 'true' }, 'TypeError', ['Expected a boolean for options.dtSoftplus but received the string "true"']),
    option('dtSoftplus null', { dtSoftplus: null }, 'TypeError', ['Expected a boolean for options.dtSoftplus but received null']),
    option('returnFinalStates 0', { returnFinalStates: 0 }, 'TypeError', ['Expected a boolean for options.returnFinalStates but received number 0']),
    option("returnFinalStates 'yes'", { returnFinalStates: 'yes' }, 'TypeError', [
      'Expected a boolean for options.returnFinalStates but received the string "yes"',
    ]),
  ]);
});

// ---------------------------------------------------------------------------------------------
// Device 'cuda' on a machine where it cannot run (needs the native addon)
// ---------------------------------------------------------------------------------------------

/** Loads the addon, failing the test loudly (never skipping) when it is not built. */
function requireAddon(): ReturnType<typeof backends> {
  try {
    return backends();
  } catch (err) {
    throw new Error(
      'This test needs the native addon (npm run build:native or npm run build:gyp) and it did not load: ' + (err as Error).message,
      { cause: err },
    );
  }
}

const GPU_PRESENT = 'CUDA is available on this machine';

describe("device 'cuda' when CUDA cannot run", () => {
  /** What the message must say after "is not available: ". */
  function expectedReason(): string {
    const cuda = requireAddon().cuda;
    if (cuda.available) return GPU_PRESENT;
    // No GPU, or no CUDA in this build: the addon says why, and the message passes that on.
    expect(cuda.reason.length).toBeGreaterThan(0);
    expect(cuda.reason).toMatch(/CUDA/);
    return cuda.reason;
  }

  for (const device of ['cuda', 'cuda:0', 'cuda:1'] as const) {
    const label = device === 'cuda' ? 'cuda:0' : device;
    it(`ssdSync with device '${device}' throws ERR_SSD_DEVICE saying why`, () => {
      const reason = expectedReason();
      if (reason === GPU_PRESENT) {
        // On a machine with a GPU, CUDA runs only through ssd(): ssdSync says so.
        expect(() => ssdSync(fullInputs(), { device })).toThrow(/use ssd\(\)/);
        return;
      }
      let thrown: unknown;
      try {
        ssdSync(fullInputs(), { device });
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(SsdError);
      const e = thrown as SsdError;
      expect(e.code).toBe('ERR_SSD_DEVICE');
      expect(e.message).toBe(`options.device '${label}' is not available: ${reason}`);
    });

    it(`ssd with device '${device}' rejects with ERR_SSD_DEVICE saying why`, async () => {
      const reason = expectedReason();
      if (reason === GPU_PRESENT) {
        // On a machine with a GPU (test/cuda covers it), device 'cuda:1' may not exist; 'cuda' runs.
        if (device === 'cuda:1' && requireAddon().cuda.devices < 2) {
          await expect(ssd(fullInputs(), { device })).rejects.toMatchObject({ code: 'ERR_SSD_DEVICE' });
        } else {
          await expect(ssd(fullInputs(), { device })).resolves.toHaveProperty('y');
        }
        return;
      }
      let promise: Promise<unknown> | undefined;
      expect(() => {
        promise = ssd(fullInputs(), { device });
      }).not.toThrow();
      expect(promise).toBeInstanceOf(Promise);
      await expect(promise).rejects.toBeInstanceOf(SsdError);
      await expect(promise).rejects.toMatchObject({
        code: 'ERR_SSD_DEVICE',
        message: `options.device '${label}' is not available: ${reason}`,
      });
    });
  }

  it('the addon says whether CUDA can run here and, when it cannot, why', () => {
    const cuda = requireAddon().cuda;
    if (cuda.available) {
      expect(cuda.compiled).toBe(true);
      expect(cuda.devices).toBeGreaterThan(0);
      expect(cuda.reason).toBe('');
      return;
    }
    expect(cuda.devices).toBe(0);
    // A build without CUDA says so; a CUDA build on a machine without a driver or GPU passes on CUDA's reason.
    expect(cuda.reason).toMatch(cuda.compiled ? /CUDA|driver|device/ : /no CUDA kernels/);
  });

  it('a validation error still comes before the device check', () => {
    requireAddon();
    let thrown: unknown;
    try {
      ssdSync(withInput('A', zeros([h + 1])) as unknown as SsdInputs, { device: 'cuda' });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(SsdError);
    expect((thrown as SsdError).code).toBe('ERR_SSD_SHAPE');
    expect((thrown as SsdError).message).toContain('for inputs.A');
  });
});

// ---------------------------------------------------------------------------------------------
// Valid but odd: validation accepts these (checked through validate, which needs no addon)
// ---------------------------------------------------------------------------------------------

describe('valid inputs and options that validation accepts', () => {
  const odd = (c: ExampleConfig, D: 'none' | 'head' | 'channel' = 'none'): SsdInputs =>
    makeExample(new Random(3), c, { D, z: true, dtBias: true, initialStates: true, seqStarts: [] }).inputs;

  it('the full example validates, with default options', () => {
    const { inputs, plan } = validate(fullInputs(), undefined);
    expect(plan).toEqual({
      batch: b,
      seqlen: L,
      nheads: h,
      headdim: p,
      ngroups: g,
      dstate: n,
      chunkSize: 256,
      dtSoftplus: false,
      dtMin: 0,
      dtMax: Infinity,
      returnFinalStates: false,
      returnVarlenStates: false,
      returnUngated: false,
      numSeqs: 0,
      device: { kind: 'auto', index: 0 },
      threads: 0,
      xType: 'float32',
      out: {},
    });
    expect(Object.keys(inputs).sort()).toEqual(['A', 'B', 'C', 'D', 'dt', 'dtBias', 'initialStates', 'seqIdx', 'x', 'z'].sort());
  });

  it('an empty options object gives the defaults too', () => {
    const { plan } = validate(requiredInputs(), {});
    expect(plan.chunkSize).toBe(256);
    expect([plan.dtMin, plan.dtMax]).toEqual([0, Infinity]);
    expect(plan.device).toEqual({ kind: 'auto', index: 0 });
  });

  it.each([
    ['seqlen 1', { ...CONFIG, seqlen: 1 }],
    ['headdim 1', { ...CONFIG, headdim: 1 }],
    ['dstate 1', { ...CONFIG, dstate: 1 }],
    ['batch 1, nheads 1, ngroups 1', { ...CONFIG, batch: 1, nheads: 1, ngroups: 1 }],
    ['every size 1', { batch: 1, seqlen: 1, nheads: 1, headdim: 1, ngroups: 1, dstate: 1 }],
    ['ngroups = nheads', { ...CONFIG, ngroups: CONFIG.nheads }],
    ['seqlen not a multiple of the chunk size and longer than it', { ...CONFIG, seqlen: 300 }],
  ])('%s', (_title, c) => {
    for (const D of ['none', 'head', 'channel'] as const) {
      const inputs = odd(c, D);
      const { inputs: out, plan } = validate(inputs, { chunkSize: 16 });
      expect([plan.batch, plan.seqlen, plan.nheads, plan.headdim, plan.ngroups, plan.dstate]).toEqual([
        c.batch,
        c.seqlen,
        c.nheads,
        c.headdim,
        c.ngroups,
        c.dstate,
      ]);
      expect(out.x).toBe(inputs.x);
      expect(out.D).toBe(inputs.D);
      expect(out.D === undefined).toBe(D === 'none');
    }
  });

  it('D undefined (absent, or present with the value undefined) is accepted and left out', () => {
    const inputs = { ...requiredInputs(), D: undefined, z: undefined, dtBias: undefined, initialStates: undefined, seqIdx: undefined };
    const { inputs: out } = validate(inputs, { dtLimit: undefined, threads: undefined, device: undefined });
    expect(Object.keys(out).sort()).toEqual(['A', 'B', 'C', 'dt', 'x']);
    expect(out.D).toBeUndefined();
  });

  it('D per channel (nheads, headdim) is accepted', () => {
    const inputs = makeExample(new Random(5), CONFIG, { D: 'channel' }).inputs;
    expect(inputs.D!.dims).toEqual([h, p]);
    expect(validate(inputs, {}).inputs.D).toBe(inputs.D);
  });

  it('mixed float types across inputs are accepted; plan.xType follows x', () => {
    const inputs: SsdInputs = {
      x: zeros([b, L, h, p], 'bfloat16'),
      dt: zeros([b, L, h], 'float16'),
      A: Tensor.fromFloat32('bfloat16', new Float32Array(h).fill(-2)),
      B: zeros([b, L, g, n], 'float16'),
      C: zeros([b, L, g, n]),
      D: zeros([h], 'float16'),
      z: zeros([b, L, h, p], 'float16'),
    };
    expect(validate(inputs, {}).plan.xType).toBe('bfloat16');
  });

  it('A may be positive or zero (finite is all that is required)', () => {
    const inputs = withInput('A', Tensor.fromFloat32('float32', [0, 1, -0, 1e30], [h]));
    expect(() => validate(inputs, {})).not.toThrow();
  });

  it('seqIdx may stay flat, start anywhere, and drop between rows', () => {
    const seq = new Tensor('int32', Int32Array.from([5, 5, 6, 9, 9, 0, 0, 0, 0, 0]), [b, L]);
    const { inputs } = validate(withInput('seqIdx', seq), {});
    expect(inputs.seqIdx).toBe(seq);
  });

  it.each([16, 32, 64, 128, 256])('chunkSize %d is accepted', (chunkSize) => {
    expect(validate(requiredInputs(), { chunkSize }).plan.chunkSize).toBe(chunkSize);
  });

  it.each([
    [[0.5, 0.5]],
    [[0, Infinity]],
    [[-Infinity, Infinity]],
    [[0.001, 0.1]],
  ])('dtLimit %j is accepted (lo == hi included)', (dtLimit) => {
    const { plan } = validate(requiredInputs(), { dtLimit });
    expect([plan.dtMin, plan.dtMax]).toEqual(dtLimit);
  });

  it.each([
    ['auto', { kind: 'auto', index: 0 }],
    ['cpu', { kind: 'cpu', index: 0 }],
    ['cuda', { kind: 'cuda', index: 0 }],
    ['cuda:0', { kind: 'cuda', index: 0 }],
    ['cuda:3', { kind: 'cuda', index: 3 }],
  ])("device '%s' passes validation", (device, expected) => {
    expect(validate(requiredInputs(), { device }).plan.device).toEqual(expected);
  });

  it.each([1, 7, 1024])('threads %d is accepted', (threads) => {
    expect(validate(requiredInputs(), { threads }).plan.threads).toBe(threads);
  });

  it('boolean options are read as given', () => {
    const { plan } = validate(requiredInputs(), { dtSoftplus: true, returnFinalStates: true });
    expect(plan.dtSoftplus).toBe(true);
    expect(plan.returnFinalStates).toBe(true);
    const off = validate(requiredInputs(), { dtSoftplus: false, returnFinalStates: false }).plan;
    expect([off.dtSoftplus, off.returnFinalStates]).toEqual([false, false]);
  });
});
