#!/usr/bin/env node
/**
 * ssd-kernels command line: `info`, `check`, `bench` and `matrix`.
 *   info     version, backends, CPU instruction set, threads, CUDA status
 *   check    the forward, backward and step on every available backend against the float64
 *            reference (lib/cli-check.ts)
 *   bench    times the CPU or CUDA forward (and backward), or the decode step (lib/cli-bench.ts's
 *            flags; the step's timing is in lib/cli-step.ts)
 *   matrix   draws one head's SSD matrix as a PNG heatmap (lib/cli-matrix.ts)
 * Every command's flags are declared once (a CommandSpec, lib/cli-args.ts), and its parser and its
 * help (`ssd-kernels <command> --help`, `ssd-kernels help <command>`) both read that table. Help goes
 * to stdout with exit code 0; usage errors name the flag, go to stderr, and exit with code 2.
 */
import { backends, ssdBackwardSync, ssdSync, version, type SsdBackwardOptions, type SsdGrads, type SsdOptions } from './index';
import { native } from './native';
import { backwardArgs, backwardInputSlots, devicePointer, forwardArgs, forwardInputSlots, mapBuffers, type GradBuffers } from './native-args';
import { validate, type SsdInputs } from './validate';
import { validateBackward } from './validate-backward';
import { Random, makeExample, type ExampleConfig } from './examples';
import { CPU_BENCH_CONFIGS, GPU_ALL_CONFIGS, packedOffsets, type BenchConfig } from './configs';
import { Tensor, elementSize } from './tensor';
import { Progress, UsageError, helpText, nearest, parseFlags, wantsHelp, type CommandSpec, type ParsedFlags } from './cli-args';
import { BENCH_COMMAND, benchArgs, type BenchArgs } from './cli-bench';
import { CHECK_COMMAND, check } from './cli-check';
import { benchStep, benchStepCuda } from './cli-step';
import { MATRIX_COMMAND, matrixCommand } from './cli-matrix';

const INFO_COMMAND: CommandSpec = {
  name: 'info',
  synopsis: ['info'],
  summary: 'what this build can run here: version, instruction set, threads, CUDA status',
  about: 'Prints the version, the CPU instruction set in use (and the best this CPU has), the CPU\nthreads, and whether CUDA is available (how many devices, or why not).',
  flags: [],
};

/** A command: its flag table and what runs it on the parsed flags (returns the exit code). */
interface Command {
  spec: CommandSpec;
  run: (flags: ParsedFlags) => number | Promise<number>;
}

const COMMANDS: Command[] = [
  { spec: INFO_COMMAND, run: () => { info(); return 0; } },
  { spec: CHECK_COMMAND, run: () => check(new Progress(false)) },
  { spec: BENCH_COMMAND, run: (f) => runBench(benchArgs(f)) },
  { spec: MATRIX_COMMAND, run: (f) => matrixCommand(f) },
];

/** The list of commands: `ssd-kernels --help` (stdout) and the usage after an unknown command (stderr). */
function overview(): string {
  const lines = ['usage: ssd-kernels <command> [options]', '       ssd-kernels <command> --help    (or: ssd-kernels help <command>)', ''];
  for (const c of COMMANDS) lines.push(`  ${c.spec.name.padEnd(8)} ${c.spec.summary}`);
  return `${lines.join('\n')}\n`;
}

