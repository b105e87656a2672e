#!/usr/bin/env node
/**
 * ssd-kernels command line: `info`, `check`, `bench` and `matrix`.
 *   info                  version, backends, CPU instruction set, threads, CUDA status
 *   check                 runs built-in examples on every available backend against the float64 reference
 *                         (and the CPU backward against its float64 reverse)
 *   bench [--json] [--runs N] [--threads N] [--config C1,C2] [--backward]
 *                         times the forward (and with --backward the backward) on the benchmark
 *                         configs (median of N runs)
 *   bench --step [--json] [--runs N] [--threads N] [--batch 1,16,64,256] [--memory-mib 1024]
 *                         times the decode step against measured memory bandwidth (lib/cli-step.ts)
 *   matrix [--out FILE.png] [...]
 *                         draws one head's SSD matrix as a PNG heatmap (lib/cli-matrix.ts)
 */
import { backends, ssd, ssdBackwardSync, ssdSync, version, type SsdBackwardOptions, type SsdGrads, type SsdOptions } from './index';
import { native } from './native';
import { backwardArgs, backwardInputSlots, devicePointer, forwardArgs, forwardInputSlots, mapBuffers, type GradBuffers } from './native-args';
import { validate } from './validate';
import { validateBackward } from './validate-backward';
import { Random, makeExample, roundingError, withOptions, type ExampleConfig, type ExampleOptions } from './examples';
import { allFinite, l2, relativeL2, ssdReference } from './reference';
import { ssdReferenceBackward } from './reference-backward';
import { CPU_BENCH_CONFIGS, GPU_BENCH_CONFIGS } from './configs';
import { Tensor, type FloatType } from './tensor';
import { CPU_BOUND, CUDA_FORWARD_BOUND, ROUNDING_ALLOWANCE } from './tolerances';
import { benchStep, benchStepCuda, checkStep } from './cli-step';
import { matrixCommand } from './cli-matrix';

function usage(): never {
  process.stderr.write(
    'usage: ssd-kernels <info | check | bench | matrix> [options]\n' +
      '  info                         what this build can run here\n' +
      '  check                        compare every backend with the float64 reference; exit 1 on failure\n' +
      '  bench [--json] [--runs N] [--threads N] [--config C1,C2] [--backward]\n' +
      '                               time the CPU forward, and with --backward the backward and\n' +
      '                               forward + backward (median of N runs, default 15)\n' +
      '  bench --device cuda [--json] [--runs N] [--config G1,G2,G3,G4] [--backward [--ungated]]\n' +
      '                               time the CUDA forward with CUDA events (median of N runs, default 100)\n' +
      '  bench --step [--json] [--runs N] [--threads N] [--batch 1,16,64,256] [--memory-mib 1024]\n' +
      '                               time the CPU decode step against measured memory bandwidth (default 100 runs)\n' +
      '  bench --step --device cuda [--json] [--runs N] [--batch 1,16,64,256]\n' +
      '                               time the CUDA step with CUDA events against 4.3 TB/s copy bandwidth\n' +
      '  matrix [--out FILE.png] [--head H] [--seqlen L] [--input FILE.json] ... (matrix --help)\n' +
      '                               draw the SSD matrix M = L ∘ (C·Bᵀ) of one head as a PNG heatmap\n',
  );
  process.exit(2);
}

function info(): void {
  const b = backends();
  console.log(`ssd-kernels ${version}`);
  console.log(`cpu:  instruction set ${b.cpu.isa} (best on this CPU: ${b.cpu.bestIsa}), ${b.cpu.threads} threads`);
  console.log(`cuda: ${b.cuda.available ? `available, ${b.cuda.devices} device(s)` : `unavailable: ${b.cuda.reason}`}`);
}

interface CheckCase {
  name: string;
  config: ExampleConfig;
  example: ExampleOptions;
  options: SsdOptions;
  bound: number;
}

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
];

