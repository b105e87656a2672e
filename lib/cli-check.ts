/**
 * `ssd-kernels check`: built-in examples on every backend, each against the float64 reference, one
 * line per check (PASS, FAIL or SKIP with the reason), exit code 1 on any failure.
 *
 *   forward   the four CHECK_CASES on the CPU and on CUDA (lib/reference.ts)
 *   backward  the CPU on the fp32 case; CUDA on the fp32 and the bf16 case (lib/reference-backward.ts)
 *   step      the two STEP_CHECK_CASES on the CPU and on CUDA (lib/reference-step.ts)
 *   sm_90a    the bf16 forward cases again on the sm_90a forward (forced, csrc/cuda/sm90), SKIP with the
 *             reason on a GPU without it
 *   sm_80     the bf16 forward cases and the bf16 backward case again on the sm_80 kernels (forced): on an
 *             H100 or H200 the default lines above ran them on the sm_90a kernels
 *
 * CUDA runs on host tensors with device: 'cuda' (uploads, runs, downloads), held to the bounds the
 * GPU suite uses (lib/tolerances.ts). Without CUDA its checks are listed as skipped, with the reason.
 * The CPU checks and the CUDA checks draw their inputs from two seeded generators, each in a fixed
 * order, so the CPU's errors are the same with or without CUDA.
 */
import { backends, ssd, ssdBackward, ssdBackwardSync, ssdStep, ssdStepSync, ssdSync, type SsdBackwardOptions, type SsdGrads, type SsdOptions, type SsdStepOptions } from './index';
import { Random, makeExample, roundingError, withOptions, type ExampleConfig, type ExampleOptions } from './examples';
import { allFinite, l2, relativeL2, ssdReference } from './reference';
import { ssdReferenceBackward, type RefGrads } from './reference-backward';
import { makeStepExample, ssdStepReference, type StepExampleConfig, type StepExampleOptions } from './reference-step';
import { Tensor, type FloatType } from './tensor';
import { SsdError } from './errors';
import { withBackwardPath, withForwardPath } from './cuda-path';
import {
  CPU_BOUND, CPU_STEP_BF16_STATE_BOUND, CUDA_BACKWARD_BF16_BOUND, CUDA_BACKWARD_BF16_SUMMED_BOUND, CUDA_BACKWARD_FP32_BOUND,
  CUDA_FORWARD_BOUND, CUDA_STEP_FP32_BOUND, CUDA_ZERO_GRADIENT_L2, ROUNDING_ALLOWANCE,
} from './tolerances';
import { Progress, type CommandSpec } from './cli-args';

export const CHECK_COMMAND: CommandSpec = {
  name: 'check',
  synopsis: ['check'],
  summary: 'compare every backend (forward, backward, step) with the float64 reference; exit 1 on failure',
  about:
    'Runs built-in examples on the CPU and, where CUDA is available, on the GPU: the forward, the\n' +
    'backward and the decode step, each against the float64 reference. Prints PASS or FAIL with the\n' +
    'error and its bound per check, SKIP with the reason for CUDA checks without CUDA; exits 1 on any\n' +
    'failure. Progress goes to stderr on a terminal (SSD_KERNELS_PROGRESS=1 forces it on, =0 off).',
  flags: [],
};

/** One check: an example of `config`'s sizes made with `example`, run with `options`. */
interface Case<Config, Example, Options> {
  name: string;
  config: Config;
  example: Example;
  options: Options;
  /** relative L2 bound on the outputs (and, for the step, the state) on the CPU */
  bound: number;
}

type CheckCase = Case<ExampleConfig, ExampleOptions, SsdOptions>;