function info(): void {
  const b = backends();
  console.log(`ssd-kernels ${version}`);
  console.log(`cpu:  instruction set ${b.cpu.isa} (best on this CPU: ${b.cpu.bestIsa}), ${b.cpu.threads} threads`);
  console.log(`cuda: ${b.cuda.available ? `available, ${b.cuda.devices} device(s)` : `unavailable: ${b.cuda.reason}`}`);
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

/** Matrix FLOPs of the chunked forward: C·Bᵀ once per group and chunk, the causal half of the masked product, chunk states and the from-state output. */
export function chunkedFlops(c: ExampleConfig, Q: number): number {
  const chunks = Math.ceil(c.seqlen / Q);
  return c.batch * chunks * (c.ngroups * 2 * Q * Q * c.dstate + c.nheads * (Q * Q * c.headdim + 4 * Q * c.headdim * c.dstate));
}

/**
 * Bytes that must move at least once: every input read once (x, z if gated, B, C of elementBytes;
 * fp32 dt, A, D, dtBias), y written once, and a packed config's final states (fp32) written once.
 */
export function minimumBytes(c: ExampleConfig & Pick<BenchConfig, 'gate' | 'dtBias' | 'packed'>, elementBytes: number): number {
  const xs = c.batch * c.seqlen * c.nheads * c.headdim;
  const bc = c.batch * c.seqlen * c.ngroups * c.dstate;
  const states = (c.packed?.length ?? 0) * c.nheads * c.headdim * c.dstate;
  const perHead = c.dtBias === false ? 2 : 3;
  return elementBytes * ((c.gate === false ? 2 : 3) * xs + 2 * bc) + 4 * (c.batch * c.seqlen * c.nheads + perHead * c.nheads + states);
}

/** Fast approximately-normal values (Irwin–Hall of four uniforms) for large benchmark inputs. */
function fastNormals(rng: Random, count: number, scale = 1, shift = 0): Float32Array {
  const out = new Float32Array(count);
  const k = Math.sqrt(3); // four U(0,1) sum to mean 2, variance 1/3
  for (let i = 0; i < count; i++) out[i] = shift + scale * k * (rng.uniform() + rng.uniform() + rng.uniform() + rng.uniform() - 2);
  return out;
}

const G5_NOTE = '48 packed sequences through cuSeqlens with their final states, no z, dt with the bias in it';

async function benchCuda(a: BenchArgs): Promise<number> {
  const { json, runs, progress } = a;
  const withBackward = a.backward;
  // --ungated: the forward also writes yUngated (returnUngated) and hands it to the backward (the sm_80 kernels read it for dz)
  const ungated = a.ungated;
  const b = backends();
  if (!b.cuda.available) {
    console.log(`cuda: unavailable (${b.cuda.reason}); nothing to time`);
    return 1;
  }
  const addon = native();
  const rows: Record<string, number | string>[] = [];
  for (const c of GPU_ALL_CONFIGS.filter((g) => a.configs.includes(g.name))) {
    progress.report(`${c.name}: preparing inputs`);
    const rng = new Random(3);
    const xs = c.batch * c.seqlen * c.nheads * c.headdim;
    const bc = c.batch * c.seqlen * c.ngroups * c.dstate;
    const A = new Float32Array(c.nheads).map(() => -Math.exp(rng.uniform() * Math.log(16)));
    const host: Partial<Record<keyof SsdInputs, Tensor>> = {
      x: Tensor.fromFloat32('bfloat16', fastNormals(rng, xs), [c.batch, c.seqlen, c.nheads, c.headdim]),
      z: c.gate === false ? undefined : Tensor.fromFloat32('bfloat16', fastNormals(rng, xs), [c.batch, c.seqlen, c.nheads, c.headdim]),
      B: Tensor.fromFloat32('bfloat16', fastNormals(rng, bc), [c.batch, c.seqlen, c.ngroups, c.dstate]),
      C: Tensor.fromFloat32('bfloat16', fastNormals(rng, bc), [c.batch, c.seqlen, c.ngroups, c.dstate]),
      dt: new Tensor('float32', fastNormals(rng, c.batch * c.seqlen * c.nheads, 1, -4), [c.batch, c.seqlen, c.nheads]),
      A: new Tensor('float32', A, [c.nheads]),
      D: new Tensor('float32', fastNormals(rng, c.nheads), [c.nheads]),
      dtBias: c.dtBias === false ? undefined : new Tensor('float32', fastNormals(rng, c.nheads, 0.1), [c.nheads]),
      cuSeqlens: c.packed === undefined ? undefined : new Tensor('int32', packedOffsets(c.packed), [c.packed.length + 1]),
    };
    const dev = Object.fromEntries(Object.entries(host).filter(([, t]) => t !== undefined).map(([k, t]) => [k, t!.toDevice(0)])) as unknown as SsdInputs<Tensor>;
    const y = Tensor.fromOwnedDeviceMemory(addon.cudaAlloc(0, xs * 2), 'bfloat16', dev.x.dims, 0, xs * 2);
    // returnUngated needs the gate: configs without z time the forward without it
    const keepUngated = ungated && dev.z !== undefined;
    const yu = keepUngated ? Tensor.fromOwnedDeviceMemory(addon.cudaAlloc(0, xs * 2), 'bfloat16', dev.x.dims, 0, xs * 2) : undefined;
    const statesBytes = (c.packed?.length ?? 0) * c.nheads * c.headdim * c.dstate * 4;
    const varlenStates = c.packed === undefined ? null : addon.cudaAlloc(0, statesBytes);
    await Promise.all(Object.values(dev).map((t: Tensor) => t.ready));
    // The same native arguments as ssd() on these device tensors with these options.
    const options: SsdOptions = { dtSoftplus: true, chunkSize: 256, returnUngated: keepUngated, returnVarlenStates: c.packed !== undefined };
    const { inputs: t, plan } = validate(dev, options);
    const outputs = { y: y.devicePointer, finalStates: null, varlenStates, yUngated: yu?.devicePointer ?? null };
    const forward = forwardArgs(t, plan, mapBuffers(forwardInputSlots(t), devicePointer), outputs);
    progress.report(`${c.name}: timing ${runs} runs`);
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
      progress.report(`${c.name}: timing ${runs} backward runs`);
      const owned: bigint[] = [];
      const buf = (bytes: number): bigint => {
        const ptr = addon.cudaAlloc(0, bytes);
        owned.push(ptr);
        return ptr;
      };
      const dy = Tensor.fromFloat32('bfloat16', fastNormals(rng, xs), dev.x.dims).toDevice(0);
      await dy.ready;
      // The native arguments of ssdBackward() on these tensors, with the forward's yUngated when it
      // wrote one (a packed config's final states get no gradient: Triton's backward refuses them)
      const call = validateBackward(dev, { dy }, { dtSoftplus: true, chunkSize: 256, yUngated: yu });
      const grads: GradBuffers<bigint> = {};
      let gradBytes = 0;
      for (const spec of call.specs) {
        const bytes = spec.dims.reduce((a, b) => a * b, 1) * elementSize(spec.type);
        grads[spec.name] = buf(bytes);
        gradBytes += bytes;
      }
      const bwd = await addon.cudaTimeBackward(
        backwardArgs(call, mapBuffers(backwardInputSlots(call, true), devicePointer), grads),
        0, 3, Math.max(5, Math.floor(runs / 4)),
      );
      const bwdMs = median(bwd.ms);
      // with --ungated, yUngated is memory kept from the forward for the backward: counted as extra
      const keptBytes = yu ? xs * 2 : 0;
      // What one fwd+bwd call adds as the peers driver counts Triton's (its fwdbwd_extra_mib:
      // max_memory_allocated less what was allocated before the call): y, the kept yUngated and the
      // varlen states live through the backward, the gradients are allocated by it, and each
      // direction's workspace lives during its own launches only.
      const peerBytes = xs * 2 + keptBytes + statesBytes + Math.max(timed.workspaceBytes, gradBytes + bwd.workspaceBytes);
      Object.assign(rows[rows.length - 1], {
        bwdMs: Number(bwdMs.toFixed(4)),
        fwdBwdMs: Number((ms + bwdMs).toFixed(4)),
        bwdExtraMiB: Number(((bwd.workspaceBytes + keptBytes) / 2 ** 20).toFixed(1)),
        fwdBwdPeerMiB: Number((peerBytes / 2 ** 20).toFixed(1)),
      });
      dy.dispose();
      for (const ptr of owned) addon.cudaRelease(0, ptr);
    }
    for (const t of [...Object.values(dev), y, ...(yu ? [yu] : [])]) t.dispose();
    if (varlenStates !== null) addon.cudaRelease(0, varlenStates);
  }
  progress.done();
  if (json) {
    console.log(JSON.stringify({ version, date: new Date().toISOString(), runs, ungated, rows }, null, 2));
  } else {
    console.log(`ssd-kernels ${version} bench --device cuda: bf16 x/B/C/z, fp32 dt/A/D/dtBias, D per head, dtSoftplus, chunk 256 (G5: ${G5_NOTE}); CUDA events, 10 warm-ups, median of ${runs}${ungated ? '; the forward writes yUngated and hands it to the backward' : ''}`);
    console.log('config  median ms  min ms    TFLOP/s  GB/s   floor ms  x floor  extra MiB');
    for (const r of rows) {
      console.log(`${String(r.config).padEnd(8)}${String(r.ms).padStart(9)}  ${String(r.minMs).padStart(7)}  ${String(r.tflops).padStart(8)}  ${String(r.gbps).padStart(5)}  ${String(r.floorMs).padStart(8)}  ${String(r.ratioToFloor).padStart(7)}  ${String(r.extraMiB).padStart(9)}`);
    }
    if (withBackward) {
      console.log(`backward (every gradient, bf16 where the input is${ungated ? '; extra MiB includes the kept yUngated' : ''}):`);
      console.log('config  bwd ms     fwd+bwd ms  bwd extra MiB  fwd+bwd MiB (y, gradients and workspace: the peers driver\'s count)');
      for (const r of rows) console.log(`${String(r.config).padEnd(8)}${String(r.bwdMs).padEnd(11)}${String(r.fwdBwdMs).padEnd(12)}${String(r.bwdExtraMiB).padEnd(15)}${r.fwdBwdPeerMiB}`);
    }
  }
  return 0;
}