/** The CPU backward on the first check case (fp32, every option) against the float64 reverse; returns 1 on failure. */
function checkBackward(rng: Random): number {
  const c = CHECK_CASES[0];
  const { inputs, ref } = makeExample(rng, c.config, c.example);
  const { batch: b, seqlen: L, nheads: h, headdim: p, dstate: n } = c.config;
  const dy = new Tensor('float32', rng.normals(b * L * h * p), [b, L, h, p]);
  const dFinalStates = new Tensor('float32', rng.normals(b * h * p * n), [b, h, p, n]);
  const options: SsdBackwardOptions = { chunkSize: c.options.chunkSize, dtSoftplus: c.options.dtSoftplus, dtLimit: c.options.dtLimit, device: 'cpu' };
  const grads = ssdBackwardSync(inputs, { dy, dFinalStates }, options);
  const expected = ssdReferenceBackward(withOptions(ref, c.options), dy.toFloat32(), dFinalStates.toFloat32());
  let worst = 0;
  let ok = true;
  for (const [key, want] of Object.entries(expected) as [keyof SsdGrads, Float64Array][]) {
    const got = grads[key]?.toFloat32();
    if (!got || !allFinite(got) || l2(got) === 0) ok = false;
    else worst = Math.max(worst, relativeL2(got, want));
  }
  ok = ok && worst <= c.bound;
  const count = Object.keys(expected).length;
  console.log(`${ok ? 'PASS' : 'FAIL'}  cpu   ${'backward, ' + c.name.padEnd(18)} worst rel. L2 error of ${count} gradients ${worst.toExponential(2)} (bound ${c.bound.toExponential(1)})`);
  return ok ? 0 : 1;
}

async function check(): Promise<number> {
  const b = backends();
  const devices: ('cpu' | 'cuda')[] = ['cpu'];
  if (b.cuda.available) devices.push('cuda');
  else console.log(`cuda: skipped (${b.cuda.reason})`);
  let failures = 0;
  const rng = new Random(20261129);
  for (const device of devices) {
    for (const c of CHECK_CASES) {
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
      const bound = bounds.map((e) => e.toExponential(1)).join(' / ');
      const ok = allFinite(y) && l2(y) > 0 && errors.every((e, i) => e <= bounds[i]);
      if (!ok) failures++;
      const detail = errors.map((e) => e.toExponential(2)).join(' / ');
      console.log(`${ok ? 'PASS' : 'FAIL'}  ${device.padEnd(4)}  ${c.name.padEnd(28)} rel. L2 error y / finalStates ${detail} (bound ${bound})`);
    }
  }
  failures += checkBackward(rng);
  failures += checkStep(rng);
  console.log(failures === 0 ? 'all checks passed' : `${failures} check(s) failed`);
  return failures === 0 ? 0 : 1;
}

