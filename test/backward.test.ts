/**
 * The CPU backward against the float64 reverse of the reference recurrence (lib/reference-backward.ts):
 * every option combination, awkward sizes (around the backward's blocks of 16 tokens and ranges of
 * 256), all three dtypes, seqIdx edges, strong and positive decays, chaining through the states,
 * determinism across runs and thread counts, sync vs async, ssdWithGrad, options.out, every
 * instruction set, and the validation of ssdBackward()'s arguments.
 */
import {
  SsdError,
  backends,
  Tensor,
  ssd,
  ssdBackward,
  ssdBackwardSync,
  ssdSync,
  ssdWithGrad,
  type SsdBackwardOptions,
  type SsdGrads,
  type SsdInputs,
  type SsdOptions,
} from '../lib/index';
import { native } from '../lib/native';
import { OPTION_NAMES } from '../lib/validate';
import { ssdReferenceBackward, type RefGrads } from '../lib/reference-backward';
import { GRAD_INPUT, GRAD_NAMES, type SsdGradName } from '../lib/validate-backward';
import {
  Random,
  allFinite,
  l2,
  makeExample,
  relativeL2,
  roundingError,
  softplus,
  withOptions,
  type ExampleConfig,
  type ExampleOptions,
  type RefInputs,
} from './reference';
import { ISA_ORDER, defaultNativeOptions, eventLoopTurnsDuring, optionCombinations, runOnIsa, sameBits } from './helpers';
import { CLAMP_EDGE_MARGIN, CPU_BOUND, CPU_DTBIAS_SUM_BOUND, FP32_UNDERFLOW_MAGNITUDE, ROUNDING_ALLOWANCE } from '../lib/tolerances';

const rng = new Random(20261130);

const FLOAT32_GRADS: readonly SsdGradName[] = ['dA', 'dD', 'dDtBias', 'dInitialStates'];

/** Options both ssd() and ssdBackward() take. */
type Options = Omit<SsdOptions, 'out'>;

interface Case {
  inputs: SsdInputs;
  ref: RefInputs;
  dy: Tensor;
  dFinalStates?: Tensor;
  options: Options;
}

/** Random inputs and output gradients (dy of y's type, rounded; dFinalStates float32 when `final`). */
function makeCase(config: ExampleConfig, example: ExampleOptions, options: Options, final = true, r = rng): Case {
  const { inputs, ref } = makeExample(r, config, example);
  const { batch: b, seqlen: L, nheads: h, headdim: p, dstate: n } = config;
  const dy = Tensor.fromFloat32(example.dtype ?? 'float32', r.normals(b * L * h * p), [b, L, h, p]);
  const c: Case = { inputs, ref: withOptions(ref, options), dy, options };
  if (final) c.dFinalStates = new Tensor('float32', r.normals(b * h * p * n), [b, h, p, n]);
  return c;
}

function reference(c: Case): RefGrads {
  return ssdReferenceBackward(c.ref, c.dy.toFloat32(), c.dFinalStates?.toFloat32());
}

/**
 * Every gradient: present exactly when its input is, of its input's dims and type (float32 for dA,
 * dD, dDtBias, dInitialStates), finite, nonzero, and within the fp32 bound of the reference; a 16-bit
 * gradient may in addition differ by twice the error of rounding the reference itself. Where the
 * reference is exactly zero (ddt and dDtBias when the clamp holds every step of the example), the
 * gradient must be exactly zero too.
 */
function expectGradsMatch(grads: SsdGrads, expected: RefGrads, inputs: SsdInputs): Record<string, number> {
  const errors: Record<string, number> = {};
  for (const key of GRAD_NAMES) {
    const input = inputs[GRAD_INPUT[key]];
    const grad = grads[key];
    if (input === undefined) {
      expect(grad).toBeUndefined();
      continue;
    }
    if (grad === undefined) throw new Error(`${key} is missing`);
    expect(grad.dims).toEqual(input.dims);
    expect(grad.type).toBe(FLOAT32_GRADS.includes(key) ? 'float32' : input.type);
    const values = grad.toFloat32();
    const want = expected[key]!;
    expect(allFinite(values)).toBe(true);
    if (l2(want) === 0) {
      expect(values.every((v) => Object.is(v, 0))).toBe(true);
      errors[key] = 0;
      continue;
    }
    expect(l2(values)).toBeGreaterThan(0);
    const error = relativeL2(values, want);
    const bound = CPU_BOUND + ROUNDING_ALLOWANCE * roundingError(grad.type as 'float32' | 'bfloat16' | 'float16', Float64Array.from(want));
    if (!(error <= bound)) throw new Error(`${key}: relative L2 error ${error} above ${bound}`);
    errors[key] = error;
  }
  return errors;
}

/** A copy of `o` without `keys`. */
function without<T extends object>(o: T, ...keys: string[]): T {
  const copy = { ...o } as Record<string, unknown>;
  for (const k of keys) delete copy[k];
  return copy as T;
}

function run(config: ExampleConfig, example: ExampleOptions, options: Options, final = true): Record<string, number> {
  const c = makeCase(config, example, options, final);
  const grads = ssdBackwardSync(c.inputs, { dy: c.dy, dFinalStates: c.dFinalStates }, options);
  return expectGradsMatch(grads, reference(c), c.inputs);
}

