// Known values for the checks of a built or installed addon (test/install/smoke.js,
// test/install/runtime-smoke.mjs, scripts/check-cmake-build.js): small cases whose outputs are
// computed here in float64 by writing the recurrence out by hand, independent of the package.
// Plain data (values and dims), so each caller wraps them in whatever it feeds the addon.
// CommonJS with a .cjs name, so that Node.js, Bun and Deno all load it the same way.
'use strict';
const assert = require('node:assert/strict');

const softplus = (u) => Math.log1p(Math.exp(u));
const sigmoid = (u) => 1 / (1 + Math.exp(-u));
const f32 = (values, dims) => ({ values, dims });

// Case one: one head, headdim 1, dstate 1, no options: H_t = exp(d_t A) H_{t-1} + d_t x_t B_t,
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

// Case two: headdim 2, dstate 1, with dtBias and softplus, initial states, D per head and the z gate:
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

const cases = { one, two };

/** Asserts that `actual` matches the float64 `expected` to float32 accuracy (2e-6 relative, or absolute below 1). */
function close(actual, expected, what) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const tolerance = 2e-6 * Math.max(1, Math.abs(expected[i]));
    assert.ok(Number.isFinite(actual[i]) && Math.abs(actual[i] - expected[i]) <= tolerance, `${what}[${i}]: ${actual[i]} vs ${expected[i]}`);
  }
}

/** A case's inputs as the package's float32 Tensors (`Tensor` is the package's class). */
function tensors(Tensor, inputs) {
  return Object.fromEntries(Object.entries(inputs).map(([name, t]) => [name, new Tensor('float32', Float32Array.from(t.values), t.dims)]));
}

/**
 * The step inputs of token `t` of a case (batch 1): x, dt, B, C and z sliced at t with the sequence
 * axis dropped, A, D and dtBias as they are; the state starts from initialStates (or zeros) and, stepped
 * over every token, gives the forward's y token by token and its final states.
 */
function tokenInputs(inputs, t) {
  const out = {};
  for (const [name, v] of Object.entries(inputs)) {
    if (name === 'initialStates') continue;
    if (['x', 'dt', 'B', 'C', 'z'].includes(name)) {
      const size = v.dims.slice(2).reduce((a, b) => a * b, 1);
      out[name] = f32(v.values.slice(t * size, (t + 1) * size), [1, ...v.dims.slice(2)]);
    } else {
      out[name] = v;
    }
  }
  return out;
}

/** A case's initial state for the step, of dims (1, nheads, headdim, dstate). */
function initialState(inputs) {
  if (inputs.initialStates) return inputs.initialStates;
  const [, , h, p] = inputs.x.dims;
  const n = inputs.B.dims[3];
  return f32(new Array(h * p * n).fill(0), [1, h, p, n]);
}

module.exports = { cases, close, tensors, tokenInputs, initialState };
