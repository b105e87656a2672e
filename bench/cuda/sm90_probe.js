// Runs a few small forwards on the sm_90a kernel (SSD_KERNELS_FORWARD_PATH=sm90), one at a time with
// a time limit each, and prints each one's time and its relative L2 distance to the sm_80 kernels'
// result: a device-side check that finds which call hangs, where jest would only report a timeout.
//   node bench/cuda/sm90_probe.js        (after npm run build:ts; needs a compute capability 9.0 GPU)
'use strict';
const { setTimeout } = require('timers');
const { ssd } = require('../../dist/lib/index');
const { Random, makeExample } = require('../../dist/lib/examples');

const rng = new Random(9009);
const cases = [
  ['b2 L70 h4 bf16, no z', { batch: 2, seqlen: 70, nheads: 4, headdim: 64, ngroups: 1, dstate: 128 }, { dtype: 'bfloat16' }],
  ['b2 L1 bf16 z', { batch: 2, seqlen: 1, nheads: 4, headdim: 64, ngroups: 1, dstate: 128 }, { dtype: 'bfloat16', z: true }],
  ['b2 L65 bf16 z init', { batch: 2, seqlen: 65, nheads: 4, headdim: 64, ngroups: 1, dstate: 128 }, { dtype: 'bfloat16', z: true, initialStates: true }],
  ['b2 L333 n64 bf16', { batch: 2, seqlen: 333, nheads: 4, headdim: 64, ngroups: 2, dstate: 64 }, { dtype: 'bfloat16', z: true }],
  ['b2 L333 n128 f16', { batch: 2, seqlen: 333, nheads: 4, headdim: 64, ngroups: 2, dstate: 128 }, { dtype: 'float16', z: true }],
  ['b1 L4096 h32 bf16 z', { batch: 1, seqlen: 4096, nheads: 32, headdim: 64, ngroups: 1, dstate: 128 }, { dtype: 'bfloat16', z: true }],
];

function relL2(a, b) {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { num += (a[i] - b[i]) ** 2; den += b[i] ** 2; }
  return Math.sqrt(num / den);
}

function limited(promise, ms) {
  return Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms).unref())]);
}

(async () => {
  for (const [name, config, example] of cases) {
    const { inputs } = makeExample(rng, config, example);
    const options = { dtSoftplus: true, device: 'cuda', returnFinalStates: true };
    process.env.SSD_KERNELS_FORWARD_PATH = 'sm80';
    const ref = await ssd(inputs, options);
    process.env.SSD_KERNELS_FORWARD_PATH = 'sm90';
    const t0 = Date.now();
    try {
      const out = await limited(ssd(inputs, options), 20000);
      const y = out.y.toFloat32(), r = ref.y.toFloat32();
      console.log(`${name}: ${Date.now() - t0} ms, y relL2 to sm80 ${relL2(y, r).toExponential(2)}, states ${relL2(out.finalStates.toFloat32(), ref.finalStates.toFloat32()).toExponential(2)}`);
    } catch (err) {
      console.log(`${name}: FAILED ${err.message}`);
      process.exit(1);
    }
  }
})();
