/**
 * The main (cmake-js) build: when it contains the CUDA kernels, the CUDA runtime is linked
 * statically, so the .node has no link-time dependency on libcudart or libcuda (the driver is
 * loaded lazily at first use), and it still loads and runs the CPU path without a GPU.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { backends } from '../lib/index';

const addon = path.join(__dirname, '..', 'build-cmake', 'Release', 'ssd_kernels.node');

test('the cmake-js addon exists (npm run build:native builds it)', () => {
  expect(fs.existsSync(addon)).toBe(true);
});

test('the addon needs no libcudart or libcuda at link time', () => {
  const r = spawnSync('ldd', [addon], { encoding: 'utf8' });
  expect(r.status).toBe(0);
  expect(r.stdout).toMatch(/libc\.so/); // ldd really listed the dependencies
  expect(r.stdout).not.toMatch(/libcudart/);
  expect(r.stdout).not.toMatch(/libcuda\.so/);
  const cuda = backends().cuda;
  console.log(`cmake-js build: CUDA kernels ${cuda.compiled ? 'compiled in' : 'not compiled (no nvcc at build time)'}; ${cuda.available ? 'a GPU is available' : `CUDA unavailable here: ${cuda.reason}`}`);
});
