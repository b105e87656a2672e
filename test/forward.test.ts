/**
 * The CPU forward against the float64 reference: every option combination, awkward sizes, all
 * three dtypes, seqIdx edges, chaining, determinism across thread counts, sync vs async, and every
 * instruction set the CPU path can dispatch to.
 */
import { Tensor, ssd, ssdSync, type SsdOptions } from '../lib/index';
import { Random, makeExample, ssdReference, withOptions, type ExampleConfig, type ExampleOptions } from './reference';
import { ISA_ORDER, eventLoopTurnsDuring, expectMatchesReference, optionCombinations, runOnIsa, sameBits } from './helpers';
import { CPU_BOUND, CPU_SPLIT_MAX_ABS_DIFFERENCE, ROUNDING_ALLOWANCE } from '../lib/tolerances';

const rng = new Random(20261129);

function run(config: ExampleConfig, example: ExampleOptions, options: SsdOptions): void {
  const { inputs, ref } = makeExample(rng, config, example);
  const out = ssdSync(inputs, options);
  expect(out.y.dims).toEqual([config.batch, config.seqlen, config.nheads, config.headdim]);
  expect(out.y.type).toBe(example.dtype ?? 'float32');
  expect(out.finalStates !== undefined).toBe(options.returnFinalStates === true);
  expectMatchesReference(out.y, ssdReference(withOptions(ref, options)), out.finalStates);
}

describe('every option combination (fp32)', () => {
  const small: ExampleConfig = { batch: 2, seqlen: 37, nheads: 4, headdim: 8, ngroups: 2, dstate: 16 };
  const combos = optionCombinations(['float32'], true);
  test.each(combos)('%s', (_name, example, options) => run(small, example, options));
});

describe('awkward sizes', () => {
  const Q = 16;
  test.each([1, 2, Q - 1, Q, Q + 1, 3 * Q + 5])('seqlen %i with chunkSize 16', (seqlen) => {
    run({ batch: 2, seqlen, nheads: 3, headdim: 5, ngroups: 1, dstate: 7 }, { z: true, initialStates: true }, { dtSoftplus: true, returnFinalStates: true, chunkSize: Q });
  });
  test.each([1, 3, 5, 17, 33, 64, 65])('headdim %i', (headdim) => {
    run({ batch: 1, seqlen: 29, nheads: 2, headdim, ngroups: 2, dstate: 16 }, { D: 'channel' }, { dtSoftplus: true, returnFinalStates: true });
  });
  test.each([1, 2, 7, 15, 16, 17, 33, 128])('dstate %i', (dstate) => {
    run({ batch: 1, seqlen: 29, nheads: 2, headdim: 16, ngroups: 1, dstate }, { initialStates: true }, { dtSoftplus: true, returnFinalStates: true });
  });
  test.each([
    ['g = 1', 1],
    ['g = h', 6],
    ['g = 2', 2],
    ['g = 3', 3],
  ] as const)('ngroups: %s', (_name, ngroups) => {
    run({ batch: 2, seqlen: 21, nheads: 6, headdim: 4, ngroups, dstate: 6 }, { z: true }, { dtSoftplus: true, returnFinalStates: true });
  });
  test('the benchmark shape (headdim 64, dstate 128) with a partial chunk', () => {
    run({ batch: 1, seqlen: 300, nheads: 2, headdim: 64, ngroups: 1, dstate: 128 }, { z: true, initialStates: true }, { dtSoftplus: true, returnFinalStates: true });
  });
  test('large dt: exp(dt·A) underflows to zero without NaN', () => {
    run({ batch: 1, seqlen: 40, nheads: 2, headdim: 8, ngroups: 1, dstate: 8 }, { dtShift: 100 }, { dtSoftplus: true, returnFinalStates: true });
  });
});

