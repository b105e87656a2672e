/**
 * `ssd-kernels bench`'s flags (one table for its parser and its help, lib/cli-args.ts) and their
 * values with the defaults filled in. bench has four modes, told apart by --step and --device:
 *   bench                        the CPU forward (and with --backward the backward) on C1, C2 (lib/cli.ts)
 *   bench --device cuda          the CUDA forward (and backward) on G1–G5 with CUDA events (lib/cli.ts)
 *   bench --step                 the CPU decode step against measured memory bandwidth (lib/cli-step.ts)
 *   bench --step --device cuda   the CUDA step against the copy bandwidth (lib/cli-step.ts)
 * A flag of one mode given in another is a usage error.
 */
import { CPU_BENCH_CONFIGS, GPU_ALL_CONFIGS, GPU_BENCH_CONFIGS, GPU_EXTRA_CONFIGS, STEP_BENCH_BATCHES } from './configs';
import { THREADS } from './rules';
import { Progress, UsageError, integer, integers, namesOf, oneOf, type CommandSpec, type ParsedFlags } from './cli-args';

export type BenchMode = 'cpu' | 'cuda' | 'step' | 'step-cuda';

/** Timed runs by default: 15 for the CPU forward, 100 for the others. */
export const DEFAULT_RUNS: Readonly<Record<BenchMode, number>> = { cpu: 15, cuda: 100, step: 100, 'step-cuda': 100 };

/** --memory-mib's default and largest value (the buffer of the CPU step's bandwidth sweep). */
export const MEMORY_MIB = { default: 1024, max: 65536 } as const;

const names = (configs: { name: string }[]): string => configs.map((c) => c.name).join(',');

export const BENCH_COMMAND: CommandSpec = {
  name: 'bench',
  synopsis: [
    'bench [--json] [--runs N] [--threads N] [--config C1,C2] [--backward]',
    'bench --device cuda [--json] [--runs N] [--config G1,G2,G3,G4,G5] [--backward [--ungated]]',
    'bench --step [--json] [--runs N] [--threads N] [--batch 1,16,64,256] [--memory-mib N]',
    'bench --step --device cuda [--json] [--runs N] [--batch 1,16,64,256]',
  ],
  summary: 'time the CPU or CUDA forward, backward or decode step (bench --help)',
  about:
    'Times the CPU forward (median of N runs reusing the output), with --backward also the backward;\n' +
    'with --device cuda the CUDA forward and backward with CUDA events; with --step the decode step\n' +
    'against memory bandwidth. Tables on stdout; progress on stderr on a terminal\n' +
    '(SSD_KERNELS_PROGRESS=1 forces it on, =0 off; never with --json).',
  flags: [
    { name: '--json', help: 'print the results as JSON on stdout instead of a table' },
    {
      name: '--runs', placeholder: 'N', type: integer(1),
      help: `timed runs, the median is reported (default ${DEFAULT_RUNS.cpu}; ${DEFAULT_RUNS.cuda} with --device cuda or --step)`,
    },
    {
      name: '--threads', placeholder: 'N', type: integer(THREADS.min, THREADS.max), modes: ['cpu', 'step'],
      help: 'CPU threads (default: every thread the CPU path uses here, as in `ssd-kernels info`)',
    },
    {
      name: '--config', placeholder: 'LIST', type: namesOf([...CPU_BENCH_CONFIGS, ...GPU_ALL_CONFIGS].map((c) => c.name)), modes: ['cpu', 'cuda'],
      help: `the configurations to time (default ${names(CPU_BENCH_CONFIGS)}; ${names(GPU_BENCH_CONFIGS)} with --device cuda, which also takes ${names(GPU_EXTRA_CONFIGS)})`,
    },
    { name: '--backward', modes: ['cpu', 'cuda'], help: 'also time the backward, and the forward + backward' },
    {
      name: '--ungated', modes: ['cuda'],
      help: 'with --backward: the forward also writes yUngated and hands it to the backward (the sm_80 kernels read it for dz)',
    },
    { name: '--device', placeholder: 'DEVICE', type: oneOf(['cpu', 'cuda']), help: 'cpu (default) or cuda' },
    { name: '--step', help: 'time the decode step (ssdStep) instead of the forward' },
    {
      name: '--batch', placeholder: 'LIST', type: integers(1), modes: ['step', 'step-cuda'],
      help: `the step's batch sizes (default ${STEP_BENCH_BATCHES.join(',')})`,
    },
    {
      name: '--memory-mib', placeholder: 'N', type: integer(1, MEMORY_MIB.max), modes: ['step'],
      help: `MiB swept to measure memory bandwidth (default ${MEMORY_MIB.default})`,
    },
  ],
  modes: {
    names: { cpu: 'bench', cuda: 'bench --device cuda', step: 'bench --step', 'step-cuda': 'bench --step --device cuda' },
    of: (f) => benchMode(f),
  },
};

function benchMode(f: ParsedFlags): BenchMode {
  const cuda = f.string('--device') === 'cuda';
  return f.has('--step') ? (cuda ? 'step-cuda' : 'step') : cuda ? 'cuda' : 'cpu';
}

/** bench's flags with their defaults (threads undefined: the CPU path's own count). */
export interface BenchArgs {
  mode: BenchMode;
  json: boolean;
  runs: number;
  threads?: number;
  /** the configurations' names, in the order of lib/configs.ts */
  configs: string[];
  backward: boolean;
  ungated: boolean;
  batches: number[];
  memoryMiB: number;
  progress: Progress;
}

/** The values of bench's parsed flags, with the checks that span flags. */
export function benchArgs(f: ParsedFlags): BenchArgs {
  const mode = benchMode(f);
  const defaults = (mode === 'cuda' ? GPU_BENCH_CONFIGS : CPU_BENCH_CONFIGS).map((c) => c.name);
  const known = (mode === 'cuda' ? GPU_ALL_CONFIGS : CPU_BENCH_CONFIGS).map((c) => c.name);
  const wanted = f.strings('--config') ?? defaults;
  const foreign = wanted.filter((n) => !known.includes(n));
  if (foreign.length > 0) throw new UsageError(`--config takes ${known.join(', ')} for ${BENCH_COMMAND.modes!.names[mode]}, not '${foreign.join(',')}'`);
  if (f.has('--ungated') && !f.has('--backward')) throw new UsageError('--ungated needs --backward (it changes what the backward reads)');
  const json = f.has('--json');
  return {
    mode,
    json,
    runs: f.number('--runs') ?? DEFAULT_RUNS[mode],
    threads: f.number('--threads'),
    configs: known.filter((n) => wanted.includes(n)),
    backward: f.has('--backward'),
    ungated: f.has('--ungated'),
    batches: f.numbers('--batch') ?? STEP_BENCH_BATCHES,
    memoryMiB: f.number('--memory-mib') ?? MEMORY_MIB.default,
    progress: new Progress(json),
  };
}