function expectSameBits(a: SsdGrads, b: SsdGrads): void {
  for (const key of GRAD_NAMES) {
    expect(a[key] === undefined).toBe(b[key] === undefined);
    if (a[key]) expect(sameBits(a[key]!, b[key]!)).toBe(true);
  }
}

describe('every option combination (fp32), with and without dFinalStates', () => {
  const small: ExampleConfig = { batch: 2, seqlen: 37, nheads: 4, headdim: 8, ngroups: 2, dstate: 16 };
  test.each(optionCombinations(['float32'], true))('%s', (_name, example, options) => {
    run(small, example, options, options.returnFinalStates === true);
  });
});

describe('awkward sizes', () => {
  const every: ExampleOptions = { D: 'channel', z: true, dtBias: true, initialStates: true };
  const options: Options = { dtSoftplus: true, dtLimit: [0.001, 0.5] };
  // blocks of 16 tokens and ranges of 256: one token, partial and whole blocks, partial and whole ranges
  test.each([1, 2, 15, 16, 17, 31, 33, 255, 256, 257, 300, 700])('seqlen %i with every option', (seqlen) => {
    run({ batch: 2, seqlen, nheads: 3, headdim: 5, ngroups: 1, dstate: 7 }, every, options);
  });
  test.each([1, 3, 15, 16, 17, 33, 64, 65, 80])('headdim %i', (headdim) => {
    run({ batch: 1, seqlen: 45, nheads: 2, headdim, ngroups: 2, dstate: 16 }, every, options);
  });
  test.each([1, 2, 3, 7, 16, 17, 33, 128])('dstate %i', (dstate) => {
    run({ batch: 1, seqlen: 45, nheads: 2, headdim: 16, ngroups: 1, dstate }, every, options);
  });
  test.each([
    ['g = 1', 1],
    ['g = h', 6],
    ['g = 2', 2],
    ['g = 3', 3],
  ] as const)('ngroups: %s', (_name, ngroups) => {
    run({ batch: 2, seqlen: 70, nheads: 6, headdim: 4, ngroups, dstate: 6 }, every, options);
  });
  test('the benchmark shape (headdim 64, dstate 128) over two ranges', () => {
    run({ batch: 1, seqlen: 300, nheads: 2, headdim: 64, ngroups: 1, dstate: 128 }, { ...every, D: 'head' }, { dtSoftplus: true });
  });
  test('without D, z, dtBias or initialStates', () => {
    run({ batch: 2, seqlen: 290, nheads: 4, headdim: 12, ngroups: 2, dstate: 9 }, { D: 'none' }, { dtSoftplus: true });
  });
});

describe('dtypes', () => {
  test.each(['float32', 'bfloat16', 'float16'] as const)('%s inputs (computed in fp32, gradients rounded once)', (dtype) => {
    run(
      { batch: 2, seqlen: 300, nheads: 4, headdim: 16, ngroups: 2, dstate: 32 },
      { dtype, D: 'channel', z: true, dtBias: true, initialStates: true, seqStarts: [20, 64, 256] },
      { dtSoftplus: true, dtLimit: [0.001, 0.5] },
    );
  });
  test('mixed dtypes: bf16 x/B/C/z and dy with fp32 dt', () => {
    const cfg: ExampleConfig = { batch: 1, seqlen: 80, nheads: 4, headdim: 16, ngroups: 1, dstate: 16 };
    const options: Options = { dtSoftplus: true };
    const c = makeCase(cfg, { dtype: 'bfloat16', z: true, dtBias: true }, options);
    const fp32 = makeExample(new Random(1), cfg, {});
    c.inputs.dt = fp32.inputs.dt;
    c.ref = withOptions({ ...c.ref, dt: fp32.ref.dt }, options);
    const grads = ssdBackwardSync(c.inputs, { dy: c.dy, dFinalStates: c.dFinalStates }, options);
    expect(grads.ddt.type).toBe('float32');
    expect(grads.dx.type).toBe('bfloat16');
    expectGradsMatch(grads, reference(c), c.inputs);
  });
  test('dFinalStates of a 16-bit type is read as float32', () => {
    const cfg: ExampleConfig = { batch: 1, seqlen: 40, nheads: 2, headdim: 8, ngroups: 1, dstate: 8 };
    const c = makeCase(cfg, { initialStates: true }, { dtSoftplus: true });
    const half = Tensor.fromFloat32('bfloat16', c.dFinalStates!.toFloat32(), c.dFinalStates!.dims);
    const grads = ssdBackwardSync(c.inputs, { dy: c.dy, dFinalStates: half }, c.options);
    expectGradsMatch(grads, ssdReferenceBackward(c.ref, c.dy.toFloat32(), half.toFloat32()), c.inputs);
  });
});