describe('dtypes', () => {
  test.each(['float32', 'bfloat16', 'float16'] as const)('%s inputs (computed in fp32) with every option', (dtype) => {
    run(
      { batch: 2, seqlen: 70, nheads: 4, headdim: 16, ngroups: 2, dstate: 32 },
      { dtype, D: 'channel', z: true, dtBias: true, initialStates: true, seqStarts: [20, 64] },
      { dtSoftplus: true, dtLimit: [0.001, 0.5], returnFinalStates: true, chunkSize: 32 },
    );
  });
  test('mixed dtypes: bf16 x/B/C/z with fp32 dt, as the GPU benchmark uses', () => {
    const cfg: ExampleConfig = { batch: 1, seqlen: 50, nheads: 4, headdim: 16, ngroups: 1, dstate: 16 };
    const { inputs, ref } = makeExample(rng, cfg, { dtype: 'bfloat16', z: true });
    const fp32 = makeExample(new Random(1), cfg, {});
    inputs.dt = fp32.inputs.dt;
    ref.dt = fp32.ref.dt;
    const out = ssdSync(inputs, { dtSoftplus: true, returnFinalStates: true });
    expectMatchesReference(out.y, ssdReference(withOptions(ref, { dtSoftplus: true })), out.finalStates);
  });
});

describe('seqIdx', () => {
  const cfg: ExampleConfig = { batch: 2, seqlen: 80, nheads: 2, headdim: 8, ngroups: 1, dstate: 8 };
  test.each([
    ['boundaries at chunk edges', { seqStarts: [16, 32, 64] }],
    ['boundaries inside chunks', { seqStarts: [3, 17, 45, 46, 79] }],
    ['first value nonzero drops initial states', { seqFirst: 3, seqStarts: [40], initialStates: true }],
    ['one sequence, value 0 keeps initial states', { seqFirst: 0, initialStates: true }],
  ] as [string, ExampleOptions][])('%s', (_name, example) => {
    run(cfg, example, { dtSoftplus: true, returnFinalStates: true, chunkSize: 16 });
  });
});

describe('chaining', () => {
  test('two halves with finalStates handed over as initialStates equal one run', () => {
    const cfg: ExampleConfig = { batch: 2, seqlen: 90, nheads: 4, headdim: 16, ngroups: 2, dstate: 32 };
    const { inputs } = makeExample(rng, cfg, { z: true, dtBias: true, initialStates: true });
    const options: SsdOptions = { dtSoftplus: true, returnFinalStates: true };
    const whole = ssdSync(inputs, options);
    const cut = 41;
    const slice = (t: Tensor, from: number, to: number): Tensor => {
      const [b, L, ...rest] = t.dims;
      const inner = rest.reduce((a, c) => a * c, 1);
      const src = t.data as Float32Array;
      const out = new Float32Array(b * (to - from) * inner);
      for (let bi = 0; bi < b; bi++) out.set(src.subarray((bi * L + from) * inner, (bi * L + to) * inner), bi * (to - from) * inner);
      return new Tensor('float32', out, [b, to - from, ...rest]);
    };
    const part = (from: number, to: number, initialStates?: Tensor) => ({
      ...inputs,
      x: slice(inputs.x, from, to),
      dt: slice(inputs.dt, from, to),
      B: slice(inputs.B, from, to),
      C: slice(inputs.C, from, to),
      z: slice(inputs.z!, from, to),
      initialStates,
    });
    const first = ssdSync(part(0, cut, inputs.initialStates), options);
    const second = ssdSync(part(cut, cfg.seqlen, first.finalStates), options);
    const joined = new Float32Array(whole.y.size);
    const inner = cfg.nheads * cfg.headdim;
    for (let b = 0; b < cfg.batch; b++) {
      joined.set((first.y.data as Float32Array).subarray(b * cut * inner, (b + 1) * cut * inner), b * cfg.seqlen * inner);
      joined.set((second.y.data as Float32Array).subarray(b * (cfg.seqlen - cut) * inner, (b + 1) * (cfg.seqlen - cut) * inner), (b * cfg.seqlen + cut) * inner);
    }
    const wholeY = whole.y.data as Float32Array;
    let maxDiff = 0;
    for (let i = 0; i < joined.length; i++) maxDiff = Math.max(maxDiff, Math.abs(joined[i] - wholeY[i]));
    expect(maxDiff).toBeLessThan(CPU_SPLIT_MAX_ABS_DIFFERENCE);
    const a = second.finalStates!.data as Float32Array;
    const b = whole.finalStates!.data as Float32Array;
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThan(CPU_SPLIT_MAX_ABS_DIFFERENCE);
  });
});

