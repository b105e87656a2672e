#!/usr/bin/env node
// Bitwise fingerprints of the package's outputs on a fixed set of inputs: the forward, the backward
// (recomputing and with yUngated kept) and the decode step, on every dtype and option, on one
// device. Two builds that print the same lines compute the same bits. Only the public API is used,
// so an older build's dist/ can be run the same way.
//   node bench/cuda/hashes.js [--lib DIST_LIB_DIR] [--device cuda|cpu]
// Prints one line per case and output: "<case> <output> <sha256 of its bytes, 16 hex digits>".
// bench/cuda/fingerprints.txt holds these lines for the CUDA build of the last change that kept every
// output's bits (bench/NOTES.md says which run recorded them).
'use strict';
const crypto = require('node:crypto');
const path = require('node:path');

const argv = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : fallback;
};
const lib = require(path.resolve(arg('--lib', path.join(__dirname, '..', '..', 'dist', 'lib'))));
const device = arg('--device', 'cuda');
const { Tensor, ssd, ssdBackward, ssdStep } = lib;

// A small seeded generator (mulberry32 and Box-Muller), independent of the package's own.
function rng(seed) {
  let s = seed >>> 0;
  const uniform = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(uniform() || 1e-12)) * Math.cos(2 * Math.PI * uniform());
  return { uniform, normals: (n, scale = 1, shift = 0) => Float32Array.from({ length: n }, () => shift + scale * normal()) };
}

const hash = (t) => crypto.createHash('sha256').update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)).digest('hex').slice(0, 16);
const host = async (t) => (t.location === 'cuda' ? t.toHost() : t);

function inputs(r, c, o) {
  const { b, L, h, p, g, n } = c;
  const T = (values, dims) => Tensor.fromFloat32(o.dtype, values, dims);
  const F = (values, dims) => new Tensor('float32', values, dims);
  const x = {
    x: T(r.normals(b * L * h * p), [b, L, h, p]),
    dt: T(r.normals(b * L * h, 1, -4), [b, L, h]),
    A: F(Float32Array.from({ length: h }, () => -Math.exp(r.uniform() * Math.log(16))), [h]),
    B: T(r.normals(b * L * g * n), [b, L, g, n]),
    C: T(r.normals(b * L * g * n), [b, L, g, n]),
  };
  if (o.D === 'head') x.D = F(r.normals(h), [h]);
  if (o.D === 'channel') x.D = F(r.normals(h * p), [h, p]);
  if (o.z) x.z = T(r.normals(b * L * h * p), [b, L, h, p]);
  if (o.dtBias) x.dtBias = F(r.normals(h, 0.1), [h]);
  if (o.init) x.initialStates = F(r.normals(b * h * p * n), [b, h, p, n]);
  if (o.seq) {
    const s = new Int32Array(b * L);
    for (let i = 0; i < b; i++) for (let t = 0; t < L; t++) s[i * L + t] = Math.floor((3 * t) / L);
    x.seqIdx = new Tensor('int32', s, [b, L]);
  }
  if (o.cu) x.cuSeqlens = new Tensor('int32', Int32Array.from([0, Math.floor(L / 3), Math.floor(L / 3), L]), [4]);
  return x;
}

// Sizes: the fixed-shape kernels (headdim 64, dstate 128 / 64) and any-size ones (odd sizes,
// a partial last chunk); each with every option on or off across the list below.
const shapes = {
  fixed: { b: 2, L: 300, h: 4, p: 64, g: 2, n: 128, Q: 64 },
  fixed64: { b: 1, L: 257, h: 4, p: 64, g: 1, n: 64, Q: 256 },
  odd: { b: 2, L: 100, h: 3, p: 24, g: 1, n: 40, Q: 32 },
};
const optionSets = [
  { D: 'head', dtSoftplus: true },
  { D: 'channel', z: true, dtBias: true, dtSoftplus: true, final: true },
  { z: true, dtLimit: [0.01, 0.05], init: true, final: true, ungated: true },
  { D: 'head', seq: true, dtSoftplus: true, final: true, z: true, ungated: true },
  { D: 'head', cu: true, dtSoftplus: true, varlen: true },
];