describe('step sizes and decays', () => {
  const cfg: ExampleConfig = { batch: 2, seqlen: 100, nheads: 3, headdim: 8, ngroups: 1, dstate: 8 };

  test('dtLimit: exactly zero ddt where the clamp holds, nonzero elsewhere; dDtBias is the sum of ddt', () => {
    const options: Options = { dtSoftplus: true, dtLimit: [0.012, 0.03] };
    const c = makeCase(cfg, { dtBias: true, z: true, initialStates: true }, options);
    const grads = ssdBackwardSync(c.inputs, { dy: c.dy, dFinalStates: c.dFinalStates }, options);
    expectGradsMatch(grads, reference(c), c.inputs);
    const ddt = grads.ddt.toFloat32();
    const dt = c.inputs.dt.toFloat32();
    const bias = c.inputs.dtBias!.toFloat32();
    let clamped = 0;
    const sums = new Float64Array(cfg.nheads);
    for (let k = 0; k < dt.length; k++) {
      const head = k % cfg.nheads;
      const v = softplus(dt[k] + bias[head]);
      sums[head] += ddt[k];
      if (v < 0.012 - CLAMP_EDGE_MARGIN || v > 0.03 + CLAMP_EDGE_MARGIN) {
        clamped++;
        expect(ddt[k]).toBe(0);
      } else if (v > 0.012 + CLAMP_EDGE_MARGIN && v < 0.03 - CLAMP_EDGE_MARGIN) {
        expect(ddt[k]).not.toBe(0);
      }
    }
    expect(clamped).toBeGreaterThan(10);
    expect(relativeL2(grads.dDtBias!.toFloat32(), sums)).toBeLessThan(CPU_DTBIAS_SUM_BOUND);
  });

  test('softplus above 20 is the identity, gradient included', () => {
    const options: Options = { dtSoftplus: true };
    const c = makeCase(cfg, { dtBias: true, z: true }, options);
    const dt = c.inputs.dt.toFloat32().slice();
    for (let k = 0; k < dt.length; k += 7) dt[k] = 20.5 + (k % 3);
    c.inputs.dt = new Tensor('float32', dt, c.inputs.dt.dims);
    c.inputs.A = new Tensor('float32', c.inputs.A.toFloat32().map((a) => a / 400), [cfg.nheads]); // keep exp(d·A) from underflowing
    c.ref = withOptions({ ...c.ref, dt, A: c.inputs.A.toFloat32() }, options);
    const grads = ssdBackwardSync(c.inputs, { dy: c.dy, dFinalStates: c.dFinalStates }, options);
    expectGradsMatch(grads, reference(c), c.inputs);
  });

  test('large dt: exp(dt·A) underflows to zero without NaN', () => {
    // d ≈ 96: every decay is below fp32's range (exp(−96·|A|)), so dA and dInitialStates (the
    // gradients through the decays alone) are 0 here while the float64 reference keeps terms of order
    // 1e−40; every other gradient is compared as usual
    const options: Options = { dtSoftplus: true };
    const c = makeCase(cfg, { dtShift: 100, z: true, initialStates: true }, options);
    const grads = ssdBackwardSync(c.inputs, { dy: c.dy, dFinalStates: c.dFinalStates }, options);
    const expected = reference(c);
    for (const [ours, want] of [[grads.dA, expected.dA], [grads.dInitialStates!, expected.dInitialStates!]] as const) {
      expect(Math.max(...want.map(Math.abs))).toBeLessThan(FP32_UNDERFLOW_MAGNITUDE);
      expect(ours.toFloat32().every((v) => v === 0)).toBe(true);
    }
    expectGradsMatch(without(grads, 'dA', 'dInitialStates'), without(expected, 'dA', 'dInitialStates'), without(c.inputs, 'A', 'initialStates'));
  });

  test('strong decay: many segment restarts inside a block', () => {
    // d ≈ 1, A down to −16: decays to e^−16 per token, the running product leaves [2^−32, 1] every few tokens
    run({ ...cfg, seqlen: 300 }, { dtShift: 4, z: true, dtBias: true, initialStates: true }, { dtSoftplus: true });
  });

  test('positive A (growing states) within the factoring bounds', () => {
    const options: Options = { dtSoftplus: true };
    const c = makeCase({ ...cfg, seqlen: 300 }, { initialStates: true }, options);
    const A = Float32Array.from({ length: cfg.nheads }, (_, i) => 0.05 * (i + 1));
    c.inputs.A = new Tensor('float32', A, [cfg.nheads]);
    c.ref = withOptions({ ...c.ref, A }, options);
    const grads = ssdBackwardSync(c.inputs, { dy: c.dy, dFinalStates: c.dFinalStates }, options);
    expectGradsMatch(grads, reference(c), c.inputs);
  });
});

