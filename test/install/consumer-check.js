#!/usr/bin/env node
// Run by scripts/ci-package.sh after building the example consumer (test/abi-consumer) against the
// installed package: the forward through the C function table must give ssdSync()'s bits, and the
// known values of the smoke test's first case.
'use strict';
const assert = require('node:assert/strict');
const { Buffer } = require('node:buffer');
const path = require('node:path');
const { ssdSync, Tensor } = require('ssd-kernels');
const { getNativeApi } = require('ssd-kernels/native');

const consumer = require(path.resolve(process.argv[2] || 'consumer'));
const api = getNativeApi();
const info = consumer.info(api);
assert.equal(info.version, require('ssd-kernels/package.json').version);

// A deterministic example with every size distinct: b 2, L 19, h 4, p 3, g 2, n 5.
const [b, L, h, p, g, n] = [2, 19, 4, 3, 2, 5];
const wave = (count, k) => Float32Array.from({ length: count }, (_, i) => Math.sin(0.7 * i + k));
const inputs = {
  x: new Tensor('float32', wave(b * L * h * p, 1), [b, L, h, p]),
  dt: new Tensor('float32', wave(b * L * h, 2).map((v) => v - 2), [b, L, h]),
  A: new Tensor('float32', Float32Array.from({ length: h }, (_, i) => -(i + 1)), [h]),
  B: new Tensor('float32', wave(b * L * g * n, 3), [b, L, g, n]),
  C: new Tensor('float32', wave(b * L * g * n, 4), [b, L, g, n]),
  D: new Tensor('float32', wave(h, 5), [h]),
};
const options = { dtSoftplus: true, returnFinalStates: true, chunkSize: 16 };
const expected = ssdSync(inputs, options);
const y = new Float32Array(b * L * h * p);
const finalStates = new Float32Array(b * h * p * n);
const r = consumer.forward(api, {
  dims: [b, L, h, p, g, n], chunkSize: 16, dtSoftplus: true,
  x: inputs.x.data, dt: inputs.dt.data, A: inputs.A.data, B: inputs.B.data, C: inputs.C.data, D: inputs.D.data,
  y, finalStates,
});
assert.deepEqual(r, { status: 0, message: '' });
assert.ok(y.some((v) => v !== 0) && y.every(Number.isFinite), 'y is finite and not all zero');
assert.deepEqual(Buffer.from(y.buffer), Buffer.from(expected.y.data.buffer), 'y: the same bits as ssdSync');
assert.deepEqual(Buffer.from(finalStates.buffer), Buffer.from(expected.finalStates.data.buffer), 'finalStates: the same bits as ssdSync');

// Known values: H1 = 0.5, H2 = 0.5/e + 1, H3 = exp(-1/4) H2 + 1.5; y = (H1, 2 H2, -H3).
const y1 = new Float32Array(3);
const known = consumer.forward(api, {
  dims: [1, 3, 1, 1, 1, 1], chunkSize: 16,
  x: Float32Array.of(1, 2, 3), dt: Float32Array.of(0.5, 1, 0.25), A: Float32Array.of(-1), B: Float32Array.of(1, 0.5, 2), C: Float32Array.of(1, 2, -1), y: y1,
});
assert.deepEqual(known, { status: 0, message: '' });
const H2 = 0.5 / Math.E + 1;
const want = [0.5, 2 * H2, -(Math.exp(-0.25) * H2 + 1.5)];
want.forEach((v, i) => assert.ok(Math.abs(y1[i] - v) <= 2e-6 * Math.abs(v), `y[${i}] ${y1[i]} vs ${v}`));
console.log(`consumer check passed: table ABI ${info.abiVersion}, ${info.structSize} bytes, version ${info.version}`);
