#!/usr/bin/env node
// The check of the main (cmake-js) build, run by `npm run build:native` right after cmake-js makes
// build-cmake/Release/ssd_kernels.node (or on the file given as the argument):
//   - the addon exists;
//   - `ldd` lists its dependencies and neither libcudart nor libcuda is among them: when the build
//     holds the CUDA kernels, the CUDA runtime is linked statically and the driver is loaded lazily
//     at first use, so the file loads on machines without a GPU or driver;
//   - it loads here, reports the ABI version of include/ssd_kernels.h, and runs the CPU path on the
//     known values of test/install/known-values.cjs (forwardSync on this thread, forward on a worker);
//   - it prints whether the CUDA kernels are compiled in and whether a GPU is usable here.
// It talks to the addon directly (the argument object lib/native.ts builds), so it needs no dist/.
'use strict';
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { cases, close } = require('../test/install/known-values.cjs');

const root = path.join(__dirname, '..');
const addonFile = path.resolve(process.argv[2] || path.join(root, 'build-cmake', 'Release', 'ssd_kernels.node'));

function fail(message) {
  process.stderr.write(`check-cmake-build: FAIL: ${message}\n`);
  process.exit(1);
}

/** The addon's forward arguments (NativeForwardArgs in lib/native.ts) for a known-values case, float32 throughout. */
function forwardArgs(c) {
  const i = c.inputs;
  const arr = (t) => (t ? Float32Array.from(t.values) : null);
  const [batch, seqlen, nheads, headdim] = i.x.dims;
  const [, , ngroups, dstate] = i.B.dims;
  return {
    dims: [batch, seqlen, nheads, headdim, ngroups, dstate],
    chunkSize: 256,
    x: arr(i.x), xType: 0,
    dt: arr(i.dt), dtType: 0,
    A: arr(i.A),
    B: arr(i.B), BType: 0,
    C: arr(i.C), CType: 0,
    D: arr(i.D), dPerChannel: false,
    z: arr(i.z), zType: 0,
    dtBias: arr(i.dtBias),
    dtSoftplus: Boolean(c.options.dtSoftplus),
    dtMin: 0, dtMax: Infinity,
    initialStates: arr(i.initialStates),
    seqIdx: null,
    y: new Float32Array(batch * seqlen * nheads * headdim), yType: 0,
    finalStates: new Float32Array(batch * nheads * headdim * dstate),
    threads: 0,
  };
}

async function main() {
  if (!fs.existsSync(addonFile)) fail(`${addonFile} does not exist (cmake-js made no addon)`);
  console.log(`check-cmake-build: ${path.relative(process.cwd(), addonFile) || addonFile} (${(fs.statSync(addonFile).size / 1048576).toFixed(1)} MB)`);

  const ldd = spawnSync('ldd', [addonFile], { encoding: 'utf8' });
  if (ldd.error || ldd.status !== 0) fail(`ldd failed: ${ldd.error ? ldd.error.message : ldd.stderr.trim()}`);
  if (!/libc\.so/.test(ldd.stdout)) fail(`ldd did not list the dependencies (no libc.so):\n${ldd.stdout}`);
  const cudaLibs = ldd.stdout.split('\n').filter((l) => /libcudart|libcuda\.so/.test(l));
  if (cudaLibs.length > 0) fail(`the addon needs CUDA libraries at link time:\n${cudaLibs.join('\n')}`);
  console.log('  ldd: no libcudart or libcuda');

  const header = fs.readFileSync(path.join(root, 'include', 'ssd_kernels.h'), 'utf8');
  const abi = Number(/#define SSD_KERNELS_ABI_VERSION (\d+)/.exec(header)[1]);
  const addon = require(addonFile);
  assert.equal(addon.abiVersion, abi, `the addon's ABI version (include/ssd_kernels.h says ${abi})`);

  for (const [name, c] of Object.entries(cases)) {
    const want = c.expected();
    const sync = forwardArgs(c);
    addon.forwardSync(sync);
    close(sync.y, want.y, `${name}: forwardSync y`);
    close(sync.finalStates, want.finalStates, `${name}: forwardSync finalStates`);
    const onWorker = forwardArgs(c);
    await addon.forward(onWorker);
    close(onWorker.y, want.y, `${name}: forward y`);
    close(onWorker.finalStates, want.finalStates, `${name}: forward finalStates`);
  }
  const b = addon.backends();
  console.log(`  loads (ABI ${addon.abiVersion}) and computes the known values on the CPU (${b.cpu.isa}, ${b.cpu.threads} threads)`);
  console.log(`  CUDA kernels ${b.cuda.compiled ? 'compiled in' : 'not compiled (no nvcc at build time)'}; ${b.cuda.available ? `a GPU is available (${b.cuda.devices})` : `CUDA unavailable here: ${b.cuda.reason}`}`);
  console.log('check-cmake-build: passed');
}

main().catch((err) => fail(err && err.stack ? err.stack : String(err)));