describe('seqIdx', () => {
  const cfg: ExampleConfig = { batch: 2, seqlen: 600, nheads: 2, headdim: 8, ngroups: 1, dstate: 8 };
  const options: Options = { dtSoftplus: true };
  test.each([
    ['boundaries at block and range edges', { seqStarts: [16, 48, 256, 512] }],
    ['boundaries inside blocks', { seqStarts: [3, 17, 45, 46, 300, 599] }],
    ['one sequence, value 0 keeps initial states', { seqFirst: 0, initialStates: true }],
  ] as [string, ExampleOptions][])('%s', (_name, example) => {
    run(cfg, { ...example, z: true, dtBias: true }, options);
  });
  test('a row whose first value is not 0 drops its initial states: zero dInitialStates', () => {
    const c = makeCase(cfg, { seqFirst: 3, seqStarts: [40, 300], initialStates: true }, options);
    const grads = ssdBackwardSync(c.inputs, { dy: c.dy, dFinalStates: c.dFinalStates }, options);
    const expected = reference(c);
    expect(l2(expected.dInitialStates!)).toBe(0);
    expect(l2(grads.dInitialStates!.toFloat32())).toBe(0);
    expectGradsMatch(without(grads, 'dInitialStates'), without(expected, 'dInitialStates'), without(c.inputs, 'initialStates'));
  });
});

describe('chaining', () => {
  test('the backward of two halves, dFinalStates and dInitialStates handed over, equals the backward of one pass', () => {
    const cfg: ExampleConfig = { batch: 2, seqlen: 600, nheads: 4, headdim: 16, ngroups: 2, dstate: 32 };
    const options: Options = { dtSoftplus: true, dtLimit: [0.001, 0.3], returnFinalStates: true };
    const c = makeCase(cfg, { D: 'channel', z: true, dtBias: true, initialStates: true }, options);
    const slice = (t: Tensor, from: number, to: number): Tensor => {
      const [b, L, ...rest] = t.dims;
      const inner = rest.reduce((a, v) => a * v, 1);
      const src = t.data as Float32Array;
      const out = new Float32Array(b * (to - from) * inner);
      for (let bi = 0; bi < b; bi++) out.set(src.subarray((bi * L + from) * inner, (bi * L + to) * inner), bi * (to - from) * inner);
      return new Tensor('float32', out, [b, to - from, ...rest]);
    };
    const join = (a: Tensor, d: Tensor): Float32Array => {
      const [b, L1, ...rest] = a.dims;
      const L2 = d.dims[1];
      const inner = rest.reduce((x, v) => x * v, 1);
      const out = new Float32Array(b * (L1 + L2) * inner);
      const av = a.toFloat32();
      const dv = d.toFloat32();
      for (let bi = 0; bi < b; bi++) {
        out.set(av.subarray(bi * L1 * inner, (bi + 1) * L1 * inner), bi * (L1 + L2) * inner);
        out.set(dv.subarray(bi * L2 * inner, (bi + 1) * L2 * inner), (bi * (L1 + L2) + L1) * inner);
      }
      return out;
    };
    const cut = 290; // inside the second range, not on a block edge
    const part = (from: number, to: number, initialStates?: Tensor): SsdInputs => ({
      ...c.inputs,
      x: slice(c.inputs.x, from, to),
      dt: slice(c.inputs.dt, from, to),
      B: slice(c.inputs.B, from, to),
      C: slice(c.inputs.C, from, to),
      z: slice(c.inputs.z!, from, to),
      initialStates,
    });
    const whole = ssdBackwardSync(c.inputs, { dy: c.dy, dFinalStates: c.dFinalStates }, options);
    const firstInputs = part(0, cut, c.inputs.initialStates);
    const first = ssdSync(firstInputs, options);
    const secondInputs = part(cut, cfg.seqlen, first.finalStates);
    const second = ssdBackwardSync(secondInputs, { dy: slice(c.dy, cut, cfg.seqlen), dFinalStates: c.dFinalStates }, options);
    const firstGrads = ssdBackwardSync(firstInputs, { dy: slice(c.dy, 0, cut), dFinalStates: second.dInitialStates }, options);

    const expected = reference(c);
    const close = (a: ArrayLike<number>, b: Tensor, want: ArrayLike<number>): void => {
      expect(allFinite(a)).toBe(true);
      expect(l2(a)).toBeGreaterThan(0);
      expect(relativeL2(a, b.toFloat32())).toBeLessThanOrEqual(CPU_BOUND);
      expect(relativeL2(a, want)).toBeLessThanOrEqual(CPU_BOUND);
    };
    const add = (a: Tensor, b: Tensor): Float32Array => Float32Array.from(a.toFloat32(), (v, i) => v + b.toFloat32()[i]);
    close(join(firstGrads.dx, second.dx), whole.dx, expected.dx);
    close(join(firstGrads.dz!, second.dz!), whole.dz!, expected.dz!);
    close(join(firstGrads.ddt, second.ddt), whole.ddt, expected.ddt);
    close(join(firstGrads.dB, second.dB), whole.dB, expected.dB);
    close(join(firstGrads.dC, second.dC), whole.dC, expected.dC);
    close(add(firstGrads.dA, second.dA), whole.dA, expected.dA);
    close(add(firstGrads.dD!, second.dD!), whole.dD!, expected.dD!);
    close(add(firstGrads.dDtBias!, second.dDtBias!), whole.dDtBias!, expected.dDtBias!);
    close(firstGrads.dInitialStates!.toFloat32(), whole.dInitialStates!, expected.dInitialStates!);
  });
});

