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

function close(actual, expected, what) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const tolerance = 2e-6 * Math.max(1, Math.abs(expected[i]));
    assert.ok(Number.isFinite(actual[i]) && Math.abs(actual[i] - expected[i]) <= tolerance, `${what}[${i}]: ${actual[i]} vs ${expected[i]}`);
  }
}

const f32 = (values, dims) => new Tensor('float32', Float32Array.from(values), dims);
const softplus = (u) => Math.log1p(Math.exp(u));
const sigmoid = (u) => 1 / (1 + Math.exp(-u));

// Known value 1: one head, headdim 1, dstate 1, no options: H_t = exp(d_t A) H_{t-1} + d_t x_t B_t,
// y_t = H_t C_t, with d = dt (no softplus) and A = -1.
const one = {
  inputs: { x: f32([1, 2, 3], [1, 3, 1, 1]), dt: f32([0.5, 1, 0.25], [1, 3, 1]), A: f32([-1], [1]), B: f32([1, 0.5, 2], [1, 3, 1, 1]), C: f32([1, 2, -1], [1, 3, 1, 1]) },
  options: {},
  expected() {
    const H1 = 0.5 * 1 * 1;
    const H2 = Math.exp(-1) * H1 + 1 * 2 * 0.5;
    const H3 = Math.exp(-0.25) * H2 + 0.25 * 3 * 2;
    return { y: [H1 * 1, H2 * 2, H3 * -1], finalStates: [H3] };
  },
};

// Known value 2: headdim 2, dstate 1, with dtBias and softplus, initial states, D per head and the z gate:
// d_t = softplus(dt_t + 0.5), A = -2, y_t,i = (H_t,i C_t + D x_t,i) * z_t,i * sigmoid(z_t,i).
const two = {
  inputs: {
    x: f32([1, -1, 2, 0.5], [1, 2, 1, 2]),
    dt: f32([0, 1], [1, 2, 1]),
    A: f32([-2], [1]),
    B: f32([1, 2], [1, 2, 1, 1]),
    C: f32([0.5, -1], [1, 2, 1, 1]),
    D: f32([0.5], [1]),
    z: f32([1, -2, 0, 3], [1, 2, 1, 2]),
    dtBias: f32([0.5], [1]),
    initialStates: f32([0.25, -0.5], [1, 1, 2, 1]),
  },
  options: { dtSoftplus: true, returnFinalStates: true },
  expected() {
    const x = [[1, -1], [2, 0.5]], B = [1, 2], C = [0.5, -1], z = [[1, -2], [0, 3]];
    const d = [softplus(0.5), softplus(1.5)];
    let H = [0.25, -0.5];
    const y = [];
    for (let t = 0; t < 2; t++) {
      H = H.map((h, i) => Math.exp(-2 * d[t]) * h + d[t] * x[t][i] * B[t]);
      for (let i = 0; i < 2; i++) y.push((H[i] * C[t] + 0.5 * x[t][i]) * z[t][i] * sigmoid(z[t][i]));
    }
    return { y, finalStates: H };
  },
};

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

  for (const [name, c] of Object.entries({ one, two })) {
    const want = c.expected();
    const sync = ssdSync(c.inputs, { ...c.options, returnFinalStates: true });
    close(sync.y.data, want.y, `${name}: ssdSync y`);
    close(sync.finalStates.data, want.finalStates, `${name}: ssdSync finalStates`);
    for (const device of ['cpu', 'auto']) {
      const out = await ssd(c.inputs, { ...c.options, returnFinalStates: true, device: b.cuda.available && device === 'auto' ? 'cpu' : device });
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
