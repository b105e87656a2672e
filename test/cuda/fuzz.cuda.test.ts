/**
 * The property-based fuzzer on a GPU: the properties of test/fuzz.test.ts (cases, checks and budget
 * in test/fuzz-cases.ts) with device 'cuda': random sizes, every option and dtype (and mixed dtypes),
 * seqIdx packs and cuSeqlens with varlenStates, host tensors or device tensors in and out, against
 * the float64 references: the forward, the backward (with the forward's yUngated handed over when
 * the case keeps it) and the step.
 *
 * Bounds are those of the other GPU suites (lib/tolerances.ts): the forward CUDA_FORWARD_BOUND of
 * its least precise input type (plus the rounding of a 16-bit output); the backward
 * CUDA_BACKWARD_FP32_BOUND with float32 inputs, else CUDA_BACKWARD_BF16_BOUND for the per-position
 * gradients and CUDA_BACKWARD_BF16_SUMMED_BOUND for dA, dD and dDtBias (measured against the sums of
 * their terms' magnitudes); the step CUDA_STEP_FP32_BOUND; CUDA_ZERO_GRADIENT_L2 where the reference
 * is exactly zero. Cases the CUDA path does not take (cudaSupports) are skipped.
 *
 * A failure prints the seed, the shrunk case and the command that replays it; SSD_FUZZ_RUNS=N or
 * SSD_FUZZ_SECONDS=S runs longer. Without a usable GPU every test here is skipped, and says why.
 */
import fc from 'fast-check';
import { Tensor, backends, ssd, ssdBackward, ssdStep, type SsdBackwardOptions, type SsdGrads, type SsdInputs, type SsdOptions, type SsdResult, type SsdStepOptions } from '../../lib/index';
import { native } from '../../lib/native';
import { nativeDtype } from '../../lib/native-args';
import type { FloatType } from '../../lib/tensor';
import {
  CUDA_BACKWARD_BF16_BOUND,
  CUDA_BACKWARD_BF16_SUMMED_BOUND,
  CUDA_BACKWARD_FP32_BOUND,
  CUDA_FORWARD_BOUND,
  CUDA_STEP_FP32_BOUND,
  CUDA_ZERO_GRADIENT_L2,
} from '../../lib/tolerances';
import { GRAD_NAMES } from '../../lib/validate-backward';
import { buildScan, buildStep, checkBackward, checkForward, checkStep, forwardOut, fuzzTimeout, nheadsOf, runProperty, scanCase, stepCase, type Bounds, type ScanCase, type StepCase } from '../fuzz-cases';

const FILE = 'dist/test/cuda/fuzz.cuda.test.js -c jest.gpu.config.js';
const cuda = backends().cuda;
const describeGpu = cuda.available ? describe : describe.skip;

test('CUDA availability is reported (the GPU fuzz runs only where it is available)', () => {
  if (!cuda.available) {
    console.log(`GPU fuzz skipped: CUDA is unavailable here (${cuda.reason})`);
    expect(cuda.reason.length).toBeGreaterThan(0);
  } else {
    expect(cuda.devices).toBeGreaterThan(0);
  }
});

const SUMMED = ['dA', 'dD', 'dDtBias'];
const GPU: Bounds = {
  forward: (types) => Math.max(...types.map((t) => CUDA_FORWARD_BOUND[t])),
  grad: (key, types) => {
    if (types.every((t) => t === 'float32')) return CUDA_BACKWARD_FP32_BOUND;
    return SUMMED.includes(key) ? CUDA_BACKWARD_BF16_SUMMED_BOUND : CUDA_BACKWARD_BF16_BOUND;
  },
  step: CUDA_STEP_FP32_BOUND,
  zero: CUDA_ZERO_GRADIENT_L2,
};

/** Cases per property: the float64 reference on the host is most of the time. */
const RUNS = { forward: 300, backward: 200, step: 300 };

/** Whether the CUDA path takes the case's sizes and dtypes (else the case is skipped). */
function cudaTakes(op: 'forward' | 'backward', c: ScanCase, inputs: SsdInputs): boolean {
  const query = {
    dims: [c.batch, c.seqlen, nheadsOf(c), c.headdim, c.ngroups, c.dstate],
    chunkSize: c.chunkSize,
    xType: nativeDtype(inputs.x.type),
    BType: nativeDtype(inputs.B.type),
    CType: nativeDtype(inputs.C.type),
    dtType: nativeDtype(inputs.dt.type),
    zType: inputs.z ? nativeDtype(inputs.z.type) : null,
  };
  return native().cudaSupports(op, query).ok;
}

/** The inputs read as float32: on a device they must be float32 tensors (the same values). */
const FLOAT32_INPUTS = ['A', 'D', 'dtBias', 'initialStates', 'dFinalStates'];

function upload(name: string, t: Tensor): Tensor {
  return (FLOAT32_INPUTS.includes(name) && t.type !== 'float32' ? new Tensor('float32', t.toFloat32(), t.dims) : t).toDevice();
}

/** Every tensor of `inputs` on the device (uploads awaited). */
async function toDevice<T extends object>(inputs: T): Promise<T> {
  const dev = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, upload(k, v as Tensor)])) as unknown as T;
  await Promise.all(Object.values(dev).map((t) => (t as Tensor).ready));
  return dev;
}

function disposeAll(tensors: readonly (Tensor | undefined)[]): void {
  for (const t of tensors) if (t && t.location === 'cuda') t.dispose();
}