const CHECK_CASES: CheckCase[] = [
  {
    name: 'fp32, every option',
    config: { batch: 2, seqlen: 300, nheads: 4, headdim: 24, ngroups: 2, dstate: 20 },
    example: { dtype: 'float32', D: 'channel', z: true, dtBias: true, initialStates: true, seqStarts: [77, 256] },
    options: { dtSoftplus: true, dtLimit: [0.005, 0.1], returnFinalStates: true, chunkSize: 64 },
    bound: CPU_BOUND,
  },
  {
    name: 'bf16, D per head, softplus',
    config: { batch: 1, seqlen: 257, nheads: 8, headdim: 64, ngroups: 1, dstate: 64 },
    example: { dtype: 'bfloat16', D: 'head' },
    options: { dtSoftplus: true, returnFinalStates: true },
    bound: CPU_BOUND,
  },
  {
    name: 'fp16, z gate, no D',
    config: { batch: 1, seqlen: 100, nheads: 2, headdim: 17, ngroups: 2, dstate: 33 },
    example: { dtype: 'float16', D: 'none', z: true, positiveDt: true },
    options: { returnFinalStates: true },
    bound: CPU_BOUND,
  },
  {
    // a host seqIdx of one row: on CUDA the packed path (each sequence chunked from its own start)
    name: 'bf16, five packed sequences',
    config: { batch: 1, seqlen: 600, nheads: 16, headdim: 64, ngroups: 1, dstate: 64 },
    example: { dtype: 'bfloat16', D: 'head', z: true, dtBias: true, seqStarts: [100, 101, 356, 500] },
    options: { dtSoftplus: true, returnFinalStates: true, chunkSize: 128 },
    bound: CPU_BOUND,
  },
];

type StepCheckCase = Case<StepExampleConfig, StepExampleOptions, SsdStepOptions>;

const STEP_CHECK_CASES: StepCheckCase[] = [
  {
    name: 'step fp32, every option',
    config: { batch: 5, nheads: 4, headdim: 24, ngroups: 2, dstate: 36, stateRows: 9 },
    example: { D: 'channel', z: true, dtBias: true, stateIndices: [8, -1, 0, 3, 5] },
    options: { dtSoftplus: true, dtLimit: [0.005, 0.1] },
    bound: CPU_BOUND,
  },
  {
    name: 'step bf16 state and inputs',
    config: { batch: 3, nheads: 8, headdim: 64, ngroups: 1, dstate: 128 },
    example: { dtype: 'bfloat16', stateType: 'bfloat16', D: 'head', z: true },
    options: { dtSoftplus: true },
    bound: CPU_STEP_BF16_STATE_BOUND,
  },
];

/** The first two check cases (fp32 every option, bf16) are the CUDA backward's. */
const CUDA_BACKWARD_CASES = CHECK_CASES.slice(0, 2);

/** The backward case checked again on the sm_80 kernels, which the sm_90a backward replaces where it takes the call. */
const SM80_BACKWARD_CASES = CUDA_BACKWARD_CASES.filter((c) => c.example.dtype === 'bfloat16');

/** The forward cases the sm_90a forward takes (bf16 throughout, headdim 64, dstate 64), checked on it and on the sm_80 kernels. */
const SM90_CASES = CHECK_CASES.filter((c) => c.example.dtype === 'bfloat16');

const exp = (v: number): string => v.toExponential(2);

/** One check's line: verdict, device, name padded to a column, then what was measured. */
function line(verdict: 'PASS' | 'FAIL' | 'SKIP', device: 'cpu' | 'cuda', name: string, detail: string): void {
  console.log(`${verdict}  ${device.padEnd(4)}  ${name.padEnd(36)} ${detail}`);
}

/** What a check found: whether it passed and what it measured (the rest of its line), or why it could not run. */
interface Outcome {
  ok: boolean;
  detail: string;
  skipped?: string;
}