describe('determinism and execution', () => {
  const cfg: ExampleConfig = { batch: 2, seqlen: 600, nheads: 6, headdim: 24, ngroups: 3, dstate: 40 };
  const example: ExampleOptions = { D: 'channel', z: true, dtBias: true, initialStates: true, seqStarts: [50, 300] };
  const options: Options = { dtSoftplus: true, dtLimit: [0.001, 0.4] };

  test('repeated runs and threads = 1, 2, 3, 7 give the same bits', () => {
    const c = makeCase(cfg, example, options);
    const grads = { dy: c.dy, dFinalStates: c.dFinalStates };
    const one = ssdBackwardSync(c.inputs, grads, { ...options, threads: 1 });
    expectGradsMatch(one, reference(c), c.inputs);
    expectSameBits(one, ssdBackwardSync(c.inputs, grads, { ...options, threads: 1 }));
    for (const threads of [2, 3, 7]) expectSameBits(one, ssdBackwardSync(c.inputs, grads, { ...options, threads }));
  });

  test('ssdBackward() returns a Promise with the bits of ssdBackwardSync()', async () => {
    const c = makeCase(cfg, example, options);
    const pending = ssdBackward(c.inputs, { dy: c.dy, dFinalStates: c.dFinalStates }, options);
    expect(pending).toBeInstanceOf(Promise);
    const a = await pending;
    expectSameBits(a, ssdBackwardSync(c.inputs, { dy: c.dy, dFinalStates: c.dFinalStates }, options));
  });

  test('ssdBackward() keeps its inputs alive: disposing them right after the call does not change the result', async () => {
    const c = makeCase(cfg, example, options);
    const expected = reference(c);
    const pending = ssdBackward(c.inputs, { dy: c.dy, dFinalStates: c.dFinalStates }, options);
    const inputs = { ...c.inputs };
    for (const t of [...Object.values(c.inputs), c.dy, c.dFinalStates!]) (t as Tensor).dispose();
    const grads = await pending;
    for (const key of GRAD_NAMES) {
      const want = expected[key]!;
      expect(relativeL2(grads[key]!.toFloat32(), want)).toBeLessThanOrEqual(CPU_BOUND);
    }
    expect(Object.keys(inputs)).toHaveLength(10);
  });

  test('many concurrent ssdBackward() calls all resolve to their own right answers', async () => {
    const cases = Array.from({ length: 8 }, () => makeCase({ batch: 1, seqlen: 64, nheads: 2, headdim: 8, ngroups: 1, dstate: 8 }, { z: true }, options));
    const results = await Promise.all(cases.map((c) => ssdBackward(c.inputs, { dy: c.dy, dFinalStates: c.dFinalStates }, options)));
    results.forEach((g, i) => expectGradsMatch(g, reference(cases[i]), cases[i].inputs));
  });

  test('ssdBackward() does not block the event loop while it runs', async () => {
    const c = makeCase({ batch: 1, seqlen: 2048, nheads: 16, headdim: 64, ngroups: 1, dstate: 128 }, {}, { dtSoftplus: true }, false);
    expect(await eventLoopTurnsDuring(ssdBackward(c.inputs, { dy: c.dy }, { dtSoftplus: true, threads: 1 }))).toBeGreaterThan(1);
  });
});

describe('options.out', () => {
  const cfg: ExampleConfig = { batch: 2, seqlen: 50, nheads: 4, headdim: 16, ngroups: 2, dstate: 16 };
  const options: Options = { dtSoftplus: true };

  test('gradients written into given tensors are the same bits, and those tensors are returned', async () => {
    const c = makeCase(cfg, { dtype: 'bfloat16', D: 'channel', z: true, dtBias: true, initialStates: true }, options);
    const grads = { dy: c.dy, dFinalStates: c.dFinalStates };
    const fresh = ssdBackwardSync(c.inputs, grads, options);
    const out: SsdGrads = {} as SsdGrads;
    for (const key of GRAD_NAMES) {
      const t = fresh[key]!;
      out[key] = t.type === 'float32' ? new Tensor('float32', new Float32Array(t.size).fill(NaN), t.dims) : new Tensor(t.type, new Uint16Array(t.size).fill(0xffff), t.dims);
    }
    const given = ssdBackwardSync(c.inputs, grads, { ...options, out });
    for (const key of GRAD_NAMES) {
      expect(given[key]).toBe(out[key]);
      expect(sameBits(out[key]!, fresh[key]!)).toBe(true);
    }
    const again = await ssdBackward(c.inputs, grads, { ...options, out: { dx: out.dx } });
    expect(again.dx).toBe(out.dx);
    expect(sameBits(out.dx, fresh.dx)).toBe(true);
  });
});

