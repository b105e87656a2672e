/**
 * The decode step (ssdStep / ssdStepSync) against the float64 token recurrence: every option
 * combination, awkward sizes, dtypes, float32 and bfloat16 states, state-cache indices with padding,
 * consistency with the forward (ssd() on a prefix, then one step per token, equals ssd() on the
 * whole sequence), determinism across thread counts, every instruction set, and bad input.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { SsdError, Tensor, ssd, ssdStep, ssdStepSync, ssdSync, type SsdOptions, type SsdStepOptions } from '../lib/index';
import { native } from '../lib/native';
import { STEP_OPTION_NAMES } from '../lib/validate';
import { makeStepExample, ssdStepReference, type RefStepInputs, type StepExampleConfig, type StepExampleOptions } from '../lib/reference-step';
import { defaultNativeOptions, sameBits } from './helpers';
import { Random, allFinite, l2, makeExample, relativeL2, roundingError, ssdReference, withOptions, type ExampleConfig } from './reference';
import { CPU_BOUND, FLOAT64_DIGITS, ROUNDING_ALLOWANCE } from '../lib/tolerances';

const rng = new Random(20261130);
/** The device-refusal cases below expect a machine without CUDA (as CI is); with CUDA they would run. */
const CUDA_HERE = native().backends().cuda.available;
const NEEDS_NO_CUDA = ["device 'cuda'", "device 'cuda:1'", 'a device state with the default device', 'a device input'];

function refWith(ref: RefStepInputs, options: SsdStepOptions): RefStepInputs {
  return { ...ref, dtSoftplus: options.dtSoftplus ?? false, dtLimit: options.dtLimit ? [options.dtLimit[0], options.dtLimit[1]] : undefined };
}

/** Checks y and the whole state cache after a step against the reference; returns the errors. */
function expectStepMatches(y: Tensor, state: Tensor, ref: RefStepInputs, options: SsdStepOptions): { y: number; state: number } {
  const expected = ssdStepReference(refWith(ref, options));
  const yValues = y.toFloat32();
  const stateValues = state.toFloat32();
  expect(allFinite(yValues)).toBe(true);
  expect(allFinite(stateValues)).toBe(true);
  expect(l2(expected.y)).toBeGreaterThan(0);
  expect(l2(yValues)).toBeGreaterThan(0);
  expect(l2(stateValues)).toBeGreaterThan(0);
  const yError = relativeL2(yValues, expected.y);
  const stateError = relativeL2(stateValues, expected.state);
  // A 16-bit y or state is rounded once on the way out: allow twice the error of rounding the reference.
  expect(yError).toBeLessThanOrEqual(CPU_BOUND + ROUNDING_ALLOWANCE * roundingError(y.type as 'float32', expected.y));
  expect(stateError).toBeLessThanOrEqual(CPU_BOUND + ROUNDING_ALLOWANCE * roundingError(state.type as 'float32', expected.state));
  return { y: yError, state: stateError };
}

function runStep(config: StepExampleConfig, example: StepExampleOptions, options: SsdStepOptions): void {
  const { state, inputs, ref } = makeStepExample(rng, config, example);
  const { y } = ssdStepSync(state, inputs, options);
  expect(y.dims).toEqual([config.batch, config.nheads, config.headdim]);
  expect(y.type).toBe(example.dtype ?? 'float32');
  expectStepMatches(y, state, ref, options);
}

describe('the float64 step reference', () => {
  test('one head, one channel, one state: the closed form of the recurrence', () => {
    const r: RefStepInputs = {
      batch: 1, nheads: 1, headdim: 1, ngroups: 1, dstate: 1, stateRows: 1,
      state: [0.7], x: [1.5], dt: [0.2], A: [-2], B: [0.3], C: [-1.1], D: [0.4], z: [0.9], dtBias: [0.05], dtSoftplus: true,
    };
    const d = Math.log1p(Math.exp(0.25));
    const h = Math.exp(-2 * d) * 0.7 + d * 1.5 * 0.3;
    const y = (h * -1.1 + 0.4 * 1.5) * (0.9 / (1 + Math.exp(-0.9)));
    const out = ssdStepReference(r);
    expect(out.state[0]).toBeCloseTo(h, FLOAT64_DIGITS);
    expect(out.y[0]).toBeCloseTo(y, FLOAT64_DIGITS);
  });
});

