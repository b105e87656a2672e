#!/usr/bin/env node
/**
 * ssd-kernels command line: `info`, `check` and `bench`.
 *   info                  version, backends, CPU instruction set, threads, CUDA status
 *   check                 runs built-in examples on every available backend against the float64 reference
 *   bench [--json] [--runs N] [--threads N] [--config C1,C2]
 *                         times the forward on the benchmark configs (median of N runs)
 */
import { backends, ssdSync, version, type SsdOptions } from './index';
import { native } from './native';
import { Random, makeExample, roundingError, withOptions, type ExampleConfig, type ExampleOptions } from './examples';
import { allFinite, l2, relativeL2, ssdReference } from './reference';
import type { FloatType } from './tensor';

function usage(): never {
  process.stderr.write(
    'usage: ssd-kernels <info | check | bench> [options]\n' +
      '  info                         what this build can run here\n' +
      '  check                        compare every backend with the float64 reference; exit 1 on failure\n' +
      '  bench [--json] [--runs N] [--threads N] [--config C1,C2]\n' +
      '                               time the forward (median of N runs, default 15)\n',
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
    bound: 1e-5,
  },
  {
    name: 'bf16, D per head, softplus',
    config: { batch: 1, seqlen: 257, nheads: 8, headdim: 64, ngroups: 1, dstate: 64 },
    example: { dtype: 'bfloat16', D: 'head' },
    options: { dtSoftplus: true, returnFinalStates: true },
    bound: 1e-5,
  },
  {
    name: 'fp16, z gate, no D',
    config: { batch: 1, seqlen: 100, nheads: 2, headdim: 17, ngroups: 2, dstate: 33 },
    example: { dtype: 'float16', D: 'none', z: true, positiveDt: true },
    options: { returnFinalStates: true },
    bound: 1e-5,
  },
];

function check(): number {
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
      const out = ssdSync(inputs, { ...c.options, device });
      const y = out.y.toFloat32();
      // A 16-bit y is rounded once on the way out: allow twice the error of rounding the reference itself.
      const yBound = out.y.type === 'float32' ? c.bound : 2 * roundingError(out.y.type as FloatType, expected.y) + c.bound;
      const errors = [relativeL2(y, expected.y)];
      const bounds = [yBound];
      if (out.finalStates) {
        errors.push(relativeL2(out.finalStates.toFloat32(), expected.finalStates));
        bounds.push(c.bound);
      }
      const bound = bounds.map((e) => e.toExponential(1)).join(' / ');
      const ok = allFinite(y) && l2(y) > 0 && errors.every((e, i) => e <= bounds[i]);
      if (!ok) failures++;
      const detail = errors.map((e) => e.toExponential(2)).join(' / ');
      console.log(`${ok ? 'PASS' : 'FAIL'}  ${device.padEnd(4)}  ${c.name.padEnd(28)} rel. L2 error y / finalStates ${detail} (bound ${bound})`);
    }
  }
  console.log(failures === 0 ? 'all checks passed' : `${failures} check(s) failed`);
  return failures === 0 ? 0 : 1;
}

export interface BenchConfig extends ExampleConfig {
  name: string;
  dtype: FloatType;
}

export const CPU_BENCH_CONFIGS: BenchConfig[] = [
  { name: 'C1', batch: 1, seqlen: 4096, nheads: 32, headdim: 64, ngroups: 1, dstate: 128, dtype: 'float32' },
  { name: 'C2', batch: 1, seqlen: 2048, nheads: 8, headdim: 64, ngroups: 1, dstate: 64, dtype: 'float32' },
];

/** Floating-point operations of the token recurrence: per state element and token, e·H + dx·B (3) and H·C (2). */
export function recurrenceFlops(c: ExampleConfig): number {
  return 5 * c.batch * c.seqlen * c.nheads * c.headdim * c.dstate;
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

function bench(args: string[]): number {
  const json = args.includes('--json');
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
    for (let i = 0; i < 2; i++) ssdSync(inputs, options); // warm-up
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      progress(`${c.name}: run ${i + 1}/${runs}`);
      const start = process.hrtime.bigint();
      ssdSync(inputs, options);
      times.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
    const ms = median(times);
    const gflops = recurrenceFlops(c) / (ms * 1e6);
    rows.push({
      config: c.name,
      device: 'cpu',
      isa: b.cpu.isa,
      threads,
      ms: Number(ms.toFixed(3)),
      minMs: Number(Math.min(...times).toFixed(3)),
      gflops: Number(gflops.toFixed(1)),
      fmaPeakGflops: Number(peak.toFixed(1)),
      fractionOfPeak: Number((gflops / peak).toFixed(3)),
    });
  }
  if (!json && process.stderr.isTTY) process.stderr.write('\r'.padEnd(62) + '\r');
  if (json) {
    console.log(JSON.stringify({ version, date: new Date().toISOString(), runs, rows }, null, 2));
  } else {
    console.log(`ssd-kernels ${version} bench: fp32, chunk 256, D per head, dtSoftplus; median of ${runs} runs`);
    console.log(`measured fp32 FMA peak: ${peak.toFixed(1)} GFLOP/s (${threads} threads, ${b.cpu.isa})`);
    console.log('config  device  isa     threads  median ms  min ms   GFLOP/s  of peak');
    for (const r of rows) {
      console.log(
        `${String(r.config).padEnd(8)}${String(r.device).padEnd(8)}${String(r.isa).padEnd(8)}${String(r.threads).padEnd(9)}` +
          `${String(r.ms).padStart(9)}  ${String(r.minMs).padStart(7)}  ${String(r.gflops).padStart(7)}  ${(Number(r.fractionOfPeak) * 100).toFixed(1)}%`,
      );
    }
  }
  return 0;
}

export function main(argv: string[]): number {
  const [command, ...rest] = argv;
  switch (command) {
    case 'info':
      info();
      return 0;
    case 'check':
      return check();
    case 'bench':
      return bench(rest);
    default:
      return usage();
  }
}

if (require.main === module) {
  try {
    process.exitCode = main(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`ssd-kernels: ${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}
