/**
 * Non-finite values on the CPU: a NaN in any input of the forward (seqIdx and cuSeqlens packs), the
 * backward (dy and dFinalStates included) and the step reaches exactly the outputs that the float64
 * reference makes non-finite, in every dtype and on every instruction set. In particular the step
 * size's clamp and softplus keep a NaN dt (with the default dtLimit (0, ∞) the clamp once turned it
 * into 0), its gradient passes the clamp, and a sequence start drops the previous sequence's state
 * instead of multiplying it by 0, so that other heads, other batch rows and the other sequences of a
 * pack stay finite. The cases are in ./nonfinite-cases.ts, shared with the GPU suite.
 */
import { SsdError, Tensor, ssd, ssdBackward, ssdStep, type FloatType } from '../lib/index';
import { Random, makeExample, roundingError } from '../lib/examples';
import { makeStepExample } from '../lib/reference-step';
import { CPU_BOUND, ROUNDING_ALLOWANCE } from '../lib/tolerances';
import { ISA_ORDER, runOnIsa } from './helpers';
import { CPU_LAYOUT, caseName, checkNanRun, nanCases, runNanCase, type Outcome } from './nonfinite-cases';

const DTYPES: FloatType[] = ['float32', 'bfloat16', 'float16'];
const HEADS_PER_GROUP = CPU_LAYOUT.config.nheads / CPU_LAYOUT.config.ngroups;

/** The CPU's usual bound: a 16-bit output is rounded once on the way out. */
function cpuBound(o: Outcome, expected: Float64Array): number {
  return CPU_BOUND + ROUNDING_ALLOWANCE * roundingError(o.type as FloatType, expected);
}

describe('a NaN reaches exactly what it feeds (the best instruction set)', () => {
  const cases = nanCases(['forward', 'varlen', 'backward', 'step'], DTYPES, false).map((c) => [caseName(c), c] as const);
  test.each(cases)('%s', async (_name, c) => {
    const run = await runNanCase(c, CPU_LAYOUT, 'cpu');
    expect(checkNanRun(run, 'exact', HEADS_PER_GROUP, cpuBound)).toEqual([]);
  });
});

describe('a NaN reaches exactly what it feeds (every instruction set)', () => {
  // Each instruction set runs in a child process of the compiled package (see runOnIsa).
  const script = `
    const lib = require('./dist/lib/index.js');
    const { roundingError } = require('./dist/lib/examples.js');
    const { CPU_BOUND, ROUNDING_ALLOWANCE } = require('./dist/lib/tolerances.js');
    const { CPU_LAYOUT, caseName, checkNanRun, nanCases, runNanCase } = require('./dist/test/nonfinite-cases.js');
    const bound = (o, e) => CPU_BOUND + ROUNDING_ALLOWANCE * roundingError(o.type, e);
    (async () => {
      const failures = [];
      const cases = nanCases(['forward', 'varlen', 'backward', 'step'], ['float32', 'bfloat16', 'float16'], false);
      for (const c of cases) {
        const f = checkNanRun(await runNanCase(c, CPU_LAYOUT, 'cpu'), 'exact', ${HEADS_PER_GROUP}, bound);
        if (f.length > 0) failures.push(caseName(c) + ': ' + f.join('; '));
      }
      console.log(JSON.stringify({ isa: lib.backends().cpu.isa, best: lib.backends().cpu.bestIsa, cases: cases.length, failures }));
    })();
  `;
  test.each(ISA_ORDER)('%s (or the best this CPU has below it)', (isa) => {
    const out = runOnIsa<{ cases: number; failures: string[] }>(script, isa);
    expect(out.cases).toBeGreaterThan(100);
    expect(out.failures).toEqual([]);
  });
});

describe('a NaN in A', () => {
  // A is read on the host before any computation: a host A must be finite (docs/semantics.md). A
  // device-resident A is not read back, and the GPU suite checks that its NaN propagates.
  const rng = new Random(3);
  const cfg = { batch: 1, seqlen: 8, nheads: 2, headdim: 4, ngroups: 1, dstate: 4 };
  const expectRefused = async (run: () => Promise<unknown>): Promise<void> => {
    await expect(run()).rejects.toThrow(/Expected finite values for inputs\.A but received NaN at index 1/);
    await run().catch((err: unknown) => {
      expect(err).toBeInstanceOf(SsdError);
      expect((err as SsdError).code).toBe('ERR_SSD_VALUE');
    });
  };
  test('is refused on the host by the forward, the backward and the step', async () => {
    const { inputs } = makeExample(rng, cfg, {});
    (inputs.A.data as Float32Array)[1] = NaN;
    await expectRefused(() => ssd(inputs));
    await expectRefused(() => ssdBackward(inputs, { dy: inputs.x }));
    const step = makeStepExample(rng, { batch: 1, nheads: 2, headdim: 4, ngroups: 1, dstate: 4 });
    step.inputs.A = new Tensor('float32', Float32Array.from([-1, NaN]), [2]);
    await expectRefused(() => ssdStep(step.state, step.inputs));
  });
});
