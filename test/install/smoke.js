#!/usr/bin/env node
// Run by scripts/ci-package.sh inside a fresh project where the packed tarball was installed with no
// compiler on PATH: the package must load its prebuilt binary and compute known values on the CPU.
// `--forced-cpu`: run under SSD_KERNELS_DEVICE=cpu, where CUDA must be off and say so.
'use strict';
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const util = require('node:util');

const ssdKernels = require('ssd-kernels');
const nativeApi = require('ssd-kernels/native');
const { ssd, ssdSync, backends, Tensor } = ssdKernels;

const forcedCpu = process.argv.includes('--forced-cpu');
const packageDir = path.dirname(require.resolve('ssd-kernels/package.json'));

// The known values (float64, written out by hand) are shared with the runtime matrix and the cmake-js
// build check: scripts/ci-package.sh copies known-values.cjs next to this file.
const { cases, close, tensors } = require('./known-values.cjs');

async function main() {
  // The prebuilt binary, not a local build: nothing was compiled.
  const loaded = fs.realpathSync(nativeApi.addonPath());
  const prebuilt = fs.realpathSync(path.join(packageDir, 'prebuilds', 'linux-x64', 'ssd-kernels.node'));
  assert.equal(loaded, prebuilt, 'the addon must be the prebuilt binary');
  assert.ok(!fs.existsSync(path.join(packageDir, 'build')), 'installing must not have built anything');

  const b = backends();
  assert.equal(b.cuda.compiled, true, 'the prebuilt binary contains the CUDA kernels');
  if (forcedCpu) {
    assert.equal(b.cuda.available, false);
    assert.equal(b.cuda.reason, 'disabled by SSD_KERNELS_DEVICE=cpu');
  } else if (!b.cuda.available) {
    assert.ok(b.cuda.reason.length > 0, 'an unavailable CUDA says why');
  }

  for (const [name, c] of Object.entries(cases)) {
    const want = c.expected();
    const inputs = tensors(Tensor, c.inputs);
    const sync = ssdSync(inputs, { ...c.options, returnFinalStates: true });
    close(sync.y.data, want.y, `${name}: ssdSync y`);
    close(sync.finalStates.data, want.finalStates, `${name}: ssdSync finalStates`);
    for (const device of ['cpu', 'auto']) {
      const out = await ssd(inputs, { ...c.options, returnFinalStates: true, device: b.cuda.available && device === 'auto' ? 'cpu' : device });
      close(out.y.data, want.y, `${name}: ssd(${device}) y`);
      close(out.finalStates.data, want.finalStates, `${name}: ssd(${device}) finalStates`);
    }
  }

  // The C ABI's pieces are there.
  assert.ok(fs.existsSync(path.join(nativeApi.includeDir, 'ssd_kernels.h')), 'includeDir holds ssd_kernels.h');
  assert.ok(util.types.isExternal(nativeApi.getNativeApi()), 'getNativeApi() returns an External');

  console.log(`install smoke test passed: ${loaded}; isa ${b.cpu.isa}; CUDA ${b.cuda.available ? 'available' : `unavailable (${b.cuda.reason})`}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
