/**
 * The command line explains itself: every command's --help, -h and `help <command>` print its usage
 * (from the same flag table the parser reads) on stdout and exit 0 without loading the addon; an
 * unknown flag, a flag without its value or with a bad value is an error naming the flag, on stderr,
 * exit 2; `check` lists the CUDA backward and step (skipped, with the reason, without CUDA); progress
 * lines go to stderr only when asked for (SSD_KERNELS_PROGRESS=1; tests run without a terminal) and
 * never with --json. Runs the compiled CLI (dist/), as `npx ssd-kernels` would, and the flag
 * mechanism (lib/cli-args.ts) in process.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { backends } from '../lib/index';
import { Progress, UsageError, helpText, integer, nearest, parseFlags, type CommandSpec } from '../lib/cli-args';
import { BENCH_COMMAND } from '../lib/cli-bench';
import { CHECK_COMMAND } from '../lib/cli-check';
import { MATRIX_COMMAND } from '../lib/cli-matrix';

const cli = path.join(__dirname, '..', 'dist', 'lib', 'cli.js');

function runCli(args: string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const base = { ...process.env };
  delete base.SSD_KERNELS_PROGRESS;
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 300000, env: { ...base, ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Each command with flags its help must name (written out here, not read from the tables). */
const EXPECTED_FLAGS: Record<string, string[]> = {
  info: [],
  check: [],
  bench: ['--json', '--runs N', '--threads N', '--config LIST', '--backward', '--ungated', '--device DEVICE', '--step', '--batch LIST', '--memory-mib N'],
  matrix: ['--out FILE', '--head H', '--start S', '--length N', '--colors MODE', '--decades D', '--scale K', '--seqlen L', '--nheads H', '--dstate N', '--seed S', '--seq-starts P,Q', '--input FILE.json', '--batch-index I'],
};

describe('help', () => {
  // The addon path points nowhere: help must not need the addon.
  const noAddon = { SSD_KERNELS_ADDON: path.join(__dirname, 'no-such-addon.node') };

  test.each(Object.keys(EXPECTED_FLAGS).flatMap((c) => [[c, '--help'], [c, '-h'], [c, 'help']]))('%s %s prints its usage on stdout and exits 0', (command, how) => {
    const r = runCli(how === 'help' ? ['help', command] : [command, how], noAddon);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.startsWith(`usage: ssd-kernels ${command}`)).toBe(true);
    for (const flag of EXPECTED_FLAGS[command]) expect(r.stdout).toMatch(new RegExp(`^ {2}${flag.replace(/[.,]/g, '\\$&')} +\\S`, 'm'));
    expect(r.stdout).toMatch(/^ {2}-h, --help +print this help and exit$/m);
    if (EXPECTED_FLAGS[command].length === 0) expect(r.stdout).toMatch(new RegExp(`${command} takes no options`));
  });

  test('--help wins over other flags and runs nothing (bench would print a table or JSON)', () => {
    const r = runCli(['bench', '--json', '--runs', '1', '--help'], noAddon);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^usage: ssd-kernels bench/);
    expect(r.stdout).not.toMatch(/GFLOP|"rows"/);
  });

  test("bench's help gives the defaults and which modes a flag is for", () => {
    const r = runCli(['bench', '--help'], noAddon);
    expect(r.stdout).toMatch(/--runs N +timed runs, the median is reported \(default 15; 100 with --device cuda or --step\)/);
    expect(r.stdout).toMatch(/--config LIST +the configurations to time \(default C1,C2; G1,G2,G3,G4,G5 with --device cuda, which also takes G5u\)/);
    expect(r.stdout).toMatch(/--batch LIST +the step's batch sizes \(default 1,16,64,256\)/);
    expect(r.stdout).toMatch(/--memory-mib N +MiB swept to measure memory bandwidth \(default 1024\)\n +\(for bench --step only\)/);
    expect(r.stdout).toMatch(/--ungated .*\n +\(for bench --device cuda only\)/);
    expect(r.stdout).toMatch(/SSD_KERNELS_PROGRESS=1/);
  });

  test.each([['--help'], ['-h'], ['help']])('ssd-kernels %s lists every command on stdout and exits 0', (how) => {
    const r = runCli([how], noAddon);
    expect(r.status).toBe(0);
    expect(r.stderr).toBe('');
    for (const command of Object.keys(EXPECTED_FLAGS)) expect(r.stdout).toMatch(new RegExp(`^ {2}${command} +\\S`, 'm'));
  });

  test('no command, an unknown command, or help for an unknown command: usage on stderr, exit 2', () => {
    let r = runCli([]);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^usage: ssd-kernels <command>/);
    r = runCli(['chek']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown command 'chek' \(did you mean check\?\)/);
    r = runCli(['help', 'frobnicate']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown command 'frobnicate'/);
    expect(r.stderr).not.toMatch(/did you mean/);
  });
});