async function hostResult(r: SsdResult): Promise<SsdResult> {
  const out: SsdResult = { y: await r.y.toHost() };
  if (r.finalStates) out.finalStates = await r.finalStates.toHost();
  if (r.varlenStates) out.varlenStates = await r.varlenStates.toHost();
  if (r.yUngated) out.yUngated = await r.yUngated.toHost();
  return out;
}

/** Runs the forward of a case on the GPU; returns the results on the host, and the device inputs to dispose. */
async function forward(c: ScanCase, built: ReturnType<typeof buildScan>): Promise<{ result: SsdResult; deviceResult?: SsdResult; inputs: SsdInputs }> {
  const inputs = c.onDevice ? await toDevice(built.inputs) : built.inputs;
  const options: SsdOptions = { ...built.options, ...(c.onDevice ? {} : { device: 'cuda' as const }) };
  if (c.out) {
    const out = forwardOut(c, built);
    options.out = c.onDevice ? (Object.fromEntries(Object.entries(out).map(([k, v]) => [k, (v as Tensor).toDevice()])) as SsdOptions['out']) : out;
  }
  const r = await ssd(inputs, options);
  if (options.out) {
    for (const [k, v] of Object.entries(options.out)) if ((r as unknown as Record<string, Tensor>)[k] !== v) throw new Error(`${k}: not the tensor passed in options.out`);
  }
  if (!c.onDevice) return { result: r, inputs };
  if (r.y.location !== 'cuda') throw new Error('device inputs gave host outputs');
  return { result: await hostResult(r), deviceResult: r, inputs };
}

describeGpu('the GPU fuzz', () => {
  test(
    'forward: every size, option and dtype against the float64 recurrence',
    async () => {
      await runProperty(
        'cuda forward',
        FILE,
        scanCase,
        async (c) => {
          const built = buildScan(c);
          fc.pre(cudaTakes('forward', c, built.inputs));
          const { result, deviceResult, inputs } = await forward(c, built);
          try {
            checkForward(result, c, built, GPU);
          } finally {
            if (deviceResult) disposeAll([deviceResult.y, deviceResult.finalStates, deviceResult.varlenStates, deviceResult.yUngated]);
            if (c.onDevice) disposeAll(Object.values(inputs) as Tensor[]);
          }
        },
        RUNS.forward,
      );
    },
    fuzzTimeout(600000),
  );

  test(
    'backward: every size, option and dtype against the float64 reverse of the recurrence',
    async () => {
      await runProperty(
        'cuda backward',
        FILE,
        scanCase,
        async (c) => {
          const built = buildScan(c);
          fc.pre(cudaTakes('backward', c, built.inputs));
          const inputs = c.onDevice ? await toDevice(built.inputs) : built.inputs;
          const options = { ...built.options, ...(c.onDevice ? {} : { device: 'cuda' as const }) } as SsdBackwardOptions;
          delete (options as SsdOptions).returnUngated;
          let yUngated: Tensor | undefined;
          if (c.returnUngated) {
            // the forward keeps y before the gate; the backward takes dz from it
            const f = await ssd(inputs, { ...built.options, returnUngated: true, returnFinalStates: false, returnVarlenStates: false, ...(c.onDevice ? {} : { device: 'cuda' as const }) });
            yUngated = f.yUngated;
            if (f.y.location === 'cuda') f.y.dispose();
            options.yUngated = yUngated;
          }
          const dy = c.onDevice ? built.dy.toDevice() : built.dy;
          const dFinalStates = built.dFinalStates && c.onDevice ? upload('dFinalStates', built.dFinalStates) : built.dFinalStates;
          const grads = await ssdBackward(inputs, { dy, ...(dFinalStates ? { dFinalStates } : {}) }, options);
          try {
            const host = {} as SsdGrads;
            for (const key of GRAD_NAMES) if (grads[key]) host[key] = await grads[key]!.toHost();
            checkBackward(host, built, GPU);
          } finally {
            disposeAll([...GRAD_NAMES.map((k) => grads[k]), yUngated, dy, dFinalStates]);
            if (c.onDevice) disposeAll(Object.values(inputs) as Tensor[]);
          }
        },
        RUNS.backward,
      );
    },
    fuzzTimeout(600000),
  );

  test(
    'step: every size, option, dtype, state type and state-cache layout against the float64 step',
    async () => {
      await runProperty(
        'cuda step',
        FILE,
        stepCase,
        async (c: StepCase) => {
          const built = buildStep(c);
          const query = {
            dims: [c.batch, nheadsOf(c), c.headdim, c.ngroups, c.dstate],
            xType: nativeDtype(c.dtype),
            BType: nativeDtype(c.dtype),
            CType: nativeDtype(c.dtype),
            dtType: nativeDtype(c.dtype),
            zType: c.z ? nativeDtype(c.dtype) : null,
            stateType: nativeDtype(c.stateType as FloatType),
          };
          fc.pre(native().cudaSupports('step', query).ok);
          const options: SsdStepOptions = { ...built.options };
          if (!c.onDevice) {
            options.device = 'cuda';
            const { y } = await ssdStep(built.state, built.inputs, options);
            checkStep(y, built.state, built, c, GPU);
            return;
          }
          const state = built.state.toDevice();
          const inputs = await toDevice(built.inputs);
          const { y } = await ssdStep(state, inputs, options);
          try {
            checkStep(await y.toHost(), await state.toHost(), built, c, GPU);
          } finally {
            disposeAll([y, state, ...(Object.values(inputs) as Tensor[])]);
          }
        },
        RUNS.step,
      );
    },
    fuzzTimeout(600000),
  );
});
