/**
 * `bench --device cuda` on the lent GPU: every configuration (G5 packed through cuSeqlens with its
 * final states) gives a row with a positive time and a floor, forward and backward, so that the
 * benchmark the NOTES figures come from cannot silently skip or fail a configuration. Speed itself
 * is never asserted here (bench/NOTES.md records it).
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { GPU_BENCH_CONFIGS } from '../../lib/configs';
import { gpuSuite } from '../helpers';

const cli = path.join(__dirname, '..', '..', 'lib', 'cli.js');
const { describeGpu } = gpuSuite('bench --device cuda');

interface Row { config: string; ms: number; floorMs: number; bwdMs?: number; fwdBwdMs?: number; bwdExtraMiB?: number; fwdBwdPeerMiB?: number }

describeGpu('bench --device cuda', () => {
  test.each([[[] as string[]], [['--backward']], [['--backward', '--ungated']]])('every configuration gives a row, %j', (extra) => {
    const r = spawnSync(process.execPath, [cli, 'bench', '--device', 'cuda', '--json', '--runs', '3', ...extra], { encoding: 'utf8', timeout: 280000 });
    expect(r.stderr.split('\n').filter((l) => /error|fail/i.test(l))).toEqual([]);
    expect(r.status).toBe(0);
    const rows = (JSON.parse(r.stdout) as { rows: Row[] }).rows;
    expect(rows.map((row) => row.config)).toEqual(GPU_BENCH_CONFIGS.map((c) => c.name));
    for (const row of rows) {
      expect([row.config, row.ms > 0 && row.floorMs > 0 && row.ms > row.floorMs]).toEqual([row.config, true]);
      if (extra.includes('--backward')) {
        expect([row.config, (row.bwdMs ?? 0) > 0]).toEqual([row.config, true]);
        expect(row.fwdBwdMs).toBeCloseTo(row.ms + row.bwdMs!, 3);
        // the peers driver's count holds y and every gradient besides what the backward's own count holds
        expect([row.config, row.fwdBwdPeerMiB! > row.bwdExtraMiB!]).toEqual([row.config, true]);
      }
    }
  });
});