describe('usage errors name the flag, on stderr, exit 2', () => {
  test.each([
    [['info', '--verbose'], /^ssd-kernels info: unknown option '--verbose'\n/],
    [['check', '--jsn'], /^ssd-kernels check: unknown option '--jsn'\n/],
    [['bench', '--rnus', '3'], /unknown option '--rnus' \(did you mean --runs\?\)/],
    [['bench', '--thread', '3'], /unknown option '--thread' \(did you mean --threads\?\)/],
    [['bench', '--frobnicate'], /unknown option '--frobnicate'\n/],
    [['matrix', '--sqlen', '10'], /unknown option '--sqlen' \(did you mean --seqlen\?\)/],
    [['bench', '--runs', 'abc'], /--runs takes an integer >= 1, not 'abc'/],
    [['bench', '--runs', '0'], /--runs takes an integer >= 1, not '0'/],
    [['bench', '--runs', '2.5'], /--runs takes an integer >= 1, not '2\.5'/],
    [['bench', '--runs'], /--runs needs a value: an integer >= 1\n/],
    [['bench', '--runs', '--json'], /--runs needs a value: an integer >= 1, not the flag '--json'/],
    [['bench', '--threads', '5000'], /--threads takes an integer from 1 to 1024, not '5000'/],
    [['bench', '--config', 'G9'], /--config takes names from C1, C2, G1, G2, G3, G4, G5, G5u separated by commas, not 'G9'/],
    [['bench', '--config', 'G1'], /--config takes C1, C2 for bench, not 'G1'/],
    [['bench', '--device', 'cuda', '--config', 'C1'], /--config takes G1, G2, G3, G4, G5, G5u for bench --device cuda, not 'C1'/],
    [['bench', '--device', 'gpu'], /--device takes one of cpu, cuda, not 'gpu'/],
    [['bench', '--step', '--batch', '1,0'], /--batch takes integers >= 1 separated by commas, not '1,0'/],
    [['bench', '--step', '--memory-mib', '70000'], /--memory-mib takes an integer from 1 to 65536, not '70000'/],
    [['bench', '--device', 'cuda', '--threads', '4'], /--threads does not apply to bench --device cuda \(it is for bench and bench --step\)/],
    [['bench', '--step', '--backward'], /--backward does not apply to bench --step/],
    [['bench', '--batch', '4'], /--batch does not apply to bench \(it is for bench --step and bench --step --device cuda\)/],
    [['bench', '--device', 'cuda', '--ungated'], /--ungated needs --backward/],
    [['bench', '--runs', '2', '--runs', '3'], /--runs is given twice/],
    [['bench', 'C1'], /unexpected argument 'C1'/],
    [['matrix', '--colors', 'rainbow'], /--colors takes one of log, signed, not 'rainbow'/],
    [['matrix', '--decades', '0'], /--decades takes a number above 0 and at most 300, not '0'/],
  ])('%j', (args, message) => {
    const r = runCli(args);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toMatch(new RegExp(`run 'ssd-kernels ${args[0]} --help' for its usage`));
  });
});

describe('the flag mechanism (lib/cli-args.ts)', () => {
  const spec: CommandSpec = {
    name: 'demo',
    synopsis: ['demo [--count N] [--loud]'],
    summary: 'a demo',
    flags: [
      { name: '--count', placeholder: 'N', type: integer(2, 9), help: 'how many (default 2)' },
      { name: '--loud', help: 'louder' },
    ],
  };

  test('parses switches and values, and refuses what the table does not allow', () => {
    const f = parseFlags(spec, ['--loud', '--count', '7']);
    expect(f.has('--loud')).toBe(true);
    expect(f.number('--count')).toBe(7);
    expect(parseFlags(spec, []).number('--count')).toBeUndefined();
    expect(() => parseFlags(spec, ['--count', '1'])).toThrow(new UsageError("--count takes an integer from 2 to 9, not '1'"));
    expect(() => parseFlags(spec, ['--lud'])).toThrow(new UsageError("unknown option '--lud' (did you mean --loud?)"));
  });

  test('the help lists each flag of the table with its placeholder and text', () => {
    expect(helpText(spec)).toBe(
      'usage: ssd-kernels demo [--count N] [--loud]\n\n' +
        '  --count N          how many (default 2)\n' +
        '  --loud             louder\n' +
        '  -h, --help         print this help and exit\n',
    );
  });

  test('every flag of the real tables is in its help', () => {
    for (const c of [BENCH_COMMAND, CHECK_COMMAND, MATRIX_COMMAND]) {
      const help = helpText(c);
      for (const f of c.flags) expect(help).toContain(`  ${f.name}${f.placeholder ? ` ${f.placeholder}` : ''} `);
    }
  });

  test('nearest suggests only close names', () => {
    expect(nearest('--runz', ['--runs', '--json'])).toBe('--runs');
    expect(nearest('--x', ['--runs', '--json'])).toBeUndefined();
    expect(nearest('--verbose', ['--runs', '--json'])).toBeUndefined();
  });

  test('Progress is on at a terminal or with SSD_KERNELS_PROGRESS=1, never with --json or SSD_KERNELS_PROGRESS=0', () => {
    expect(new Progress(false, {}, true).enabled).toBe(true);
    expect(new Progress(false, {}, false).enabled).toBe(false);
    expect(new Progress(false, { SSD_KERNELS_PROGRESS: '1' }, false).enabled).toBe(true);
    expect(new Progress(false, { SSD_KERNELS_PROGRESS: '0' }, true).enabled).toBe(false);
    expect(new Progress(true, { SSD_KERNELS_PROGRESS: '1' }, true).enabled).toBe(false);
  });
});