function bench(a: BenchArgs): number {
  const { json, backward, runs } = a;
  const b = backends();
  const threads = a.threads ?? b.cpu.threads;
  const progress = (line: string): void => a.progress.report(line);

  progress('measuring the fp32 FMA peak...');
  const peak = native().fmaPeakGflops(threads, 0.5);
  const rows: Record<string, number | string>[] = [];
  for (const c of CPU_BENCH_CONFIGS.filter((c) => a.configs.includes(c.name))) {
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
  a.progress.done();
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

/** bench in its mode (lib/cli-bench.ts). */
function runBench(a: BenchArgs): number | Promise<number> {
  switch (a.mode) {
    case 'cpu':
      return bench(a);
    case 'cuda':
      return benchCuda(a);
    case 'step':
      return benchStep(a);
    case 'step-cuda':
      return benchStepCuda(a);
  }
}

/** Writes a usage error of `command` (or of the command line) to stderr; returns the exit code 2. */
function usageError(command: string | undefined, message: string): number {
  const help = command ? `run 'ssd-kernels ${command} --help' for its usage` : "run 'ssd-kernels --help' for the commands";
  process.stderr.write(`ssd-kernels${command ? ` ${command}` : ''}: ${message}\n${help}\n`);
  return 2;
}

/**
 * Runs the command line `argv` (without node and the script); returns the exit code. Help is
 * printed before anything is loaded or run: `--help`/`-h` anywhere among a command's arguments
 * prints that command's help and nothing else.
 */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    process.stderr.write(overview());
    return 2;
  }
  if (name === '--help' || name === '-h' || (name === 'help' && rest.length === 0)) {
    process.stdout.write(overview());
    return 0;
  }
  const names = COMMANDS.map((c) => c.spec.name);
  const find = (n: string): Command | undefined => COMMANDS.find((c) => c.spec.name === n);
  const unknown = (n: string): number => {
    const near = nearest(n, names);
    process.stderr.write(`ssd-kernels: unknown command '${n}'${near ? ` (did you mean ${near}?)` : ''}\n${overview()}`);
    return 2;
  };
  if (name === 'help') {
    const command = find(rest[0]);
    if (rest.length > 1) return usageError(undefined, `help takes one command, not '${rest.join(' ')}'`);
    if (!command) return unknown(rest[0]);
    process.stdout.write(helpText(command.spec));
    return 0;
  }
  const command = find(name);
  if (!command) return unknown(name);
  if (wantsHelp(rest)) {
    process.stdout.write(helpText(command.spec));
    return 0;
  }
  try {
    return await command.run(parseFlags(command.spec, rest));
  } catch (err) {
    if (err instanceof UsageError) return usageError(name, err.message);
    throw err;
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