describe('determinism and execution', () => {
  const cfg: ExampleConfig = { batch: 2, seqlen: 200, nheads: 6, headdim: 24, ngroups: 3, dstate: 40 };

  test('threads = 1 and threads = many give the same bits', () => {
    const { inputs } = makeExample(rng, cfg, { z: true, initialStates: true, seqStarts: [50] });
    const one = ssdSync(inputs, { dtSoftplus: true, returnFinalStates: true, threads: 1 });
    for (const threads of [2, 3, 7]) {
      const many = ssdSync(inputs, { dtSoftplus: true, returnFinalStates: true, threads });
      expect(sameBits(one.y, many.y)).toBe(true);
      expect(sameBits(one.finalStates!, many.finalStates!)).toBe(true);
    }
  });

  test('ssd() and ssdSync() give the same bits, and ssd() returns a Promise', async () => {
    const { inputs, ref } = makeExample(rng, cfg, { dtBias: true });
    const pending = ssd(inputs, { dtSoftplus: true, returnFinalStates: true });
    expect(pending).toBeInstanceOf(Promise);
    const a = await pending;
    const b = ssdSync(inputs, { dtSoftplus: true, returnFinalStates: true });
    expect(sameBits(a.y, b.y)).toBe(true);
    expect(sameBits(a.finalStates!, b.finalStates!)).toBe(true);
    expectMatchesReference(a.y, ssdReference(withOptions(ref, { dtSoftplus: true })), a.finalStates);
  });

  test('many concurrent ssd() calls all resolve to their own right answers', async () => {
    const examples = Array.from({ length: 12 }, () => makeExample(rng, { batch: 1, seqlen: 64, nheads: 2, headdim: 8, ngroups: 1, dstate: 8 }, { z: true }));
    const results = await Promise.all(examples.map((e) => ssd(e.inputs, { dtSoftplus: true })));
    results.forEach((r, i) => expectMatchesReference(r.y, ssdReference(withOptions(examples[i].ref, { dtSoftplus: true }))));
  });

  test('ssd() keeps its inputs alive: disposing them right after the call does not change the result', async () => {
    const { inputs, ref } = makeExample(rng, cfg, { z: true, initialStates: true });
    const pending = ssd(inputs, { dtSoftplus: true, returnFinalStates: true });
    for (const t of Object.values(inputs)) (t as Tensor).dispose();
    const out = await pending;
    expectMatchesReference(out.y, ssdReference(withOptions(ref, { dtSoftplus: true })), out.finalStates);
  });

  test('ssd() does not block the event loop while it runs', async () => {
    const { inputs } = makeExample(rng, { batch: 1, seqlen: 2048, nheads: 16, headdim: 64, ngroups: 1, dstate: 128 }, {});
    expect(await eventLoopTurnsDuring(ssd(inputs, { dtSoftplus: true, threads: 1 }))).toBeGreaterThan(1);
  });
});

