// Runs the calls of test/cuda/sm90.cuda.test.ts on the sm_90a kernel (SSD_KERNELS_FORWARD_PATH=sm90),
// one at a time with a time limit each, printing each one's name before it starts, then its time and
// its relative L2 distance to the sm_80 kernels' result: a device-side check that finds which call
// hangs, where jest would only report a timeout. The process exits at the first failure.
//   node bench/cuda/sm90_probe.js        (after npm run build:ts; needs a compute capability 9.0 GPU)
'use strict';
const { Tensor, ssd } = require('../../dist/lib/index');
const { Random, makeExample } = require('../../dist/lib/examples');
const { relativeL2 } = require('../../dist/lib/reference');
const { withForwardPath } = require('../../dist/lib/cuda-path');

const rng = new Random(9009);
const G = (over) => ({ batch: 2, seqlen: 200, nheads: 4, headdim: 64, ngroups: 1, dstate: 128, ...over });
const every = { dtSoftplus: true, dtLimit: [0.001, 0.5], returnUngated: true, chunkSize: 256 };
// [name, sizes, example options, call options, packed lengths]: the calls of test/cuda/sm90.cuda.test.ts
const cases = [
  ['b2 L70 bf16, no z (the test file\'s first call)', G({ seqlen: 70 }), { dtype: 'bfloat16' }, {}],
  ['b2 L1 bf16 every option', G({ seqlen: 1 }), { dtype: 'bfloat16', D: 'channel', z: true, dtBias: true, initialStates: true }, every],
  ['b2 L63 bf16 every option', G({ seqlen: 63 }), { dtype: 'bfloat16', D: 'channel', z: true, dtBias: true, initialStates: true }, every],
  ['b2 L65 bf16 every option', G({ seqlen: 65 }), { dtype: 'bfloat16', D: 'channel', z: true, dtBias: true, initialStates: true }, every],
  ['b2 L333 n64 bf16 g2', G({ seqlen: 333, dstate: 64, ngroups: 2 }), { dtype: 'bfloat16', z: true }, { chunkSize: 128 }],
  ['b2 L333 n128 f16 g2', G({ seqlen: 333, ngroups: 2 }), { dtype: 'float16', z: true }, { chunkSize: 128 }],
  ['b2 L333 n64 f16 g2', G({ seqlen: 333, dstate: 64, ngroups: 2 }), { dtype: 'float16', z: true }, { chunkSize: 128 }],
  ['packed 0,1,63,64,65,200,0', G({ batch: 1, seqlen: 393 }), { dtype: 'bfloat16', z: true, dtBias: true }, {}, [0, 1, 63, 64, 65, 200, 0]],
  ['b1 L4096 h32 bf16 z', G({ batch: 1, seqlen: 4096, nheads: 32 }), { dtype: 'bfloat16', z: true }, {}],
];

(async () => {
  for (const [name, config, example, extra, lengths] of cases) {
    const { inputs } = makeExample(rng, config, example);
    if (lengths) {
      const cu = new Int32Array(lengths.length + 1);
      lengths.forEach((len, k) => (cu[k + 1] = cu[k] + len));
      inputs.cuSeqlens = new Tensor('int32', cu, [cu.length]);
    }
    const options = { dtSoftplus: true, device: 'cuda', returnFinalStates: true, ...extra };
    const ref = await withForwardPath('sm80', () => ssd(inputs, options));
    console.log(`${name}: running`);
    const t0 = Date.now();
    try {
      const out = await withForwardPath('sm90', () => ssd(inputs, options), 20000);
      const y = out.y.toFloat32(), r = ref.y.toFloat32();
      console.log(`${name}: ${Date.now() - t0} ms, y relL2 to sm80 ${relativeL2(y, r).toExponential(2)}, states ${relativeL2(out.finalStates.toFloat32(), ref.finalStates.toFloat32()).toExponential(2)}`);
    } catch (err) {
      console.log(`${name}: FAILED ${err.message}`);
      process.exit(1);
    }
  }
})();