describe('ssdWithGrad', () => {
  test('gives the forward of ssd() and a backward equal to ssdBackward(), callable more than once', async () => {
    const cfg: ExampleConfig = { batch: 1, seqlen: 90, nheads: 4, headdim: 16, ngroups: 2, dstate: 16 };
    const options: Options = { dtSoftplus: true, returnFinalStates: true };
    const c = makeCase(cfg, { z: true, dtBias: true, initialStates: true }, options);
    const y = new Tensor('float32', new Float32Array(c.inputs.x.size), c.inputs.x.dims);
    const step = await ssdWithGrad(c.inputs, { ...options, out: { y } });
    const plain = await ssd(c.inputs, options);
    expect(step.y).toBe(y);
    expect(sameBits(step.y, plain.y)).toBe(true);
    expect(sameBits(step.finalStates!, plain.finalStates!)).toBe(true);
    const grads = { dy: c.dy, dFinalStates: c.dFinalStates };
    const first = await step.backward(grads);
    expectGradsMatch(first, reference(c), c.inputs);
    expectSameBits(first, ssdBackwardSync(c.inputs, grads, options));
    const dx = new Tensor('float32', new Float32Array(c.inputs.x.size), c.inputs.x.dims);
    const second = await step.backward(grads, { out: { dx }, threads: 1 });
    expect(second.dx).toBe(dx);
    expectSameBits(first, second);
    // the options that define the function are the forward's
    await expect(step.backward(grads, { dtSoftplus: false } as never)).rejects.toThrow(/Unknown option of backward\(\) 'dtSoftplus'; expected one of out, threads/);
    await expect(step.backward(grads, 2 as never)).rejects.toThrow(TypeError);
  });
  test('the inputs object may change after the forward; the backward uses the tensors of the forward', async () => {
    const cfg: ExampleConfig = { batch: 1, seqlen: 20, nheads: 2, headdim: 8, ngroups: 1, dstate: 8 };
    const c = makeCase(cfg, {}, {}, false);
    const step = await ssdWithGrad(c.inputs);
    const expected = ssdBackwardSync(c.inputs, { dy: c.dy });
    c.inputs.x = new Tensor('float32', new Float32Array(c.inputs.x.size), c.inputs.x.dims);
    expectSameBits(await step.backward({ dy: c.dy }), expected);
  });
});

describe('instruction sets', () => {
  // Each instruction set runs in a child process of the compiled package (see runOnIsa).
  const script = `
    const lib = require('./dist/lib/index.js');
    const { Random, makeExample, withOptions, roundingError } = require('./dist/lib/examples.js');
    const { relativeL2, l2, allFinite } = require('./dist/lib/reference.js');
    const { ssdReferenceBackward } = require('./dist/lib/reference-backward.js');
    const rng = new Random(9);
    const rows = [];
    const cases = [
      [{ batch: 2, seqlen: 300, nheads: 4, headdim: 19, ngroups: 2, dstate: 21 }, { D: 'channel', z: true, dtBias: true, initialStates: true, seqStarts: [9, 32, 260] }, { dtSoftplus: true, dtLimit: [0.001, 0.3] }],
      [{ batch: 1, seqlen: 70, nheads: 2, headdim: 64, ngroups: 1, dstate: 128 }, { z: true }, { dtSoftplus: true }],
    ];
    for (const dtype of ['float32', 'bfloat16', 'float16']) {
      for (const [cfg, ex, opts] of cases) {
        const { inputs, ref } = makeExample(rng, cfg, { ...ex, dtype });
        const dims = inputs.x.dims;
        const dy = lib.Tensor.fromFloat32(dtype, rng.normals(inputs.x.size), dims);
        const dF = rng.normals(cfg.batch * cfg.nheads * cfg.headdim * cfg.dstate);
        const grads = lib.ssdBackwardSync(inputs, { dy, dFinalStates: new lib.Tensor('float32', dF, [cfg.batch, cfg.nheads, cfg.headdim, cfg.dstate]) }, opts);
        const expected = ssdReferenceBackward(withOptions(ref, opts), dy.toFloat32(), dF);
        for (const key of Object.keys(expected)) {
          const v = grads[key].toFloat32();
          rows.push({ dtype, key, finite: allFinite(v), norm: l2(v), error: relativeL2(v, expected[key]), rounding: roundingError(grads[key].type, Float64Array.from(expected[key])) });
        }
      }
    }
    console.log(JSON.stringify({ isa: lib.backends().cpu.isa, best: lib.backends().cpu.bestIsa, rows }));
  `;
  test.each(ISA_ORDER)('%s (or the best this CPU has below it) matches the reference', (isa) => {
    const out = runOnIsa<{ rows: { dtype: string; key: string; finite: boolean; norm: number; error: number; rounding: number }[] }>(script, isa);
    expect(out.rows).toHaveLength(3 * (9 + 7));
    for (const row of out.rows) {
      expect(row.finite).toBe(true);
      expect(row.norm).toBeGreaterThan(0);
      if (!(row.error <= CPU_BOUND + 2 * row.rounding)) throw new Error(`${row.dtype} ${row.key}: ${row.error}`);
    }
  });
});

