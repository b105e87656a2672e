/** The package is importable from ES modules as well as CommonJS (through package.json "exports"). */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

test('import { ssdSync, Tensor, SsdError, version, backends } from "ssd-kernels" works in an ES module', () => {
  const script = `
    import { ssdSync, Tensor, SsdError, version, backends } from 'ssd-kernels';
    const t = (v, d) => new Tensor('float32', Float32Array.from(v), d);
    const out = ssdSync({ x: t([1], [1, 1, 1, 1]), dt: t([0.5], [1, 1, 1]), A: t([-1], [1]), B: t([2], [1, 1, 1, 1]), C: t([3], [1, 1, 1, 1]) });
    console.log(JSON.stringify({ y: out.y.data[0], version, isa: backends().cpu.isa, err: typeof SsdError }));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: path.join(__dirname, '..'), encoding: 'utf8' });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const out = JSON.parse(r.stdout) as { y: number; version: string; isa: string; err: string };
  expect(out.y).toBeCloseTo(0.5 * 1 * 2 * 3, 6); // H = d·x·B, y = H·C
  expect(out.version).toMatch(/^\d+\.\d+\.\d+/);
  expect(out.err).toBe('function');
});
