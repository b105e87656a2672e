/**
 * The decode step's benchmarks in the command line: `bench --step`, which times ssdStepSync at
 * batch 1, 16, 64 and 256 (nheads 32, headdim 64, dstate 128, float32 state) and sets the bytes it
 * moves against memory bandwidth measured in the same run, and `bench --step --device cuda`. Their
 * flags are declared and checked in lib/cli-bench.ts; the step's `check` cases are in lib/cli-check.ts.
 */
import { backends, ssdStep, ssdStepSync, version, type SsdStepOptions } from './index';
import { devicePointer, mapBuffers, stepArgs, stepInputSlots } from './native-args';
import { validateStep } from './validate-step';
import { native } from './native';
import { Random } from './examples';
import { makeStepExample } from './reference-step';
import { STEP_BENCH_SIZES } from './configs';
import { Tensor } from './tensor';
import type { BenchArgs } from './cli-bench';

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
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

/** `bench --step` (flags checked by lib/cli-bench.ts): returns the exit code. */
export function benchStep(a: BenchArgs): number {
  const { json, runs, batches, memoryMiB } = a;
  const threads = a.threads ?? backends().cpu.threads;
  const progress = (line: string): void => a.progress.report(line);
  const isa = backends().cpu.isa;
  progress(`measuring memory bandwidth (in-place sweep over ${memoryMiB} MiB)...`);
  const dram = bandwidth(threads, memoryMiB * 2 ** 20, 0.5);
  if (!(dram > 0)) {
    a.progress.done();
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
  a.progress.done();
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
export async function benchStepCuda(a: BenchArgs): Promise<number> {
  const { json, runs, batches } = a;
  const cuda = backends().cuda;
  if (!cuda.available) {
    process.stderr.write(`ssd-kernels: CUDA is unavailable: ${cuda.reason}\n`);
    return 1;
  }
  const addon = native();
  const rows: Record<string, number | string>[] = [];
  for (const batch of batches) {
    const { nheads: h, headdim: p, dstate: n } = STEP_BENCH_SIZES;
    a.progress.report(`batch ${batch}: timing ${runs} runs`);
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
  a.progress.done();
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
