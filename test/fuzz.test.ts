/**
 * The property-based fuzzer on the CPU (fast-check; cases, checks and budget in test/fuzz-cases.ts):
 * random sizes (1 to a few hundred tokens, odd headdim and dstate, ngroups dividing nheads, every
 * chunk size, partial chunks), every option (D per head or per channel, z, dtBias, dtSoftplus,
 * dtLimit, initialStates, finalStates, seqIdx packs, cuSeqlens with varlenStates, returnUngated,
 * preallocated outputs, threads, sync and async calls) and dtype (float32, bfloat16, float16, and
 * mixed per tensor), against the float64 references: the forward, the backward and the step.
 *
 * A failure prints the seed, the shrunk case and the command that replays it. CI runs the default
 * number of cases (about a minute on two cores); SSD_FUZZ_RUNS=N or SSD_FUZZ_SECONDS=S runs longer.
 */
import { Tensor, ssd, ssdBackward, ssdBackwardSync, ssdStep, ssdStepSync, ssdSync, type SsdBackwardOptions, type SsdGrads, type SsdOptions, type SsdStepOptions } from '../lib/index';
import { GRAD_INPUT, GRAD_NAMES } from '../lib/validate-backward';
import { CPU_BOUND } from '../lib/tolerances';
import { buildScan, buildStep, checkBackward, checkForward, checkStep, forwardOut, fuzzTimeout, runProperty, scanCase, stepCase, type Bounds, type ScanCase } from './fuzz-cases';

const FILE = 'test/fuzz.test.ts';

/** The CPU path is held to CPU_BOUND everywhere (lib/tolerances.ts), and to exact zeros where the reference is zero. */
const CPU: Bounds = { forward: () => CPU_BOUND, grad: () => CPU_BOUND, step: CPU_BOUND, zero: 0 };

/** Cases per property in CI: together about a minute on the two-core development VM. */
const RUNS = { forward: 800, backward: 500, step: 800 };

function threadsOption(threads: number): { threads?: number } {
  return threads > 0 ? { threads } : {};
}

/** options.out for a backward: a NaN-filled tensor for every gradient the call returns. */
function backwardOut(built: ReturnType<typeof buildScan>): Partial<SsdGrads> {
  const out: Partial<SsdGrads> = {};
  for (const key of GRAD_NAMES) {
    const input = built.inputs[GRAD_INPUT[key]];
    if (input === undefined) continue;
    const type = ['dA', 'dD', 'dDtBias', 'dInitialStates'].includes(key) ? 'float32' : (input.type as 'float32');
    out[key] = Tensor.fromFloat32(type, new Float32Array(input.size).fill(NaN), input.dims);
  }
  return out;
}

function expectSame<T>(name: string, got: T, want: T | undefined): void {
  if (want !== undefined && got !== want) throw new Error(`${name}: the result is not the tensor passed in options.out`);
}

test(
  'forward: every size, option and dtype against the float64 recurrence',
  async () => {
    await runProperty(
      'forward',
      FILE,
      scanCase,
      async (c: ScanCase) => {
        const built = buildScan(c);
        const options: SsdOptions = { ...built.options, device: 'cpu', ...threadsOption(c.threads) };
        if (c.out) options.out = forwardOut(c, built);
        const result = c.sync ? ssdSync(built.inputs, options) : await ssd(built.inputs, options);
        if (options.out) {
          expectSame('y', result.y, options.out.y);
          expectSame('finalStates', result.finalStates, options.out.finalStates);
          expectSame('varlenStates', result.varlenStates, options.out.varlenStates);
          expectSame('yUngated', result.yUngated, options.out.yUngated);
        }
        checkForward(result, c, built, CPU);
      },
      RUNS.forward,
    );
  },
  fuzzTimeout(300000),
);

test(
  'backward: every size, option and dtype against the float64 reverse of the recurrence',
  async () => {
    await runProperty(
      'backward',
      FILE,
      scanCase,
      async (c: ScanCase) => {
        const built = buildScan(c);
        const options: SsdBackwardOptions = { ...built.options, device: 'cpu', ...threadsOption(c.threads) } as SsdBackwardOptions;
        if (c.out) options.out = backwardOut(built);
        const grads = { dy: built.dy, ...(built.dFinalStates ? { dFinalStates: built.dFinalStates } : {}) };
        const result = c.sync ? ssdBackwardSync(built.inputs, grads, options) : await ssdBackward(built.inputs, grads, options);
        if (options.out) for (const key of GRAD_NAMES) expectSame(key, result[key], options.out[key] as Tensor | undefined);
        checkBackward(result, built, CPU);
      },
      RUNS.backward,
    );
  },
  fuzzTimeout(300000),
);

test(
  'step: every size, option, dtype, state type and state-cache layout against the float64 step',
  async () => {
    await runProperty(
      'step',
      FILE,
      stepCase,
      async (c) => {
        const built = buildStep(c);
        const options: SsdStepOptions = { ...built.options, device: 'cpu', ...threadsOption(c.threads) };
        const y0 = c.out ? Tensor.fromFloat32(c.dtype, new Float32Array(built.inputs.x.size).fill(NaN), built.inputs.x.dims) : undefined;
        if (y0) options.out = { y: y0 };
        const { y } = c.sync ? ssdStepSync(built.state, built.inputs, options) : await ssdStep(built.state, built.inputs, options);
        expectSame('y', y, y0);
        checkStep(y, built.state, built, c, CPU);
      },
      RUNS.step,
    );
  },
  fuzzTimeout(300000),
);