describe('every option combination', () => {
  const config: StepExampleConfig = { batch: 3, nheads: 4, headdim: 6, ngroups: 2, dstate: 21, stateRows: 5 };
  const combos: [string, StepExampleOptions, SsdStepOptions][] = [];
  for (const stateType of ['float32', 'bfloat16'] as const)
    for (const D of ['none', 'head', 'channel'] as const)
      for (const z of [false, true])
        for (const dtBias of [false, true])
          for (const dtSoftplus of [false, true])
            for (const clamp of [false, true])
              for (const indices of [false, true]) {
                const example: StepExampleOptions = { stateType, D, z, dtBias, positiveDt: !dtSoftplus };
                if (indices) example.stateIndices = [4, -1, 1];
                const options: SsdStepOptions = { dtSoftplus };
                if (clamp) options.dtLimit = [0.01, 0.04];
                combos.push([`state ${stateType} D=${D} z=${z} dtBias=${dtBias} softplus=${dtSoftplus} clamp=${clamp} stateIndices=${indices}`, example, options]);
              }
  test.each(combos)('%s', (_name, example, options) => {
    runStep(example.stateIndices ? config : { ...config, stateRows: config.batch }, example, options);
  });
});

describe('awkward sizes', () => {
  test.each([1, 2, 7, 15, 16, 17, 31, 33, 64, 65, 127, 128, 130])('dstate %i (float32 and bfloat16 states)', (dstate) => {
    for (const stateType of ['float32', 'bfloat16'] as const) {
      runStep({ batch: 2, nheads: 2, headdim: 5, ngroups: 1, dstate }, { stateType, z: true }, { dtSoftplus: true });
    }
  });
  test.each([1, 3, 64])('headdim %i', (headdim) => {
    runStep({ batch: 2, nheads: 3, headdim, ngroups: 3, dstate: 19 }, { D: 'channel' }, { dtSoftplus: true });
  });
  test.each([1, 2, 3, 6])('ngroups %i of 6 heads', (ngroups) => {
    runStep({ batch: 2, nheads: 6, headdim: 4, ngroups, dstate: 9 }, { z: true, dtBias: true }, { dtSoftplus: true });
  });
  test('batch 1, and the benchmark shape (32 heads, headdim 64, dstate 128)', () => {
    runStep({ batch: 1, nheads: 2, headdim: 3, ngroups: 1, dstate: 4 }, {}, {});
    runStep({ batch: 4, nheads: 32, headdim: 64, ngroups: 1, dstate: 128 }, { z: true, dtBias: true }, { dtSoftplus: true });
  });
  test('large dt: exp(dt·A) underflows to zero without NaN', () => {
    runStep({ batch: 2, nheads: 2, headdim: 8, ngroups: 1, dstate: 40 }, { dtShift: 100 }, { dtSoftplus: true });
  });
});

describe('dtypes', () => {
  test.each(['float32', 'bfloat16', 'float16'] as const)('%s inputs with float32 and bfloat16 states', (dtype) => {
    for (const stateType of ['float32', 'bfloat16'] as const) {
      runStep(
        { batch: 3, nheads: 4, headdim: 8, ngroups: 2, dstate: 32, stateRows: 6 },
        { dtype, stateType, D: 'channel', z: true, dtBias: true, stateIndices: [5, 0, -3] },
        { dtSoftplus: true, dtLimit: [0.001, 0.5] },
      );
    }
  });

  test('a bfloat16 state is the float32 step rounded to nearest even, and y is the same bits', () => {
    const cfg: StepExampleConfig = { batch: 3, nheads: 4, headdim: 16, ngroups: 2, dstate: 37 };
    const { state, inputs } = makeStepExample(rng, cfg, { stateType: 'bfloat16', z: true, D: 'head' });
    const asFloat = new Tensor('float32', Float32Array.from(state.toFloat32()), state.dims);
    const fromBf16 = ssdStepSync(state, inputs, { dtSoftplus: true });
    const fromF32 = ssdStepSync(asFloat, inputs, { dtSoftplus: true });
    expect(sameBits(fromBf16.y, fromF32.y)).toBe(true);
    expect(sameBits(state, Tensor.fromFloat32('bfloat16', asFloat.data as Float32Array, asFloat.dims))).toBe(true);
    expect(l2(state.toFloat32())).toBeGreaterThan(0);
  });
});