/** The forward of one case. */
async function checkForward(rng: Random, c: CheckCase, device: 'cpu' | 'cuda'): Promise<Outcome> {
  const { inputs, ref } = makeExample(rng, c.config, c.example);
  const expected = ssdReference(withOptions(ref, c.options));
  const out = device === 'cpu' ? ssdSync(inputs, { ...c.options, device }) : await ssd(inputs, { ...c.options, device });
  const y = out.y.toFloat32();
  // A 16-bit y is rounded once on the way out: allow twice the error of rounding the reference itself.
  const base = device === 'cpu' ? c.bound : CUDA_FORWARD_BOUND[c.example.dtype ?? 'float32'];
  const yBound = out.y.type === 'float32' ? base : ROUNDING_ALLOWANCE * roundingError(out.y.type as FloatType, expected.y) + base;
  const errors = [relativeL2(y, expected.y)];
  const bounds = [yBound];
  if (out.finalStates) {
    errors.push(relativeL2(out.finalStates.toFloat32(), expected.finalStates));
    bounds.push(base);
  }
  const ok = allFinite(y) && l2(y) > 0 && errors.every((e, i) => e <= bounds[i]);
  return { ok, detail: `rel. L2 error y / finalStates ${errors.map(exp).join(' / ')} (bound ${bounds.map((e) => e.toExponential(1)).join(' / ')})` };
}

/**
 * The forward of one case on the sm_90a kernel, forced for the call (lib/cuda-path.ts)
 * (a call it cannot take is then refused, never run elsewhere): skipped where the GPU has no sm_90a.
 */
async function checkForwardSm90(rng: Random, c: CheckCase): Promise<Outcome> {
  try {
    return await withForwardPath('sm90', () => checkForward(rng, c, 'cuda'));
  } catch (err) {
    if (err instanceof SsdError && err.code === 'ERR_SSD_UNSUPPORTED' && /no sm_90a device/.test(err.message)) return { ok: true, detail: '', skipped: 'no sm_90a device' };
    throw err;
  }
}

/** The backward's inputs for a case: inputs, dy of y's type, a float32 dFinalStates, and the float64 reverse. */
function backwardExample(rng: Random, c: CheckCase): { inputs: ReturnType<typeof makeExample>['inputs']; dy: Tensor; dFinalStates: Tensor; expected: RefGrads; options: SsdBackwardOptions } {
  const { inputs, ref } = makeExample(rng, c.config, c.example);
  const { batch: b, seqlen: L, nheads: h, headdim: p, dstate: n } = c.config;
  const dtype = c.example.dtype ?? 'float32';
  const dy = dtype === 'float32' ? new Tensor('float32', rng.normals(b * L * h * p), [b, L, h, p]) : Tensor.fromFloat32(dtype, rng.normals(b * L * h * p), [b, L, h, p]);
  const dFinalStates = new Tensor('float32', rng.normals(b * h * p * n), [b, h, p, n]);
  const options: SsdBackwardOptions = { chunkSize: c.options.chunkSize, dtSoftplus: c.options.dtSoftplus, dtLimit: c.options.dtLimit };
  const expected = ssdReferenceBackward(withOptions(ref, c.options), dy.toFloat32(), dFinalStates.toFloat32());
  return { inputs, dy, dFinalStates, expected, options };
}

/** The CPU backward on the first check case (fp32, every option) against the float64 reverse. */
function checkCpuBackward(rng: Random): Outcome {
  const c = CHECK_CASES[0];
  const { inputs, dy, dFinalStates, expected, options } = backwardExample(rng, c);
  const grads = ssdBackwardSync(inputs, { dy, dFinalStates }, { ...options, device: 'cpu' });
  let worst = 0;
  let ok = true;
  for (const [key, want] of Object.entries(expected) as [keyof SsdGrads, Float64Array][]) {
    const got = grads[key]?.toFloat32();
    if (!got || !allFinite(got) || l2(got) === 0) ok = false;
    else worst = Math.max(worst, relativeL2(got, want));
  }
  ok = ok && worst <= c.bound;
  const count = Object.keys(expected).length;
  return { ok, detail: `worst rel. L2 error of ${count} gradients ${exp(worst)} (bound ${c.bound.toExponential(1)})` };
}

/** The gradients summed over every position: with bf16 inputs they carry the cancellation of b·L terms (lib/tolerances.ts). */
const SUMMED: readonly string[] = ['dA', 'dD', 'dDtBias'];