describe('validation', () => {
  const cfg: ExampleConfig = { batch: 2, seqlen: 10, nheads: 4, headdim: 8, ngroups: 2, dstate: 4 };
  const fresh = (): Case => makeCase(cfg, { z: true, initialStates: true }, { dtSoftplus: true });
  const both = (c: Case, grads: unknown, options?: unknown): [() => unknown, () => Promise<unknown>] => [
    () => ssdBackwardSync(c.inputs, grads as never, options as SsdBackwardOptions),
    () => ssdBackward(c.inputs, grads as never, options as SsdBackwardOptions),
  ];
  const expectError = async (c: Case, grads: unknown, options: unknown, error: RegExp | Error | (new (...args: never[]) => Error), code?: string): Promise<void> => {
    const [sync, async_] = both(c, grads, options);
    expect(sync).toThrow(error as never);
    await expect(async_()).rejects.toThrow(error as never);
    if (code) {
      try {
        sync();
      } catch (err) {
        expect(err).toBeInstanceOf(SsdError);
        expect((err as SsdError).code).toBe(code);
      }
    }
  };

  test('grads must be an object with dy and known keys only', async () => {
    const c = fresh();
    await expectError(c, undefined, undefined, new TypeError('Expected an object { dy, dFinalStates? } of Tensors for grads but received undefined'));
    await expectError(c, c.dy, undefined, /Expected an object \{ dy, dFinalStates\? \} of Tensors for grads but received an instance of Tensor/);
    await expectError(c, {}, undefined, new TypeError('Expected a Tensor (batch, seqlen, nheads, headdim) for grads.dy but received undefined'));
    await expectError(c, { dy: c.dy, dFinalState: c.dFinalStates }, undefined, /Unknown key of grads 'dFinalState' \(did you mean 'dFinalStates'\?\)/, 'ERR_SSD_OPTION');
    await expectError(c, { dy: c.dy.data }, undefined, /Expected a Tensor \(batch, seqlen, nheads, headdim\) for grads.dy but received a Float32Array of length 640/);
  });

  test('dy must have the type and dims of y', async () => {
    const c = fresh();
    const bf16 = Tensor.fromFloat32('bfloat16', c.dy.toFloat32(), c.dy.dims);
    await expectError(c, { dy: bf16 }, undefined, new TypeError("Expected a Tensor of type 'float32' (the type of y, which is x's) for grads.dy but received a Tensor of type 'bfloat16'"));
    const swapped = new Tensor('float32', c.dy.toFloat32(), [2, 4, 10, 8]);
    await expectError(c, { dy: swapped }, undefined, /Expected dims \[2, 10, 4, 8\] \(batch, seqlen, nheads, headdim\), the dims of y, for grads.dy but received \[2, 4, 10, 8\]/, 'ERR_SSD_SHAPE');
    const flat = new Tensor('float32', c.dy.toFloat32(), [640]);
    await expectError(c, { dy: flat }, undefined, RangeError);
    const ints = new Tensor('int32', new Int32Array(640), c.dy.dims);
    await expectError(c, { dy: ints }, undefined, /Expected a Tensor of type 'float32' \(the type of y, which is x's\) for grads.dy but received a Tensor of type 'int32'/);
    const gone = new Tensor('float32', new Float32Array(640), c.dy.dims);
    gone.dispose();
    await expectError(c, { dy: gone }, undefined, /grads.dy was disposed before the call/, 'ERR_SSD_DISPOSED');
  });

  test('dFinalStates must be a float tensor (batch, nheads, headdim, dstate)', async () => {
    const c = fresh();
    const wrong = new Tensor('float32', new Float32Array(2 * 4 * 8 * 4), [2, 4, 4, 8]);
    await expectError(c, { dy: c.dy, dFinalStates: wrong }, undefined, /Expected dims \[2, 4, 8, 4\] \(batch, nheads, headdim, dstate\) for grads.dFinalStates but received \[2, 4, 4, 8\]/, 'ERR_SSD_SHAPE');
    const ints = new Tensor('int32', new Int32Array(256), [2, 4, 8, 4]);
    await expectError(c, { dy: c.dy, dFinalStates: ints }, undefined, /Expected a Tensor of type 'float32' or 'bfloat16' or 'float16' for grads.dFinalStates but received a Tensor of type 'int32'/);
    await expectError(c, { dy: c.dy, dFinalStates: [1, 2] }, undefined, /for grads.dFinalStates but received an array of length 2/);
  });

  test('inputs and options are checked as for ssd()', async () => {
    const c = fresh();
    const bad = { ...c.inputs, dt: new Tensor('float32', new Float32Array(80), [2, 4, 10]) };
    expect(() => ssdBackwardSync(bad, { dy: c.dy })).toThrow(/Expected dims \[2, 10, 4\] \(batch, seqlen, nheads\) for inputs.dt but received \[2, 4, 10\]/);
    await expectError(c, { dy: c.dy }, { dtSoftPlus: true }, /Unknown option 'dtSoftPlus' \(did you mean 'dtSoftplus'\?\)/, 'ERR_SSD_OPTION');
    await expectError(c, { dy: c.dy }, { dtLimit: [1, 0] }, RangeError);
    await expectError(c, { dy: c.dy }, 'fast', new TypeError('Expected an object or undefined for options but received the string "fast"'));
    // returnFinalStates, an option of the forward, is accepted (and changes nothing)
    expectSameBits(ssdBackwardSync(c.inputs, { dy: c.dy }, { dtSoftplus: true, returnFinalStates: true }), ssdBackwardSync(c.inputs, { dy: c.dy }, { dtSoftplus: true }));
  });

  test('options.out holds gradient tensors of the right type and dims, apart from every other tensor', async () => {
    const c = fresh();
    const g = { dy: c.dy };
    const xDims = c.inputs.x.dims;
    await expectError(c, g, { out: { y: c.dy } }, /Unknown key of options.out 'y' \(did you mean 'dx'\?\)/, 'ERR_SSD_OPTION');
    await expectError(c, g, { out: [] }, TypeError);
    await expectError(c, g, { out: { dx: new Tensor('bfloat16', new Uint16Array(640), xDims) } }, new TypeError("Expected a Tensor of type 'float32' for options.out.dx but received a Tensor of type 'bfloat16'"));
    await expectError(c, g, { out: { dA: new Tensor('float32', new Float32Array(5), [5]) } }, /Expected dims \[4\] \(nheads\) for options.out.dA but received \[5\]/, 'ERR_SSD_SHAPE');
    await expectError(c, g, { out: { dDtBias: new Tensor('float32', new Float32Array(4), [4]) } }, /options.out.dDtBias is given but inputs.dtBias is not/, 'ERR_SSD_OPTION');
    await expectError(c, g, { out: { dx: c.inputs.x } }, /Expected options.out.dx to be a tensor apart from the inputs, grads and other outputs/, 'ERR_SSD_VALUE');
    await expectError(c, g, { out: { dx: c.dy } }, /apart from the inputs, grads and other outputs/, 'ERR_SSD_VALUE');
    const shared = new Tensor('float32', new Float32Array(640), xDims);
    await expectError(c, g, { out: { dx: shared, dz: shared } }, /Expected options.out.dz to be a tensor apart/, 'ERR_SSD_VALUE');
  });

  // Where CUDA cannot run (as on CI), a CUDA request or a device tensor is refused before anything is read.
  (backends().cuda.available ? test.skip : test)("without CUDA, device 'cuda' and device tensors are refused with the reason", async () => {
    const c = fresh();
    await expectError(c, { dy: c.dy }, { device: 'cuda' }, /options.device 'cuda:0' cannot run the backward: CUDA is not available/, 'ERR_SSD_DEVICE');
    await expectError(c, { dy: c.dy }, { device: 'cuda:1' }, /options.device 'cuda:1' cannot run the backward: CUDA is not available/, 'ERR_SSD_DEVICE');
    // a device tensor (a made-up address: the call is refused before anything reads it)
    const onDevice = Tensor.fromDevicePointer(0x1000n, 'float32', c.dy.dims, { device: 0 });
    await expectError(c, { dy: onDevice }, undefined, /options.device 'auto \(grads.dy on 'cuda:0'\)' cannot run the backward/, 'ERR_SSD_DEVICE');
    const x = Tensor.fromDevicePointer(0x2000n, 'float32', c.inputs.x.dims, { device: 0 });
    expect(() => ssdBackwardSync({ ...c.inputs, x }, { dy: c.dy }, { device: 'auto' })).toThrow(/inputs.x on 'cuda:0'/);
    // 'auto' with host tensors runs on the CPU here
    expectSameBits(ssdBackwardSync(c.inputs, { dy: c.dy }, { device: 'auto' }), ssdBackwardSync(c.inputs, { dy: c.dy }, { device: 'cpu' }));
  });

  test('the addon re-checks byte lengths and required buffers itself', () => {
    const c = fresh();
    const grads = ssdBackwardSync(c.inputs, { dy: c.dy });
    const base = {
      dims: [2, 10, 4, 8, 2, 4], ...defaultNativeOptions(OPTION_NAMES), dtSoftplus: true,
      x: c.inputs.x.data, xType: 0, dt: c.inputs.dt.data, dtType: 0, A: c.inputs.A.toFloat32(),
      B: c.inputs.B.data, BType: 0, C: c.inputs.C.data, CType: 0, D: null, dPerChannel: false,
      z: null, zType: 0, dtBias: null, initialStates: null, seqIdx: null,
      dy: c.dy.data, dyType: 0, dFinalStates: null,
      dx: grads.dx.data, ddt: grads.ddt.data, dA: grads.dA.data as Float32Array, dB: grads.dB.data, dC: grads.dC.data,
      dD: null, dz: null, dDtBias: null, dInitialStates: null,
    };
    expect(() => native().backwardSync(base)).not.toThrow();
    // errors made by the addon come from the main realm: compare names and messages
    const failure = (f: () => unknown): { name: string; message: string } => {
      try {
        f();
      } catch (err) {
        return { name: (err as Error).name, message: (err as Error).message };
      }
      throw new Error('did not throw');
    };
    expect(failure(() => native().backwardSync({ ...base, dx: new Float32Array(10) }))).toEqual({ name: 'RangeError', message: 'Expected 2560 bytes for dx but received 40' });
    expect(failure(() => native().backwardSync({ ...base, dy: null as never }))).toEqual({ name: 'TypeError', message: 'Expected a TypedArray for dy but received nothing' });
    expect(failure(() => native().backwardSync({ ...base, dz: new Float32Array(640) }))).toEqual({ name: 'TypeError', message: 'Expected no dz without z' });
    expect(failure(() => native().backwardSync({ ...base, dims: [2, 10, 4, 8, 3, 4] })).name).toBe('RangeError');
  });
});