describe('check covers every backend for the forward, the backward and the step', () => {
  const cuda = backends().cuda;
  const CUDA_CHECKS = [
    'fp32, every option', 'bf16, D per head, softplus', 'fp16, z gate, no D', 'bf16, five packed sequences',
    'backward, fp32, every option', 'backward, bf16, D per head, softplus',
    'step fp32, every option', 'step bf16 state and inputs',
    // the bf16 forward cases and the bf16 backward again on the sm_80 kernels (the default lines run on the
    // sm_90a kernels on an H100 or H200)
    'bf16, D per head, softplus [sm_80]', 'bf16, five packed sequences [sm_80]', 'backward, bf16, D per head, softplus [sm_80]',
  ];
  const SM90_CHECKS = ['bf16, D per head, softplus [sm_90a]', 'bf16, five packed sequences [sm_90a]'];

  test('one line per CUDA check: PASS with CUDA, else SKIP with the reason; progress only when asked for', () => {
    const r = runCli(['check']);
    expect(r.status).toBe(0);
    expect(r.stderr).toBe(''); // no terminal here: no progress
    for (const name of CUDA_CHECKS) {
      const escaped = name.replace(/[.,[\]]/g, '\\$&');
      if (cuda.available) expect(r.stdout).toMatch(new RegExp(`^PASS {2}cuda {2}${escaped} +\\S.*\\(bound`, 'm'));
      else expect(r.stdout).toMatch(new RegExp(`^SKIP {2}cuda {2}${escaped} +CUDA is unavailable: ${cuda.reason.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'));
    }
    // the bf16 forward cases again on the sm_90a forward, forced: PASS on an H100 or H200, else SKIP with the reason
    for (const name of SM90_CHECKS) {
      const escaped = name.replace(/[.,[\]]/g, '\\$&');
      if (cuda.available) expect(r.stdout).toMatch(new RegExp(`^(PASS {2}cuda {2}${escaped} +\\S.*\\(bound|SKIP {2}cuda {2}${escaped} +no sm_90a device$)`, 'm'));
      else expect(r.stdout).toMatch(new RegExp(`^SKIP {2}cuda {2}${escaped} +CUDA is unavailable: `, 'm'));
    }
    const sm90Passed = (r.stdout.match(/^PASS {2}cuda {2}.*\[sm_90a\]/gm) ?? []).length;
    const passed = r.stdout.match(/^PASS /gm) ?? [];
    expect(passed.length).toBe(cuda.available ? 18 + sm90Passed : 7);
    if (!cuda.available) expect(r.stdout).toMatch(/^all checks passed \(13 skipped: CUDA is unavailable\)$/m);

    const forced = runCli(['check'], { SSD_KERNELS_PROGRESS: '1' });
    expect(forced.status).toBe(0);
    expect(forced.stdout).toBe(r.stdout);
    // a progress line per check that runs (an sm_90a check that finds no sm_90a device included)
    const ran = cuda.available ? 16 + SM90_CHECKS.length : 7;
    const lines = forced.stderr.trim().split('\n');
    expect(lines).toHaveLength(ran);
    expect(lines[0]).toBe(`check: 1/${ran} cpu fp32, every option ...`);
    const last = cuda.available ? 'cuda backward, bf16, D per head, softplus \\[sm_80\\]' : 'cpu step bf16 state and inputs';
    expect(lines[lines.length - 1]).toMatch(new RegExp(`^check: ${ran}/${ran} ${last} \\.\\.\\.$`));
  });
});

describe('bench progress', () => {
  test('progress lines with SSD_KERNELS_PROGRESS=1, none without it, none with --json', () => {
    const args = ['bench', '--runs', '2', '--config', 'C2'];
    const quiet = runCli(args);
    expect(quiet.status).toBe(0);
    expect(quiet.stderr).toBe('');
    expect(quiet.stdout).toMatch(/^C2 +cpu/m);
    const forced = runCli(args, { SSD_KERNELS_PROGRESS: '1' });
    expect(forced.status).toBe(0);
    expect(forced.stderr).toBe('measuring the fp32 FMA peak...\nC2: run 1/2\nC2: run 2/2\n');
    const json = runCli([...args, '--json'], { SSD_KERNELS_PROGRESS: '1' });
    expect(json.status).toBe(0);
    expect(json.stderr).toBe('');
    expect((JSON.parse(json.stdout) as { rows: { config: string }[] }).rows.map((row) => row.config)).toEqual(['C2']);
  });
});