/**
 * One CUDA gradient against the float64 reverse, as test/cuda/backward.cuda.test.ts measures it: an
 * exactly zero reference gradient allows fp32 dust (CUDA_ZERO_GRADIENT_L2, absolute); with bf16
 * inputs dDtBias is measured against the norm of Σ|ddt| per head; 16-bit gradients add twice the
 * error of rounding the reference to their type.
 */
function cudaGradError(key: string, got: Tensor | undefined, want: Float64Array, expected: RefGrads, dtype: FloatType): { ok: boolean; error: number; bound: number } {
  if (got === undefined) return { ok: false, error: Infinity, bound: 0 };
  const values = got.toFloat32();
  if (!allFinite(values)) return { ok: false, error: Infinity, bound: 0 };
  if (l2(want) === 0) {
    const error = l2(values);
    return { ok: error < CUDA_ZERO_GRADIENT_L2, error, bound: CUDA_ZERO_GRADIENT_L2 };
  }
  let error = relativeL2(values, want);
  if (key === 'dDtBias' && dtype !== 'float32') {
    const h = want.length;
    const scale = new Float64Array(h);
    for (let i = 0; i < expected.ddt.length; i++) scale[i % h] += Math.abs(expected.ddt[i]);
    let sum = 0;
    for (let i = 0; i < h; i++) sum += (values[i] - want[i]) ** 2;
    error = Math.sqrt(sum) / l2(scale);
  }
  const bound = dtype === 'float32'
    ? CUDA_BACKWARD_FP32_BOUND
    : (SUMMED.includes(key) ? CUDA_BACKWARD_BF16_SUMMED_BOUND : CUDA_BACKWARD_BF16_BOUND) + ROUNDING_ALLOWANCE * roundingError(got.type as FloatType, want);
  return { ok: l2(values) > 0 && error <= bound, error, bound };
}

/** The CUDA backward (device: 'cuda' on host tensors) on one case against the float64 reverse. */
async function checkCudaBackward(rng: Random, c: CheckCase): Promise<Outcome> {
  const { inputs, dy, dFinalStates, expected, options } = backwardExample(rng, c);
  const grads = await ssdBackward(inputs, { dy, dFinalStates }, { ...options, device: 'cuda' });
  const dtype = c.example.dtype ?? 'float32';
  let ok = true;
  // the gradient reported is the first that failed, else the one nearest its bound (largest error / bound)
  let worst = { key: '', error: 0, bound: 1, score: -1 };
  for (const [key, want] of Object.entries(expected) as [keyof SsdGrads, Float64Array][]) {
    const r = cudaGradError(key, grads[key], want, expected, dtype);
    const score = r.ok ? r.error / r.bound : Infinity;
    if (score > worst.score) worst = { key, ...r, score };
    ok = ok && r.ok;
  }
  const count = Object.keys(expected).length;
  return { ok, detail: `${count} gradients; nearest its bound: ${worst.key} rel. L2 error ${exp(worst.error)} (bound ${worst.bound.toExponential(1)})` };
}

/** One step case on `device` against the float64 step; the CUDA bound adds the rounding of 16-bit y and state. */
async function checkStepCase(rng: Random, c: StepCheckCase, device: 'cpu' | 'cuda'): Promise<Outcome> {
  const { state, inputs, ref } = makeStepExample(rng, c.config, c.example);
  const expected = ssdStepReference({ ...ref, dtSoftplus: c.options.dtSoftplus, dtLimit: c.options.dtLimit ? [c.options.dtLimit[0], c.options.dtLimit[1]] : undefined });
  const { y } = device === 'cpu' ? ssdStepSync(state, inputs, { ...c.options, device }) : await ssdStep(state, inputs, { ...c.options, device });
  const yv = y.toFloat32();
  const sv = state.toFloat32();
  const errors = [relativeL2(yv, expected.y), relativeL2(sv, expected.state)];
  const bounds = device === 'cpu'
    ? [c.bound, c.bound]
    : [
      CUDA_STEP_FP32_BOUND + ROUNDING_ALLOWANCE * roundingError(y.type as FloatType, expected.y),
      CUDA_STEP_FP32_BOUND + ROUNDING_ALLOWANCE * roundingError(state.type as FloatType, expected.state),
    ];
  const ok = allFinite(yv) && allFinite(sv) && l2(yv) > 0 && errors.every((e, i) => e <= bounds[i]);
  const bound = device === 'cpu' ? c.bound.toExponential(1) : bounds.map((b) => b.toExponential(1)).join(' / ');
  return { ok, detail: `rel. L2 error y / state ${errors.map(exp).join(' / ')} (bound ${bound})` };
}