describe('state cache indices', () => {
  const cfg: StepExampleConfig = { batch: 4, nheads: 3, headdim: 8, ngroups: 1, dstate: 24, stateRows: 9 };

  test('each entry steps its own row; padding rows get zeros and rows not named are untouched', () => {
    const { state, inputs, ref } = makeStepExample(rng, cfg, { z: true, stateIndices: [7, -1, 2, 0] });
    const before = Float32Array.from(state.data as Float32Array);
    const { y } = ssdStepSync(state, inputs, { dtSoftplus: true });
    expectStepMatches(y, state, ref, { dtSoftplus: true });
    const rowSize = 3 * 8 * 24;
    const after = state.data as Float32Array;
    for (const row of [1, 3, 4, 5, 6, 8]) {
      expect(after.subarray(row * rowSize, (row + 1) * rowSize)).toEqual(before.subarray(row * rowSize, (row + 1) * rowSize));
    }
    for (const row of [7, 2, 0]) {
      expect(after.subarray(row * rowSize, (row + 1) * rowSize)).not.toEqual(before.subarray(row * rowSize, (row + 1) * rowSize));
    }
    const yValues = y.data as Float32Array;
    expect(yValues.subarray(1 * 24, 2 * 24).every((v) => v === 0)).toBe(true);
    expect(l2(yValues.subarray(0, 24))).toBeGreaterThan(0);
  });

  test('a batch of padding only writes zeros to y and touches no state', () => {
    const { state, inputs } = makeStepExample(rng, cfg, { stateIndices: [-1, -5, -1, -2147483648] });
    const before = Float32Array.from(state.data as Float32Array);
    const y = new Tensor('float32', new Float32Array(4 * 3 * 8).fill(NaN), [4, 3, 8]);
    ssdStepSync(state, inputs, { out: { y } });
    expect((y.data as Float32Array).every((v) => v === 0)).toBe(true);
    expect(state.data).toEqual(before);
  });

  test.each([
    ['an entry past the last row', [0, 9, 1, 2], /Expected inputs.stateIndices entries below the state's 9 rows \(state.dims\[0\]\) but received 9 at index 1/],
    ['a row used twice', [3, 1, 3, -1], /Expected distinct non-negative inputs.stateIndices .* but received row 3 at indices 0 and 2/],
  ])('%s is rejected before any state is written (sync and async)', async (_name, indices, message) => {
    const { state, inputs } = makeStepExample(rng, cfg, { stateIndices: indices });
    const before = Float32Array.from(state.data as Float32Array);
    expect(() => ssdStepSync(state, inputs)).toThrow(message);
    await expect(ssdStep(state, inputs)).rejects.toThrow(message);
    await expect(ssdStep(state, inputs)).rejects.toMatchObject({ code: 'ERR_SSD_VALUE' });
    expect(state.data).toEqual(before);
  });

  test('the native code rejects them too before writing (when the TypeScript checks are bypassed)', () => {
    const { state, inputs } = makeStepExample(rng, cfg, { stateIndices: [0, 1, 2, 3] });
    const before = Float32Array.from(state.data as Float32Array);
    const base = {
      dims: [4, 3, 8, 1, 24], ...defaultNativeOptions(STEP_OPTION_NAMES), stateRows: 9, state: state.data as Float32Array, stateType: 0,
      x: inputs.x.data, xType: 0, dt: inputs.dt.data, dtType: 0, A: inputs.A.data as Float32Array,
      B: inputs.B.data, BType: 0, C: inputs.C.data, CType: 0, D: null, dPerChannel: false, z: null, zType: 0,
      dtBias: null, y: new Float32Array(4 * 3 * 8), yType: 0,
    };
    for (const [indices, message] of [
      [[0, 1, 9, 3], /state_indices\[2\] = 9 is past the last state row \(8\)/],
      [[0, 5, 2, 5], /state_indices uses state row 5 more than once/],
    ] as [number[], RegExp][]) {
      expect(() => native().stepSync({ ...base, stateIndices: Int32Array.from(indices) })).toThrow(message);
    }
    expect(() => native().stepSync({ ...base, stateIndices: new Int32Array(3) })).toThrow(/Expected 16 bytes for stateIndices but received 12/);
    expect(() => native().stepSync({ ...base, stateIndices: null })).toThrow(/stateRows == batch/);
    expect(state.data).toEqual(before);
  });
});

describe('consistency with the forward', () => {
  // ssd() on a prefix with returnFinalStates, then ssdStep() for each later token, must give the
  // outputs and final state of ssd() on the whole sequence (and both match the float64 reference).
  const cfg: ExampleConfig = { batch: 2, seqlen: 23, nheads: 4, headdim: 8, ngroups: 2, dstate: 20 };
  const prefix = 15;

  /** Token t of a (b, L, ...) tensor as a (b, ...) tensor. */
  function token(t: Tensor, i: number): Tensor {
    const [b, L, ...rest] = t.dims;
    const inner = rest.reduce((a, c) => a * c, 1);
    const src = t.toFloat32();
    const out = new Float32Array(b * inner);
    for (let bi = 0; bi < b; bi++) out.set(src.subarray((bi * L + i) * inner, (bi * L + i + 1) * inner), bi * inner);
    return Tensor.fromFloat32(t.type as 'float32', out, [b, ...rest]);
  }
  function prefixOf(t: Tensor, n: number): Tensor {
    const [b, L, ...rest] = t.dims;
    const inner = rest.reduce((a, c) => a * c, 1);
    const src = t.toFloat32();
    const out = new Float32Array(b * n * inner);
    for (let bi = 0; bi < b; bi++) out.set(src.subarray(bi * L * inner, (bi * L + n) * inner), bi * n * inner);
    return Tensor.fromFloat32(t.type as 'float32', out, [b, n, ...rest]);
  }

  const combos: [string, Parameters<typeof makeExample>[2], SsdOptions][] = [];
  for (const D of ['none', 'head', 'channel'] as const)
    for (const z of [false, true])
      for (const dtBias of [false, true])
        for (const dtSoftplus of [false, true])
          for (const clamp of [false, true])
            for (const initialStates of [false, true]) {
              const options: SsdOptions = { dtSoftplus, returnFinalStates: true, chunkSize: 16 };
              if (clamp) options.dtLimit = [0.01, 0.04];
              combos.push([`D=${D} z=${z} dtBias=${dtBias} softplus=${dtSoftplus} clamp=${clamp} init=${initialStates}`, { D, z, dtBias, initialStates, positiveDt: !dtSoftplus }, options]);
            }
  combos.push(['bfloat16 inputs, every option', { dtype: 'bfloat16', D: 'channel', z: true, dtBias: true, initialStates: true }, { dtSoftplus: true, dtLimit: [0.001, 0.5], returnFinalStates: true }]);

  test.each(combos)('%s', async (_name, example, options) => {
    const { inputs, ref } = makeExample(rng, cfg, example);
    const whole = ssdSync(inputs, options);
    const head = await ssd(
      {
        ...inputs,
        x: prefixOf(inputs.x, prefix), dt: prefixOf(inputs.dt, prefix), B: prefixOf(inputs.B, prefix), C: prefixOf(inputs.C, prefix),
        z: inputs.z && prefixOf(inputs.z, prefix),
      },
      options,
    );
    const state = head.finalStates!;
    const stepOptions: SsdStepOptions = { dtSoftplus: options.dtSoftplus, dtLimit: options.dtLimit };
    const inner = cfg.nheads * cfg.headdim;
    const ys = new Float32Array(whole.y.size);
    const headY = head.y.toFloat32();
    for (let b = 0; b < cfg.batch; b++) ys.set(headY.subarray(b * prefix * inner, (b + 1) * prefix * inner), b * cfg.seqlen * inner);
    for (let t = prefix; t < cfg.seqlen; t++) {
      const stepInputs = { x: token(inputs.x, t), dt: token(inputs.dt, t), A: inputs.A, B: token(inputs.B, t), C: token(inputs.C, t), D: inputs.D, z: inputs.z && token(inputs.z, t), dtBias: inputs.dtBias };
      const { y } = t % 2 ? await ssdStep(state, stepInputs, stepOptions) : ssdStepSync(state, stepInputs, stepOptions);
      const yv = y.toFloat32();
      for (let b = 0; b < cfg.batch; b++) ys.set(yv.subarray(b * inner, (b + 1) * inner), (b * cfg.seqlen + t) * inner);
    }
    const wholeY = whole.y.toFloat32();
    const expected = ssdReference(withOptions(ref, options));
    const rounding = roundingError(whole.y.type as 'float32', expected.y);
    expect(allFinite(ys)).toBe(true);
    expect(l2(ys)).toBeGreaterThan(0);
    expect(relativeL2(ys, wholeY)).toBeLessThanOrEqual(CPU_BOUND + ROUNDING_ALLOWANCE * rounding);
    expect(relativeL2(ys, expected.y)).toBeLessThanOrEqual(CPU_BOUND + ROUNDING_ALLOWANCE * rounding);
    expect(relativeL2(state.toFloat32(), whole.finalStates!.toFloat32())).toBeLessThanOrEqual(CPU_BOUND);
    expect(relativeL2(state.toFloat32(), expected.finalStates)).toBeLessThanOrEqual(CPU_BOUND);
  });
});

describe('determinism and execution', () => {
  const cfg: StepExampleConfig = { batch: 16, nheads: 8, headdim: 32, ngroups: 2, dstate: 64, stateRows: 20 };
  const indices = [19, 0, 3, -1, 7, 8, 1, 2, 4, 5, 6, 9, 10, -1, 11, 12];

  test('threads = 1 and threads = many give the same bits', () => {
    const { state, inputs } = makeStepExample(rng, cfg, { z: true, stateIndices: indices });
    const start = Float32Array.from(state.data as Float32Array);
    const one = ssdStepSync(state, inputs, { dtSoftplus: true, threads: 1 });
    const oneState = Float32Array.from(state.data as Float32Array);
    for (const threads of [2, 3, 7]) {
      (state.data as Float32Array).set(start);
      const many = ssdStepSync(state, inputs, { dtSoftplus: true, threads });
      expect(sameBits(one.y, many.y)).toBe(true);
      expect(state.data).toEqual(oneState);
    }
  });

  test('ssdStep() returns a Promise and gives the bits of ssdStepSync()', async () => {
    const a = makeStepExample(new Random(9), cfg, { z: true, dtBias: true, stateIndices: indices, stateType: 'bfloat16' });
    const b = makeStepExample(new Random(9), cfg, { z: true, dtBias: true, stateIndices: indices, stateType: 'bfloat16' });
    const pending = ssdStep(a.state, a.inputs, { dtSoftplus: true });
    expect(pending).toBeInstanceOf(Promise);
    const ya = (await pending).y;
    const yb = ssdStepSync(b.state, b.inputs, { dtSoftplus: true }).y;
    expect(sameBits(ya, yb)).toBe(true);
    expect(sameBits(a.state, b.state)).toBe(true);
    expectStepMatches(ya, a.state, a.ref, { dtSoftplus: true });
  });

  test('ssdStep() keeps its inputs alive: disposing them right after the call does not change the result', async () => {
    const { state, inputs, ref } = makeStepExample(rng, cfg, { z: true, stateIndices: indices });
    const pending = ssdStep(state, inputs, { dtSoftplus: true });
    for (const t of Object.values(inputs)) (t as Tensor).dispose();
    const { y } = await pending;
    expectStepMatches(y, state, ref, { dtSoftplus: true });
  });

  test('options.out.y receives y, and is returned', () => {
    const { state, inputs, ref } = makeStepExample(rng, cfg, { dtype: 'bfloat16', stateIndices: indices });
    const y = new Tensor('bfloat16', new Uint16Array(16 * 8 * 32).fill(0xffff), [16, 8, 32]);
    const out = ssdStepSync(state, inputs, { dtSoftplus: true, out: { y } });
    expect(out.y).toBe(y);
    expectStepMatches(y, state, ref, { dtSoftplus: true });
  });
});

describe('bad input', () => {
  const cfg: StepExampleConfig = { batch: 2, nheads: 4, headdim: 3, ngroups: 2, dstate: 5 };
  const fresh = (o: StepExampleOptions = {}) => makeStepExample(new Random(3), cfg, { D: 'head', z: true, dtBias: true, ...o });
  const zeros = (dims: number[]) => new Tensor('float32', new Float32Array(dims.reduce((a, d) => a * d, 1)), dims);

  /** Runs both ways: the sync call throws, the async one rejects, with the same error. */
  async function expectBoth(call: (sync: boolean) => unknown, check: (err: unknown) => void): Promise<void> {
    let syncError: unknown;
    try {
      call(true);
    } catch (err) {
      syncError = err;
    }
    expect(syncError).toBeDefined();
    check(syncError);
    let asyncError: unknown;
    try {
      await call(false);
    } catch (err) {
      asyncError = err;
    }
    expect(asyncError).toBeDefined();
    check(asyncError);
  }
  const run = (state: unknown, inputs: unknown, options?: unknown) => (sync: boolean) =>
    sync ? ssdStepSync(state as Tensor, inputs as never, options as never) : ssdStep(state as Tensor, inputs as never, options as never);

  test.each([
    ['state not a Tensor', () => [new Float32Array(4), fresh().inputs], TypeError, /Expected a Tensor \(rows, nheads, headdim, dstate\) for state but received a Float32Array of length 4/],
    ['a float16 state', () => [new Tensor('float16', new Uint16Array(2 * 4 * 3 * 5), [2, 4, 3, 5]), fresh().inputs], TypeError, /Expected a Tensor of type 'float32' or 'bfloat16' for state but received a Tensor of type 'float16'/],
    ['a 3-D state', () => [zeros([2, 4, 15]), fresh().inputs], RangeError, /Expected a 4-D tensor .* for state but received 3-D dims \[2, 4, 15\]/],
    ['x of the forward layout (4-D)', () => { const e = fresh(); return [e.state, { ...e.inputs, x: zeros([2, 1, 4, 3]) }]; }, RangeError, /Expected a 3-D tensor \(batch, nheads, headdim\) for inputs.x but received 4-D/],
    ['an int32 x', () => { const e = fresh(); return [e.state, { ...e.inputs, x: new Tensor('int32', new Int32Array(24), [2, 4, 3]) }]; }, TypeError, /for inputs.x but received a Tensor of type 'int32'/],
    ['a float32 stateIndices', () => { const e = fresh(); return [e.state, { ...e.inputs, stateIndices: zeros([2]) }]; }, TypeError, /Expected a Tensor of type 'int32' for inputs.stateIndices/],
    ['inputs not an object', () => [fresh().state, null], TypeError, /Expected an object \{ x, dt, A, B, C, \.\.\. \} of Tensors for inputs but received null/],
  ] as [string, () => unknown[], typeof TypeError, RegExp][])('%s', async (_name, make, kind, message) => {
    const [state, inputs] = make();
    await expectBoth(run(state, inputs), (err) => {
      expect(err).toBeInstanceOf(kind);
      expect((err as Error).message).toMatch(message);
    });
  });

  test.each(([
    ['a state of other heads', () => { const e = fresh(); return [zeros([2, 3, 3, 5]), e.inputs]; }, 'ERR_SSD_SHAPE', /Expected dims \[2, 4, 3, 5\] \(rows, nheads, headdim, dstate\) for state but received \[2, 3, 3, 5\]/],
    ['more state rows than batch without stateIndices', () => { const e = fresh(); return [zeros([3, 4, 3, 5]), e.inputs]; }, 'ERR_SSD_SHAPE', /Expected state.dims\[0\] to be batch \(x.dims\[0\]\) = 2 without inputs.stateIndices but received 3/],
    ['dt of the wrong batch', () => { const e = fresh(); return [e.state, { ...e.inputs, dt: zeros([3, 4]) }]; }, 'ERR_SSD_SHAPE', /Expected dims \[2, 4\] \(batch, nheads\) for inputs.dt but received \[3, 4\]/],
    ['C unlike B', () => { const e = fresh(); return [e.state, { ...e.inputs, C: zeros([2, 1, 5]) }]; }, 'ERR_SSD_SHAPE', /for inputs.C but received \[2, 1, 5\]/],
    ['ngroups not dividing nheads', () => { const e = fresh(); return [e.state, { ...e.inputs, B: zeros([2, 3, 5]), C: zeros([2, 3, 5]) }]; }, 'ERR_SSD_SHAPE', /Expected ngroups \(B.dims\[1\]\) to divide nheads/],
    ['stateIndices of the wrong length', () => { const e = fresh(); return [e.state, { ...e.inputs, stateIndices: new Tensor('int32', new Int32Array(3), [3]) }]; }, 'ERR_SSD_SHAPE', /Expected dims \[2\] \(batch\) for inputs.stateIndices but received \[3\]/],
    ['a non-finite A', () => { const e = fresh(); return [e.state, { ...e.inputs, A: new Tensor('float32', Float32Array.from([-1, NaN, -1, -1]), [4]) }]; }, 'ERR_SSD_VALUE', /Expected finite values for inputs.A but received NaN at index 1/],
    ['an unknown input', () => { const e = fresh(); return [e.state, { ...e.inputs, stateIndex: e.inputs.x }]; }, 'ERR_SSD_OPTION', /Unknown input 'stateIndex' \(did you mean 'stateIndices'\?\)/],
    ['a forward-only input', () => { const e = fresh(); return [e.state, { ...e.inputs, seqIdx: e.inputs.x }]; }, 'ERR_SSD_OPTION', /Unknown input 'seqIdx'/],
    ['out.y being an input', () => { const e = fresh(); return [e.state, e.inputs, { out: { y: e.inputs.x } }]; }, 'ERR_SSD_VALUE', /options.out.y to be a tensor apart from the state and the inputs/],
    ['a disposed state', () => { const e = fresh(); e.state.dispose(); return [e.state, e.inputs]; }, 'ERR_SSD_DISPOSED', /state was disposed before the call/],
    ["device 'cuda'", () => { const e = fresh(); return [e.state, e.inputs, { device: 'cuda' }]; }, 'ERR_SSD_DEVICE', /options.device 'cuda:0' is not available/],
    ["device 'cuda:1'", () => { const e = fresh(); return [e.state, e.inputs, { device: 'cuda:1' }]; }, 'ERR_SSD_DEVICE', /options.device 'cuda:1' is not available/],
    ['a device state with the default device', () => { const e = fresh(); return [Tensor.fromDevicePointer(0x1000n, 'float32', [2, 4, 3, 5]), e.inputs]; }, 'ERR_SSD_DEVICE', /options.device 'auto \(state on 'cuda:0'\)' is not available/],
    ['a device input', () => { const e = fresh(); return [e.state, { ...e.inputs, B: Tensor.fromDevicePointer(0x1000n, 'float32', [2, 2, 5]) }]; }, 'ERR_SSD_DEVICE', /options.device 'auto \(inputs.B on 'cuda:0'\)' is not available/],
  ] as [string, () => unknown[], string, RegExp][]).filter(([name]) => !(CUDA_HERE && NEEDS_NO_CUDA.includes(name))))('%s', async (_name, make, code, message) => {
    const [state, inputs, options] = make();
    await expectBoth(run(state, inputs, options), (err) => {
      expect(err).toBeInstanceOf(SsdError);
      expect((err as SsdError).code).toBe(code);
      expect((err as Error).message).toMatch(message);
    });
  });

  test.each([
    ['an unknown option', { chunkSize: 64 }, 'ERR_SSD_OPTION', /Unknown option 'chunkSize'/],
    ['a bad dtLimit', { dtLimit: [1, 0] }, 'RangeError', /Expected \[lo, hi\] with lo <= hi for options.dtLimit but received \[1, 0\]/],
    ['a bad device', { device: 'gpu' }, 'RangeError', /for options.device but received the string "gpu"/],
    ['threads 0', { threads: 0 }, 'RangeError', /Expected an integer from 1 to 1024 for options.threads but received 0/],
    ['out.y of another type', { out: { y: new Tensor('bfloat16', new Uint16Array(24), [2, 4, 3]) } }, 'TypeError', /Expected a Tensor of type 'float32' for options.out.y but received a Tensor of type 'bfloat16'/],
  ] as [string, unknown, string, RegExp][])('options: %s', async (_name, options, kind, message) => {
    const e = fresh();
    const before = Float32Array.from(e.state.data as Float32Array);
    await expectBoth(run(e.state, e.inputs, options), (err) => {
      if (kind.startsWith('ERR_')) expect((err as SsdError).code).toBe(kind);
      else expect((err as Error).name).toBe(kind);
      expect((err as Error).message).toMatch(message);
    });
    expect(e.state.data).toEqual(before);
  });
});

describe('instruction sets', () => {
  // SSD_KERNELS_CPU_ISA is read by the native code from the real environment: each instruction set
  // runs in a child process of the compiled package.
  const order = ['scalar', 'avx2', 'avx512'];
  const script = `
    const lib = require('./dist/lib/index.js');
    const { Random } = require('./dist/lib/examples.js');
    const { makeStepExample, ssdStepReference } = require('./dist/lib/reference-step.js');
    const { relativeL2, l2, allFinite } = require('./dist/lib/reference.js');
    const { roundingError } = require('./dist/lib/examples.js');
    const rng = new Random(11);
    const rows = [];
    const cases = [
      [{ batch: 3, nheads: 4, headdim: 7, ngroups: 2, dstate: 37, stateRows: 5 }, { D: 'channel', z: true, dtBias: true, stateIndices: [4, -1, 0] }, { dtSoftplus: true, dtLimit: [0.001, 0.3] }],
      [{ batch: 2, nheads: 2, headdim: 64, ngroups: 1, dstate: 128 }, { z: true }, { dtSoftplus: true }],
      [{ batch: 2, nheads: 2, headdim: 3, ngroups: 1, dstate: 67 }, { D: 'none' }, { dtSoftplus: true }],
    ];
    for (const dtype of ['float32', 'bfloat16', 'float16'])
      for (const stateType of ['float32', 'bfloat16'])
        for (const [cfg, ex, opts] of cases) {
          const { state, inputs, ref } = makeStepExample(rng, cfg, { ...ex, dtype, stateType });
          const { y } = lib.ssdStepSync(state, inputs, opts);
          const expected = ssdStepReference({ ...ref, dtSoftplus: opts.dtSoftplus, dtLimit: opts.dtLimit });
          const yv = y.toFloat32(), sv = state.toFloat32();
          rows.push({ finite: allFinite(yv) && allFinite(sv), norm: l2(yv), yError: relativeL2(yv, expected.y), yBound: ${ROUNDING_ALLOWANCE} * roundingError(y.type, expected.y),
                      stateError: relativeL2(sv, expected.state), stateBound: ${ROUNDING_ALLOWANCE} * roundingError(state.type, expected.state) });
        }
    console.log(JSON.stringify({ isa: lib.backends().cpu.isa, best: lib.backends().cpu.bestIsa, rows }));
  `;
  test.each(order)('%s (or the best this CPU has below it) matches the reference', (isa) => {
    const r = spawnSync(process.execPath, ['-e', script], { cwd: path.join(__dirname, '..'), encoding: 'utf8', env: { ...process.env, SSD_KERNELS_CPU_ISA: isa } });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { isa: string; best: string; rows: { finite: boolean; norm: number; yError: number; yBound: number; stateError: number; stateBound: number }[] };
    const expectedIsa = order.indexOf(isa) <= order.indexOf(out.best) ? isa : out.best;
    if (expectedIsa !== isa) console.log(`instruction set ${isa}: not supported by this CPU, ran ${expectedIsa} instead`);
    expect(out.isa).toBe(expectedIsa);
    expect(out.rows).toHaveLength(18);
    for (const row of out.rows) {
      expect(row.finite).toBe(true);
      expect(row.norm).toBeGreaterThan(0);
      expect(row.yError).toBeLessThanOrEqual(CPU_BOUND + row.yBound);
      expect(row.stateError).toBeLessThanOrEqual(CPU_BOUND + row.stateBound);
    }
  });
});

describe('ssd-kernels bench --step', () => {
  test('--json gives one row per batch with time, GB/s and the measured bandwidths', () => {
    const cli = path.join(__dirname, '..', 'dist', 'lib', 'cli.js');
    const r = spawnSync(process.execPath, [cli, 'bench', '--step', '--json', '--runs', '3', '--batch', '1,2', '--memory-mib', '64'], { encoding: 'utf8', timeout: 120000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { rows: { batch: number; ms: number; gbps: number; sweepGbps: number; memoryGbps: number; ofMemory: number }[] };
    expect(out.rows.map((row) => row.batch)).toEqual([1, 2]);
    for (const row of out.rows) {
      expect(row.ms).toBeGreaterThan(0);
      expect(row.gbps).toBeGreaterThan(0);
      expect(row.sweepGbps).toBeGreaterThan(0);
      expect(row.memoryGbps).toBeGreaterThan(0);
      expect(row.ofMemory).toBeCloseTo(row.gbps / row.memoryGbps, 2);
    }
  });

  test('a bad argument is named on stderr, with where the usage is, and exits 2', () => {
    const cli = path.join(__dirname, '..', 'dist', 'lib', 'cli.js');
    const r = spawnSync(process.execPath, [cli, 'bench', '--step', '--batch', '0'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--batch takes integers >= 1 separated by commas, not '0'/);
    expect(r.stderr).toMatch(/run 'ssd-kernels bench --help' for its usage/);
  });
});
