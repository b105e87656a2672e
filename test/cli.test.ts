/**
 * The command line: `info` reports the backends, `check` compares every available backend with
 * the float64 reference and exits 0, an unknown command exits 2 with usage, `bench --json` emits
 * machine-readable rows. Runs the compiled CLI (dist/), as `npx ssd-kernels` would.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { minimumBytes } from '../lib/cli';
import { GPU_BENCH_CONFIGS, packedOffsets } from '../lib/configs';

const cli = path.join(__dirname, '..', 'dist', 'lib', 'cli.js');

function runCli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 300000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('ssd-kernels CLI', () => {
  test('info names the version, the instruction set, the threads and the CUDA status', () => {
    const r = runCli(['info']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^ssd-kernels \d+\.\d+\.\d+/);
    expect(r.stdout).toMatch(/instruction set (avx512|avx2|scalar)/);
    expect(r.stdout).toMatch(/\d+ threads/);
    expect(r.stdout).toMatch(/cuda: (available|unavailable: .+)/);
  });

  test('check passes on every available backend and says what it skipped', () => {
    const r = runCli(['check']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/PASS {2}cpu/);
    expect(r.stdout).toMatch(/PASS {2}cpu {3}backward/);
    expect(r.stdout).not.toMatch(/FAIL/);
    expect(r.stdout).toMatch(/all checks passed/);
    if (!/PASS {2}cuda/.test(r.stdout)) expect(r.stdout).toMatch(/cuda: skipped \(.+\)/);
  });

  test('bench --json gives one row per config with time, GFLOP/s and fraction of the measured peak', () => {
    const r = runCli(['bench', '--json', '--runs', '1', '--config', 'C2']);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { rows: { config: string; ms: number; gflops: number; fmaPeakGflops: number; fractionOfPeak: number }[] };
    expect(out.rows).toHaveLength(1);
    expect(out.rows[0].config).toBe('C2');
    expect(out.rows[0].ms).toBeGreaterThan(0);
    expect(out.rows[0].gflops).toBeGreaterThan(0);
    expect(out.rows[0].fmaPeakGflops).toBeGreaterThan(0);
    expect(out.rows[0].fractionOfPeak).toBeGreaterThan(0);
  });

  test('bench --backward adds the backward and forward + backward times', () => {
    const r = runCli(['bench', '--json', '--runs', '1', '--config', 'C2', '--backward']);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { rows: { ms: number; backwardMs: number; forwardBackwardMs: number; backwardToForward: number }[] };
    expect(out.rows).toHaveLength(1);
    const row = out.rows[0];
    expect(row.backwardMs).toBeGreaterThan(0);
    expect(row.forwardBackwardMs).toBeCloseTo(row.ms + row.backwardMs, 2);
    expect(row.backwardToForward).toBeGreaterThan(0);
  });

  test('the CPU-only node-gyp build (built by npm install) passes check too', () => {
    const gypAddon = path.join(__dirname, '..', 'build', 'Release', 'ssd_kernels.node');
    expect(fs.existsSync(gypAddon)).toBe(true); // npm ci / npm install builds it through the install script
    const r = spawnSync(process.execPath, [cli, 'check'], { encoding: 'utf8', env: { ...process.env, SSD_KERNELS_ADDON: gypAddon } });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/PASS {2}cpu/);
    expect(r.stdout).toMatch(/all checks passed/);
  });

  test("G5 packs the Triton peer's 48 sequences (53,000 tokens) without z or dtBias, and its floor counts the final states", () => {
    const g5 = GPU_BENCH_CONFIGS.find((c) => c.name === 'G5')!;
    const cu = packedOffsets(g5.packed!);
    expect([cu.length, cu[0], cu[1], cu[48], g5.seqlen, g5.batch]).toEqual([49, 0, 1339, 53000, 53000, 1]);
    expect(g5.packed!.every((n) => n >= 64 && n <= 2048)).toBe(true);
    expect([g5.gate, g5.dtBias]).toEqual([false, false]);
    const tokens = 53000 * 32 * 64;
    expect(minimumBytes(g5, 2)).toBe(2 * (2 * tokens + 2 * 53000 * 128) + 4 * (53000 * 32 + 2 * 32 + 48 * 32 * 64 * 128));
    const g1 = GPU_BENCH_CONFIGS[0];
    expect(minimumBytes(g1, 2)).toBe(2 * (3 * 4 * 4096 * 32 * 64 + 2 * 4 * 4096 * 128) + 4 * (4 * 4096 * 32 + 3 * 32));
  });

  test('an unknown command prints usage and exits 2', () => {
    const r = runCli(['frobnicate']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/usage: ssd-kernels/);
  });
});