interface CheckTask {
  device: 'cpu' | 'cuda';
  name: string;
  run: (rng: Random) => Outcome | Promise<Outcome>;
}

/** Every check, in the order they run and print. */
function tasks(): CheckTask[] {
  const list: CheckTask[] = [];
  for (const device of ['cpu', 'cuda'] as const) {
    for (const c of CHECK_CASES) list.push({ device, name: c.name, run: (rng) => checkForward(rng, c, device) });
  }
  list.push({ device: 'cpu', name: `backward, ${CHECK_CASES[0].name}`, run: checkCpuBackward });
  for (const c of CUDA_BACKWARD_CASES) list.push({ device: 'cuda', name: `backward, ${c.name}`, run: (rng) => checkCudaBackward(rng, c) });
  for (const device of ['cpu', 'cuda'] as const) {
    for (const c of STEP_CHECK_CASES) list.push({ device, name: c.name, run: (rng) => checkStepCase(rng, c, device) });
  }
  for (const c of SM90_CASES) list.push({ device: 'cuda', name: `${c.name} [sm_90a]`, run: (rng) => checkForwardSm90(rng, c) });
  for (const c of SM90_CASES) list.push({ device: 'cuda', name: `${c.name} [sm_80]`, run: (rng) => withForwardPath('sm80', () => checkForward(rng, c, 'cuda')) });
  for (const c of SM80_BACKWARD_CASES) {
    list.push({ device: 'cuda', name: `backward, ${c.name} [sm_80]`, run: (rng) => withBackwardPath('sm80', () => checkCudaBackward(rng, c)) });
  }
  return list;
}

/** `ssd-kernels check`: returns the exit code (0 when every check that ran passed, else 1). */
export async function check(progress: Progress): Promise<number> {
  const cuda = backends().cuda;
  if (!cuda.available) console.log(`cuda: skipped (${cuda.reason})`);
  const all = tasks();
  const runnable = all.filter((t) => t.device === 'cpu' || cuda.available);
  let failures = 0;
  const skips = new Map<string, number>(); // reason -> count
  const skip = (reason: string): void => void skips.set(reason, (skips.get(reason) ?? 0) + 1);
  let done = 0;
  const rngs = { cpu: new Random(20261129), cuda: new Random(20261130) };
  for (const t of all) {
    if (t.device === 'cuda' && !cuda.available) {
      line('SKIP', 'cuda', t.name, `CUDA is unavailable: ${cuda.reason}`);
      skip('CUDA is unavailable');
      continue;
    }
    progress.report(`check: ${++done}/${runnable.length} ${t.device} ${t.name} ...`);
    let outcome: Outcome;
    try {
      outcome = await t.run(rngs[t.device]);
    } catch (err) {
      // a check that throws (a CUDA error, say) is a failure, reported, and the others still run
      outcome = { ok: false, detail: `threw: ${(err as Error).message}` };
    }
    progress.done();
    if (outcome.skipped !== undefined) {
      line('SKIP', t.device, t.name, outcome.skipped);
      skip(outcome.skipped);
      continue;
    }
    line(outcome.ok ? 'PASS' : 'FAIL', t.device, t.name, outcome.detail);
    if (!outcome.ok) failures++;
  }
  progress.done();
  const said = [...skips].map(([reason, n]) => `${n} skipped: ${reason}`).join('; ');
  const tail = said ? ` (${said})` : '';
  console.log(failures === 0 ? `all checks passed${tail}` : `${failures} check(s) failed${tail}`);
  return failures === 0 ? 0 : 1;
}
