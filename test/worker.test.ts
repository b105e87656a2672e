/**
 * The addon is context-aware: it loads and runs inside worker_threads, several at once, and gives
 * the same bits there as on the main thread. Workers run the compiled package (dist/), which
 * `npm test` builds before jest starts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { ssdSync } from '../lib/index';
import { Random, makeExample } from './reference';

const entry = path.join(__dirname, '..', 'dist', 'lib', 'index.js');

const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const { ssd, ssdSync, Tensor, backends } = require(workerData.entry);
(async () => {
  const i = workerData.inputs;
  const inputs = {
    x: new Tensor('float32', i.x, i.xDims),
    dt: new Tensor('float32', i.dt, i.dtDims),
    A: new Tensor('float32', i.A, i.ADims),
    B: new Tensor('float32', i.B, i.BDims),
    C: new Tensor('float32', i.C, i.CDims),
  };
  const options = { dtSoftplus: true, returnFinalStates: true };
  const sync = ssdSync(inputs, options);
  const async_ = await ssd(inputs, options);
  parentPort.postMessage({ isa: backends().cpu.isa, ySync: sync.y.data, yAsync: async_.y.data, states: async_.finalStates.data });
})().catch((err) => parentPort.postMessage({ error: String(err && err.stack || err) }));
`;

interface WorkerResult {
  isa?: string;
  ySync?: Float32Array;
  yAsync?: Float32Array;
  states?: Float32Array;
  error?: string;
}

function runInWorker(inputs: Record<string, unknown>): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(workerSource, { eval: true, workerData: { entry, inputs } });
    worker.once('message', (m: WorkerResult) => {
      void worker.terminate();
      resolve(m);
    });
    worker.once('error', reject);
  });
}

describe('worker_threads', () => {
  test('the compiled package exists (npm test builds it before jest)', () => {
    expect(fs.existsSync(entry)).toBe(true);
  });

  test('four workers at once compute the same bits as the main thread', async () => {
    const { inputs } = makeExample(new Random(99), { batch: 2, seqlen: 77, nheads: 4, headdim: 16, ngroups: 2, dstate: 24 }, { D: 'none' });
    const main = ssdSync(inputs, { dtSoftplus: true, returnFinalStates: true });
    const plain = {
      x: inputs.x.data, xDims: inputs.x.dims,
      dt: inputs.dt.data, dtDims: inputs.dt.dims,
      A: inputs.A.data, ADims: inputs.A.dims,
      B: inputs.B.data, BDims: inputs.B.dims,
      C: inputs.C.data, CDims: inputs.C.dims,
    };
    const results = await Promise.all([0, 1, 2, 3].map(() => runInWorker(plain)));
    const mainY = main.y.data as Float32Array;
    const mainStates = main.finalStates!.data as Float32Array;
    for (const r of results) {
      expect(r.error).toBeUndefined();
      expect(Array.from(r.ySync!)).toEqual(Array.from(mainY));
      expect(Array.from(r.yAsync!)).toEqual(Array.from(mainY));
      expect(Array.from(r.states!)).toEqual(Array.from(mainStates));
    }
  });
});