async function main() {
  const lines = [];
  const put = async (name, what, t) => lines.push(`${name} ${what} ${hash(await host(t))}`);
  let seed = 1;
  for (const dtype of ['float32', 'bfloat16', 'float16']) {
    for (const [shapeName, c] of Object.entries(shapes)) {
      for (const [k, o] of optionSets.entries()) {
        if (o.cu && c.b !== 1) continue;
        const name = `${dtype}/${shapeName}/opts${k}`;
        const r = rng(seed++);
        const x = inputs(r, c, { ...o, dtype });
        const options = { chunkSize: c.Q, dtSoftplus: !!o.dtSoftplus, device };
        if (o.dtLimit) options.dtLimit = o.dtLimit;
        const fwdOptions = { ...options, returnFinalStates: !!o.final, returnVarlenStates: !!o.varlen, returnUngated: !!o.ungated };
        const out = await ssd(x, fwdOptions);
        for (const key of ['y', 'finalStates', 'varlenStates', 'yUngated']) if (out[key]) await put(name, `fwd.${key}`, out[key]);
        if (o.cu) continue; // the backward takes seqIdx, not cuSeqlens
        const grads = { dy: Tensor.fromFloat32(dtype, r.normals(c.b * c.L * c.h * c.p), [c.b, c.L, c.h, c.p]) };
        if (o.final) grads.dFinalStates = new Tensor('float32', r.normals(c.b * c.h * c.p * c.n), [c.b, c.h, c.p, c.n]);
        const modes = o.ungated ? [['bwd', options], ['bwd-kept', { ...options, yUngated: await host(out.yUngated) }]] : [['bwd', options]];
        for (const [mode, bo] of modes) {
          const g = await ssdBackward(x, grads, bo);
          for (const key of Object.keys(g).sort()) await put(name, `${mode}.${key}`, g[key]);
        }
      }
    }
    // the decode step: fixed and odd sizes, float32 and bfloat16 states
    for (const [k, c] of [{ b: 8, h: 8, p: 64, g: 2, n: 128 }, { b: 3, h: 3, p: 24, g: 1, n: 40 }].entries()) {
      for (const stateType of ['float32', 'bfloat16']) {
        const name = `${dtype}/step${k}/${stateType}`;
        const r = rng(seed++);
        const T = (values, dims) => Tensor.fromFloat32(dtype, values, dims);
        const state = Tensor.fromFloat32(stateType, r.normals(c.b * c.h * c.p * c.n), [c.b, c.h, c.p, c.n]);
        const si = {
          x: T(r.normals(c.b * c.h * c.p), [c.b, c.h, c.p]),
          dt: T(r.normals(c.b * c.h, 1, -4), [c.b, c.h]),
          A: new Tensor('float32', Float32Array.from({ length: c.h }, () => -Math.exp(r.uniform() * Math.log(16))), [c.h]),
          B: T(r.normals(c.b * c.g * c.n), [c.b, c.g, c.n]),
          C: T(r.normals(c.b * c.g * c.n), [c.b, c.g, c.n]),
          D: new Tensor('float32', r.normals(c.h), [c.h]),
          z: T(r.normals(c.b * c.h * c.p), [c.b, c.h, c.p]),
          dtBias: new Tensor('float32', r.normals(c.h, 0.1), [c.h]),
        };
        const { y } = await ssdStep(state, si, { dtSoftplus: true, device }); // a host state: uploaded, stepped, copied back
        await put(name, 'step.y', y);
        await put(name, 'step.state', state);
      }
    }
  }
  process.stdout.write(lines.join('\n') + '\n');
  process.stderr.write(`${lines.length} outputs hashed on ${device}\n`);
}

main().catch((e) => {
  process.stderr.write(`${e.stack || e}\n`);
  process.exit(1);
});