describe('options.out', () => {
  const cfg: ExampleConfig = { batch: 2, seqlen: 50, nheads: 4, headdim: 16, ngroups: 2, dstate: 16 };

  test('results written into given tensors are the same bits, and those tensors are returned', async () => {
    const { inputs } = makeExample(rng, cfg, { dtype: 'bfloat16', z: true, initialStates: true });
    const options: SsdOptions = { dtSoftplus: true, returnFinalStates: true };
    const fresh = ssdSync(inputs, options);
    const y = new Tensor('bfloat16', new Uint16Array(fresh.y.size).fill(0xffff), fresh.y.dims);
    const finalStates = new Tensor('float32', new Float32Array(fresh.finalStates!.size).fill(NaN), fresh.finalStates!.dims);
    const out = ssdSync(inputs, { ...options, out: { y, finalStates } });
    expect(out.y).toBe(y);
    expect(out.finalStates).toBe(finalStates);
    expect(sameBits(y, fresh.y)).toBe(true);
    expect(sameBits(finalStates, fresh.finalStates!)).toBe(true);
    const again = await ssd(inputs, { ...options, out: { y } });
    expect(again.y).toBe(y);
    expect(sameBits(y, fresh.y)).toBe(true);
  });

  test('out tensors of the wrong type, dims or role are rejected before anything runs', () => {
    const { inputs } = makeExample(rng, cfg, {});
    const yDims = [cfg.batch, cfg.seqlen, cfg.nheads, cfg.headdim];
    const size = yDims.reduce((a, b) => a * b, 1);
    expect(() => ssdSync(inputs, { out: { y: new Tensor('bfloat16', new Uint16Array(size), yDims) } })).toThrow(
      new TypeError("Expected a Tensor of type 'float32' for options.out.y but received a Tensor of type 'bfloat16'"),
    );
    expect(() => ssdSync(inputs, { out: { y: new Tensor('float32', new Float32Array(size), [cfg.batch, cfg.nheads, cfg.seqlen, cfg.headdim]) } })).toThrow(
      /Expected dims \[2, 50, 4, 16\] \(batch, seqlen, nheads, headdim\) for options.out.y but received \[2, 4, 50, 16\]/,
    );
    expect(() => ssdSync(inputs, { out: { y: inputs.x } })).toThrow(/options.out.y to be a tensor apart from the inputs/);
    const statesDims = [cfg.batch, cfg.nheads, cfg.headdim, cfg.dstate];
    const states = new Tensor('float32', new Float32Array(statesDims.reduce((a, b) => a * b, 1)), statesDims);
    expect(() => ssdSync(inputs, { out: { finalStates: states } })).toThrow(/returnFinalStates is not true/);
    expect(() => ssdSync(inputs, { out: { yy: states } as never })).toThrow(/Unknown key of options.out 'yy' \(did you mean 'y'\?\)/);
  });
});

describe('instruction sets', () => {
  // Each instruction set runs in a child process of the compiled package (see runOnIsa).
  const script = `
    const lib = require('./dist/lib/index.js');
    const { Random, makeExample, withOptions } = require('./dist/lib/examples.js');
    const { ssdReference, relativeL2, l2, allFinite } = require('./dist/lib/reference.js');
    const { roundingError } = require('./dist/lib/examples.js');
    const rng = new Random(5);
    const rows = [];
    const cases = [
      [{ batch: 2, seqlen: 45, nheads: 4, headdim: 19, ngroups: 2, dstate: 21 }, { D: 'channel', z: true, dtBias: true, initialStates: true, seqStarts: [9, 32] }, { dtSoftplus: true, dtLimit: [0.001, 0.3], returnFinalStates: true, chunkSize: 16 }],
      [{ batch: 1, seqlen: 70, nheads: 2, headdim: 64, ngroups: 1, dstate: 128 }, {}, { dtSoftplus: true, returnFinalStates: true }],
    ];
    for (const dtype of ['float32', 'bfloat16', 'float16']) {
      for (const [cfg, ex, opts] of cases) {
        const { inputs, ref } = makeExample(rng, cfg, { ...ex, dtype });
        const out = lib.ssdSync(inputs, opts);
        const expected = ssdReference(withOptions(ref, opts));
        const y = out.y.toFloat32();
        rows.push({ dtype, finite: allFinite(y), norm: l2(y), yError: relativeL2(y, expected.y), yRounding: roundingError(out.y.type, expected.y),
                    statesError: relativeL2(out.finalStates.toFloat32(), expected.finalStates) });
      }
    }
    console.log(JSON.stringify({ isa: lib.backends().cpu.isa, best: lib.backends().cpu.bestIsa, rows }));
  `;
  test.each(ISA_ORDER)('%s (or the best this CPU has below it) matches the reference', (isa) => {
    const out = runOnIsa<{ rows: { dtype: string; finite: boolean; norm: number; yError: number; yRounding: number; statesError: number }[] }>(script, isa);
    expect(out.rows).toHaveLength(6);
    for (const row of out.rows) {
      expect(row.finite).toBe(true);
      expect(row.norm).toBeGreaterThan(0);
      expect(row.yError).toBeLessThanOrEqual(CPU_BOUND + ROUNDING_ALLOWANCE * row.yRounding);
      expect(row.statesError).toBeLessThanOrEqual(CPU_BOUND);
    }
  });
});
