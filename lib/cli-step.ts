/**
 * The decode step in the command line: `check` cases against the float64 step reference, and
 * `bench --step`, which times ssdStepSync at batch 1, 16, 64 and 256 (nheads 32, headdim 64,
 * dstate 128, float32 state) and sets the bytes it moves against memory bandwidth measured in the
 * same run.
 */
import { backends, ssdStep, ssdStepSync, version, type SsdStepOptions } from './index';
import { devicePointer, mapBuffers, stepArgs, stepInputSlots } from './native-args';
import { validateStep } from './validate-step';
import { native } from './native';
import { Random } from './examples';
import { allFinite, l2, relativeL2 } from './reference';
import { makeStepExample, ssdStepReference, type StepExampleConfig, type StepExampleOptions } from './reference-step';
import { isThreadCount } from './rules';
import { STEP_BENCH_BATCHES, STEP_BENCH_SIZES } from './configs';
import { Tensor } from './tensor';
import { CPU_BOUND, CPU_STEP_BF16_STATE_BOUND } from './tolerances';

interface StepCheckCase {
  name: string;
  config: StepExampleConfig;
  example: StepExampleOptions;
  options: SsdStepOptions;
  /** relative L2 bound on y and on the state */
  bound: number;
}

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

/** Runs the step check cases on the CPU; prints one line each and returns the number of failures. */
export function checkStep(rng: Random): number {
  let failures = 0;
  for (const c of STEP_CHECK_CASES) {
    const { state, inputs, ref } = makeStepExample(rng, c.config, c.example);
    const expected = ssdStepReference({ ...ref, dtSoftplus: c.options.dtSoftplus, dtLimit: c.options.dtLimit ? [c.options.dtLimit[0], c.options.dtLimit[1]] : undefined });
    const { y } = ssdStepSync(state, inputs, { ...c.options, device: 'cpu' });
    const yv = y.toFloat32();
    const errors = [relativeL2(yv, expected.y), relativeL2(state.toFloat32(), expected.state)];
    const ok = allFinite(yv) && l2(yv) > 0 && errors.every((e) => e <= c.bound);
    if (!ok) failures++;
    console.log(`${ok ? 'PASS' : 'FAIL'}  cpu   ${c.name.padEnd(28)} rel. L2 error y / state ${errors.map((e) => e.toExponential(2)).join(' / ')} (bound ${c.bound.toExponential(1)})`);
  }
  return failures;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

/** Bytes a step must move at least: the state read and written, x, z, dt, B, C read, y written (float32). */
export function stepBytes(batch: number): number {
  const { nheads: h, headdim: p, ngroups: g, dstate: n } = STEP_BENCH_SIZES;
  return 4 * (2 * batch * h * p * n + 3 * batch * h * p + batch * h + 2 * batch * g * n);
}

/**
 * Read-modify-write bandwidth (GB/s) over `bytes`: the better of one thread and `threads` threads,
 * as the step itself uses one thread for small states.
 */
function bandwidth(threads: number, bytes: number, seconds: number): number {
  const addon = native();
  const one = addon.rmwBandwidth(1, bytes, seconds);
  return threads > 1 ? Math.max(one, addon.rmwBandwidth(threads, bytes, seconds)) : one;
}

export function benchStep(args: string[]): number {
  const json = args.includes('--json');
  const runs = Number(flag(args, '--runs') ?? 100);
  const threads = Number(flag(args, '--threads') ?? backends().cpu.threads);
  const batches = (flag(args, '--batch') ?? STEP_BENCH_BATCHES.join(',')).split(',').map(Number);
  const memoryMiB = Number(flag(args, '--memory-mib') ?? 1024);
  if (
    !Number.isInteger(runs) || runs < 1 || !isThreadCount(threads) ||
    !batches.every((b) => Number.isInteger(b) && b >= 1) || !Number.isInteger(memoryMiB) || memoryMiB < 1 || memoryMiB > 65536
  ) {
    process.stderr.write('usage: ssd-kernels bench --step [--json] [--runs N] [--threads N] [--batch 1,16,64,256] [--memory-mib 1024]\n');
    return 2;
  }
  const progress = (line: string): void => {
    if (!json) process.stderr.write(`${line}\n`);
  };
  const isa = backends().cpu.isa;
  progress(`measuring memory bandwidth (in-place sweep over ${memoryMiB} MiB)...`);
  const dram = bandwidth(threads, memoryMiB * 2 ** 20, 0.5);
  if (!(dram > 0)) {
    process.stderr.write(`ssd-kernels: could not allocate ${memoryMiB} MiB to measure memory bandwidth\n`);
    return 1;
  }
  const rows: Record<string, number | string>[] = [];
  for (const batch of batches) {
    const { nheads: h, headdim: p, dstate: n } = STEP_BENCH_SIZES;
    progress(`batch ${batch}: preparing inputs`);
    // Inputs of realistic scale from the step examples, with a tiny state; the benchmark's state is
    // filled with uniform values directly (normals for 64M values would take seconds).
    const rng = new Random(batch);
    const { inputs } = makeStepExample(rng, { ...STEP_BENCH_SIZES, batch, stateRows: 1 }, { D: 'head', z: true, dtBias: true });
    const values = new Float32Array(batch * h * p * n);
    for (let i = 0; i < values.length; i++) values[i] = rng.uniform() - 0.5;
    const state = new Tensor('float32', values, [batch, h, p, n]);
    const options: SsdStepOptions = { dtSoftplus: true, device: 'cpu', threads, out: { y: new Tensor('float32', new Float32Array(batch * h * p), [batch, h, p]) } };
    // Warm-up: until the JIT has settled on the validation code (a few hundred calls) or 0.3 s.
    const warmEnd = process.hrtime.bigint() + 300_000_000n;
    for (let i = 0; i < 500 && (i < 5 || process.hrtime.bigint() < warmEnd); i++) ssdStepSync(state, inputs, options);
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const start = process.hrtime.bigint();
      ssdStepSync(state, inputs, options);
      times.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
    progress(`batch ${batch}: measuring the bandwidth of an in-place sweep of the state's size`);
    const ceiling = bandwidth(threads, state.size * 4, 0.25);
    const ms = median(times);
    const bytes = stepBytes(batch);
    const gbps = bytes / (ms * 1e6);
    rows.push({
      batch,
      stateMiB: Number((state.size * 4 / 2 ** 20).toFixed(1)),
      device: 'cpu',
      isa,
      threads,
      ms: Number(ms.toFixed(4)),
      minMs: Number(Math.min(...times).toFixed(4)),
      gbps: Number(gbps.toFixed(1)),
      sweepGbps: Number(ceiling.toFixed(1)),
      ofSweep: Number((gbps / ceiling).toFixed(3)),
      memoryGbps: Number(dram.toFixed(1)),
      ofMemory: Number((gbps / dram).toFixed(3)),
    });
  }
  if (json) {
    console.log(JSON.stringify({ version, date: new Date().toISOString(), runs, memoryMiB, sizes: STEP_BENCH_SIZES, rows }, null, 2));
    return 0;
  }
  console.log(`ssd-kernels ${version} bench --step: nheads 32, headdim 64, dstate 128, ngroups 1, float32 state and inputs, D per head, z, dtBias, dtSoftplus;`);
  console.log(`ssdStepSync with y reused (options.out), median of ${runs} calls; GB/s = (state read + written + inputs + y) / time`);
  console.log(`memory bandwidth: ${dram.toFixed(1)} GB/s (in-place read-modify-write sweep over ${memoryMiB} MiB, best of 1 and ${threads} threads)`);
  console.log('sweep GB/s: the same sweep over a buffer of the state\'s size (the ceiling where the state fits a cache)');
  console.log('batch  state MiB  isa     threads  median ms  min ms    GB/s  sweep GB/s  of sweep  of memory');
  for (const r of rows) {
    console.log(
      `${String(r.batch).padEnd(7)}${String(r.stateMiB).padStart(9)}  ${String(r.isa).padEnd(8)}${String(r.threads).padEnd(9)}` +
        `${String(r.ms).padStart(9)}  ${String(r.minMs).padStart(7)}  ${String(r.gbps).padStart(6)}  ${String(r.sweepGbps).padStart(10)}  ` +
        `${((Number(r.ofSweep) * 100).toFixed(0) + '%').padStart(8)}  ${((Number(r.ofMemory) * 100).toFixed(0) + '%').padStart(9)}`,
    );
  }
  return 0;
}

/** The H200's device-to-device copy bandwidth as the issue measured it (bytes/s); the step's ceiling. */
export const GPU_COPY_BYTES_PER_S = 4.3e12;

/**
 * `bench --step --device cuda`: the step on device tensors, timed with CUDA events on the device's
 * stream (10 warm-ups, median of N), against the copy bandwidth; plus the wall time of one awaited
 * ssdStep() call on device tensors (what a decode loop pays per call, JS and Promise included).
 */
export async function benchStepCuda(args: string[]): Promise<number> {
  const json = args.includes('--json');
  const runs = Number(flag(args, '--runs') ?? 100);
  const batches = (flag(args, '--batch') ?? STEP_BENCH_BATCHES.join(',')).split(',').map(Number);
  if (!Number.isInteger(runs) || runs < 1 || !batches.every((b) => Number.isInteger(b) && b >= 1)) {
    process.stderr.write('usage: ssd-kernels bench --step --device cuda [--json] [--runs N] [--batch 1,16,64,256]\n');
    return 2;
  }
  const cuda = backends().cuda;
  if (!cuda.available) {
    process.stderr.write(`ssd-kernels: CUDA is unavailable: ${cuda.reason}\n`);
    return 1;
  }
  const addon = native();
  const rows: Record<string, number | string>[] = [];
  for (const batch of batches) {
    const { nheads: h, headdim: p, dstate: n } = STEP_BENCH_SIZES;
    const rng = new Random(batch);
    const { inputs } = makeStepExample(rng, { ...STEP_BENCH_SIZES, batch, stateRows: 1 }, { D: 'head', z: true, dtBias: true });
    const values = new Float32Array(batch * h * p * n);
    for (let i = 0; i < values.length; i++) values[i] = rng.uniform() - 0.5;
    const state = new Tensor('float32', values, [batch, h, p, n]).toDevice();
    const dev = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, (v as Tensor).toDevice()])) as Record<string, Tensor>;
    const y = new Tensor('float32', new Float32Array(batch * h * p), [batch, h, p]).toDevice();
    await Promise.all([state.ready, y.ready, ...Object.values(dev).map((t) => t.ready)]);
    // The same native arguments as ssdStep() on these device tensors with dtSoftplus.
    const v = validateStep(state, dev, { dtSoftplus: true });
    const args = stepArgs(v.state, v.inputs, v.plan, mapBuffers(stepInputSlots(v.state, v.inputs), devicePointer), y.devicePointer);
    const timed = await addon.cudaTimeStep(args, 0, 10, runs);
    // Per-call wall time of the public API on device tensors (awaited one by one).
    const options: SsdStepOptions = { dtSoftplus: true, out: { y } };
    for (let i = 0; i < 20; i++) await ssdStep(state, dev as never, options);
    const wall: number[] = [];
    for (let i = 0; i < Math.min(runs, 200); i++) {
      const start = process.hrtime.bigint();
      await ssdStep(state, dev as never, options);
      wall.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
    const ms = median(timed.ms);
    const bytes = stepBytes(batch);
    rows.push({
      batch,
      stateMiB: Number((batch * h * p * n * 4 / 2 ** 20).toFixed(1)),
      device: 'cuda:0',
      ms: Number(ms.toFixed(4)),
      GBps: Math.round(bytes / (ms * 1e6)),
      ofCopy: Number((bytes / (ms * 1e-3) / GPU_COPY_BYTES_PER_S).toFixed(3)),
      callMs: Number(median(wall).toFixed(4)),
    });
    for (const t of [state, y, ...Object.values(dev)]) t.dispose();
  }
  if (json) {
    console.log(JSON.stringify({ version, device: 'cuda:0', copyGBps: GPU_COPY_BYTES_PER_S / 1e9, runs, results: rows }, null, 2));
    return 0;
  }
  console.log(`ssd-kernels ${version} bench --step --device cuda: h ${STEP_BENCH_SIZES.nheads}, p ${STEP_BENCH_SIZES.headdim}, n ${STEP_BENCH_SIZES.dstate}, fp32 state and inputs; CUDA events, 10 warm-ups, median of ${runs}; ceiling ${GPU_COPY_BYTES_PER_S / 1e12} TB/s copy`);
  console.log('batch  state MiB  kernel ms   GB/s   of copy  awaited call ms');
  for (const r of rows) {
    console.log(`${String(r.batch).padEnd(7)}${String(r.stateMiB).padEnd(11)}${String(r.ms).padEnd(11)}${String(r.GBps).padEnd(7)}${String(r.ofCopy).padEnd(9)}${r.callMs}`);
  }
  return 0;
}