/** Floating-point operations of the scan: per state element and token, one FMA into the state and one into y (4 flops). */
export function recurrenceFlops(c: ExampleConfig): number {
  return 4 * c.batch * c.seqlen * c.nheads * c.headdim * c.dstate;
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

/** Matrix FLOPs of the chunked forward: C·Bᵀ once per group and chunk, the causal half of the masked product, chunk states and the from-state output. */
export function chunkedFlops(c: ExampleConfig, Q: number): number {
  const chunks = Math.ceil(c.seqlen / Q);
  return c.batch * chunks * (c.ngroups * 2 * Q * Q * c.dstate + c.nheads * (Q * Q * c.headdim + 4 * Q * c.headdim * c.dstate));
}

/** Bytes that must move at least once: every input read once (bf16 x, z, B, C; fp32 dt, A, D), y written once. */
export function minimumBytes(c: ExampleConfig, elementBytes: number): number {
  const xs = c.batch * c.seqlen * c.nheads * c.headdim;
  const bc = c.batch * c.seqlen * c.ngroups * c.dstate;
  return elementBytes * (3 * xs + 2 * bc) + 4 * (c.batch * c.seqlen * c.nheads + 2 * c.nheads);
}

/** Fast approximately-normal values (Irwin–Hall of four uniforms) for large benchmark inputs. */
function fastNormals(rng: Random, count: number, scale = 1, shift = 0): Float32Array {
  const out = new Float32Array(count);
  const k = Math.sqrt(3); // four U(0,1) sum to mean 2, variance 1/3
  for (let i = 0; i < count; i++) out[i] = shift + scale * k * (rng.uniform() + rng.uniform() + rng.uniform() + rng.uniform() - 2);
  return out;
}

async function benchCuda(args: string[]): Promise<number> {
  const json = args.includes('--json');
  const runs = Number(flag(args, '--runs') ?? 100);
  const wanted = (flag(args, '--config') ?? GPU_BENCH_CONFIGS.map((c) => c.name).join(',')).split(',');
  const withBackward = args.includes('--backward');
  // --ungated: the forward also writes yUngated (returnUngated) and the backward reads it for dz
  const ungated = args.includes('--ungated');
  const b = backends();
  if (!b.cuda.available) {
    console.log(`cuda: unavailable (${b.cuda.reason}); nothing to time`);
    return 1;
  }
  const addon = native();
  const rows: Record<string, number | string>[] = [];
  for (const c of GPU_BENCH_CONFIGS.filter((g) => wanted.includes(g.name))) {
    if (!json) process.stderr.write(`${c.name}: preparing inputs\n`);
    const rng = new Random(3);
    const xs = c.batch * c.seqlen * c.nheads * c.headdim;
    const bc = c.batch * c.seqlen * c.ngroups * c.dstate;
    const A = new Float32Array(c.nheads).map(() => -Math.exp(rng.uniform() * Math.log(16)));
    const host = {
      x: Tensor.fromFloat32('bfloat16', fastNormals(rng, xs), [c.batch, c.seqlen, c.nheads, c.headdim]),
      z: Tensor.fromFloat32('bfloat16', fastNormals(rng, xs), [c.batch, c.seqlen, c.nheads, c.headdim]),
      B: Tensor.fromFloat32('bfloat16', fastNormals(rng, bc), [c.batch, c.seqlen, c.ngroups, c.dstate]),
      C: Tensor.fromFloat32('bfloat16', fastNormals(rng, bc), [c.batch, c.seqlen, c.ngroups, c.dstate]),
      dt: new Tensor('float32', fastNormals(rng, c.batch * c.seqlen * c.nheads, 1, -4), [c.batch, c.seqlen, c.nheads]),
      A: new Tensor('float32', A, [c.nheads]),
      D: new Tensor('float32', fastNormals(rng, c.nheads), [c.nheads]),
      dtBias: new Tensor('float32', fastNormals(rng, c.nheads, 0.1), [c.nheads]),
    };
    const dev = Object.fromEntries(Object.entries(host).map(([k, t]) => [k, t.toDevice(0)])) as Record<keyof typeof host, Tensor>;
    const y = Tensor.fromOwnedDeviceMemory(addon.cudaAlloc(0, xs * 2), 'bfloat16', host.x.dims, 0, xs * 2);
    const yu = ungated ? Tensor.fromOwnedDeviceMemory(addon.cudaAlloc(0, xs * 2), 'bfloat16', host.x.dims, 0, xs * 2) : undefined;
    await Promise.all(Object.values(dev).map((t) => t.ready));
    // The same native arguments as ssd() on these device tensors with these options.
    const options: SsdOptions = { dtSoftplus: true, chunkSize: 256, returnUngated: ungated };
    const { inputs: t, plan } = validate(dev, options);
    const outputs = { y: y.devicePointer, finalStates: null, varlenStates: null, yUngated: yu?.devicePointer ?? null };
    const forward = forwardArgs(t, plan, mapBuffers(forwardInputSlots(t), devicePointer), outputs);
    if (!json) process.stderr.write(`${c.name}: timing ${runs} runs\n`);
    const timed = await addon.cudaTimeForward(forward, 0, 10, runs);
    const ms = median(timed.ms);
    const flops = chunkedFlops(c, 256);
    const bytes = minimumBytes(c, 2);
    const floorMs = Math.max(bytes / 4.3e12, flops / 790e12) * 1e3;
    rows.push({
      config: c.name, device: 'cuda:0', ms: Number(ms.toFixed(4)), minMs: Number(Math.min(...timed.ms).toFixed(4)),
      tflops: Number((flops / (ms * 1e9)).toFixed(1)), gbps: Number((bytes / (ms * 1e6)).toFixed(0)),
      floorMs: Number(floorMs.toFixed(4)), ratioToFloor: Number((ms / floorMs).toFixed(2)),
      extraMiB: Number((timed.workspaceBytes / 2 ** 20).toFixed(1)),
    });
    if (withBackward) {
      // The backward on the same inputs, every gradient in its input's dtype (bf16 dx/dB/dC/dz).
      if (!json) process.stderr.write(`${c.name}: timing ${runs} backward runs\n`);
      const owned: bigint[] = [];
      const buf = (bytes: number): bigint => {
        const ptr = addon.cudaAlloc(0, bytes);
        owned.push(ptr);
        return ptr;
      };
      const dy = Tensor.fromFloat32('bfloat16', fastNormals(rng, xs), host.x.dims).toDevice(0);
      await dy.ready;
      // The native arguments of ssdBackward() on these tensors, with the forward's yUngated when it wrote one.
      const call = validateBackward(dev, { dy }, { ...options, yUngated: yu });
      const grads: GradBuffers<bigint> = {};
      for (const spec of call.specs) grads[spec.name] = buf(spec.dims.reduce((a, b) => a * b, 1) * (spec.type === 'float32' ? 4 : 2));
      const bwd = await addon.cudaTimeBackward(
        backwardArgs(call, mapBuffers(backwardInputSlots(call, true), devicePointer), grads),
        0, 3, Math.max(5, Math.floor(runs / 4)),
      );
      const bwdMs = median(bwd.ms);
      // with --ungated, yUngated is memory kept from the forward for the backward: counted as extra
      const keptBytes = yu ? xs * 2 : 0;
      Object.assign(rows[rows.length - 1], {
        bwdMs: Number(bwdMs.toFixed(4)),
        fwdBwdMs: Number((ms + bwdMs).toFixed(4)),
        bwdExtraMiB: Number(((bwd.workspaceBytes + keptBytes) / 2 ** 20).toFixed(1)),
      });
      dy.dispose();
      for (const ptr of owned) addon.cudaRelease(0, ptr);
    }
    for (const t of [...Object.values(dev), y, ...(yu ? [yu] : [])]) t.dispose();
  }
  if (json) {
    console.log(JSON.stringify({ version, date: new Date().toISOString(), runs, ungated, rows }, null, 2));
  } else {
    console.log(`ssd-kernels ${version} bench --device cuda: bf16 x/B/C/z, fp32 dt/A/D/dtBias, D per head, dtSoftplus, chunk 256; CUDA events, 10 warm-ups, median of ${runs}${ungated ? '; the forward writes yUngated, the backward reads it' : ''}`);
    console.log('config  median ms  min ms    TFLOP/s  GB/s   floor ms  x floor  extra MiB');
    for (const r of rows) {
      console.log(`${String(r.config).padEnd(8)}${String(r.ms).padStart(9)}  ${String(r.minMs).padStart(7)}  ${String(r.tflops).padStart(8)}  ${String(r.gbps).padStart(5)}  ${String(r.floorMs).padStart(8)}  ${String(r.ratioToFloor).padStart(7)}  ${String(r.extraMiB).padStart(9)}`);
    }
    if (withBackward) {
      console.log(`backward (every gradient, bf16 where the input is${ungated ? '; extra MiB includes the kept yUngated' : ''}):`);
      console.log('config  bwd ms     fwd+bwd ms  bwd extra MiB');
      for (const r of rows) console.log(`${String(r.config).padEnd(8)}${String(r.bwdMs).padEnd(11)}${String(r.fwdBwdMs).padEnd(12)}${r.bwdExtraMiB}`);
    }
  }
  return 0;
}

function bench(args: string[]): number {
  const json = args.includes('--json');
  const backward = args.includes('--backward');
  const runs = Number(flag(args, '--runs') ?? 15);
  const threads = Number(flag(args, '--threads') ?? backends().cpu.threads);
  const wanted = (flag(args, '--config') ?? CPU_BENCH_CONFIGS.map((c) => c.name).join(',')).split(',');
  if (!Number.isInteger(runs) || runs < 1 || !Number.isInteger(threads) || threads < 1) usage();
  const b = backends();
  const progress = (line: string): void => {
    if (!json && process.stderr.isTTY) process.stderr.write(`\r${line.padEnd(60)}`);
    else if (!json) process.stderr.write(`${line}\n`);
  };

  progress('measuring the fp32 FMA peak...');
  const peak = native().fmaPeakGflops(threads, 0.5);
  const rows: Record<string, number | string>[] = [];
  for (const c of CPU_BENCH_CONFIGS.filter((c) => wanted.includes(c.name))) {
    const { inputs } = makeExample(new Random(1), c, { dtype: c.dtype, D: 'head' });
    const options: SsdOptions = { dtSoftplus: true, chunkSize: 256, device: 'cpu', threads };
    const time = (o: SsdOptions): number => {
      const start = process.hrtime.bigint();
      ssdSync(inputs, o);
      return Number(process.hrtime.bigint() - start) / 1e6;
    };
    // Steady state: the output tensor is reused (options.out), as a loop over layers would.
    const out = { y: ssdSync(inputs, options).y };
    time({ ...options, out }); // warm-up
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      progress(`${c.name}: run ${i + 1}/${runs}`);
      times.push(time({ ...options, out }));
    }
    // With a new output every call: adds the first touch of fresh memory.
    const fresh: number[] = [];
    for (let i = 0; i < Math.min(runs, 5); i++) fresh.push(time(options));
    const ms = median(times);
    const gflops = recurrenceFlops(c) / (ms * 1e6);
    const backwardColumns: Record<string, number> = {};
    if (backward) {
      // The backward of the same call with a random dy, its gradients reused through options.out.
      const dy = new Tensor('float32', new Random(2).normals(inputs.x.size), inputs.x.dims);
      const grads = { dy };
      const backwardOptions: SsdBackwardOptions = { dtSoftplus: true, chunkSize: 256, device: 'cpu', threads };
      const gradOut: Partial<SsdGrads> = { ...ssdBackwardSync(inputs, grads, backwardOptions) };
      const timeBackward = (): number => {
        const start = process.hrtime.bigint();
        ssdBackwardSync(inputs, grads, { ...backwardOptions, out: gradOut });
        return Number(process.hrtime.bigint() - start) / 1e6;
      };
      timeBackward(); // warm-up
      const backTimes: number[] = [];
      for (let i = 0; i < runs; i++) {
        progress(`${c.name}: backward run ${i + 1}/${runs}`);
        backTimes.push(timeBackward());
      }
      const backMs = median(backTimes);
      backwardColumns.backwardMs = Number(backMs.toFixed(3));
      backwardColumns.backwardMinMs = Number(Math.min(...backTimes).toFixed(3));
      backwardColumns.forwardBackwardMs = Number((ms + backMs).toFixed(3));
      backwardColumns.backwardToForward = Number((backMs / ms).toFixed(2));
    }
    rows.push({
      config: c.name,
      device: 'cpu',
      isa: b.cpu.isa,
      threads,
      ms: Number(ms.toFixed(3)),
      minMs: Number(Math.min(...times).toFixed(3)),
      freshOutputMs: Number(median(fresh).toFixed(3)),
      gflops: Number(gflops.toFixed(1)),
      fmaPeakGflops: Number(peak.toFixed(1)),
      fractionOfPeak: Number((gflops / peak).toFixed(3)),
      ...backwardColumns,
    });
  }
  if (!json && process.stderr.isTTY) process.stderr.write('\r'.padEnd(62) + '\r');
  if (json) {
    console.log(JSON.stringify({ version, date: new Date().toISOString(), runs, rows }, null, 2));
  } else {
    console.log(`ssd-kernels ${version} bench: fp32, chunk 256, D per head, dtSoftplus; median of ${runs} runs reusing the output (options.out);`);
    console.log('new-output ms: median of 5 calls that allocate y, which adds the first touch of fresh memory');
    console.log(`measured fp32 FMA peak: ${peak.toFixed(1)} GFLOP/s (${threads} threads, ${b.cpu.isa})`);
    if (backward) console.log('backward: a random dy, gradients reused (options.out); fwd+bwd = the sum of the two medians');
    console.log(`config  device  isa     threads  median ms  min ms   GFLOP/s  of peak  new-output ms${backward ? '  bwd ms    bwd min  fwd+bwd ms  bwd/fwd' : ''}`);
    for (const r of rows) {
      const extra = backward
        ? `  ${String(r.backwardMs).padStart(8)}  ${String(r.backwardMinMs).padStart(8)}  ${String(r.forwardBackwardMs).padStart(10)}  ${String(r.backwardToForward).padStart(7)}`
        : '';
      console.log(
        `${String(r.config).padEnd(8)}${String(r.device).padEnd(8)}${String(r.isa).padEnd(8)}${String(r.threads).padEnd(9)}` +
          `${String(r.ms).padStart(9)}  ${String(r.minMs).padStart(7)}  ${String(r.gflops).padStart(7)}  ${((Number(r.fractionOfPeak) * 100).toFixed(1) + '%').padStart(7)}  ${String(r.freshOutputMs).padStart(13)}` +
          extra,
      );
    }
  }
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'info':
      info();
      return 0;
    case 'check':
      return check();
    case 'bench':
      if (rest.includes('--step')) return flag(rest, '--device') === 'cuda' ? benchStepCuda(rest) : benchStep(rest);
      return flag(rest, '--device') === 'cuda' ? benchCuda(rest) : bench(rest);
    case 'matrix':
      return matrixCommand(rest);
    default:
      return usage();
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      // Exit now rather than when the event loop drains: a CLI run is done when main() is.
      process.exit(code);
    },
    (err: unknown) => {
      process.stderr.write(`ssd-kernels: ${(err as Error).message}\n`);
      process.exitCode = 1;
    },
  );
}
