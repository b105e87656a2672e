/**
 * Typed arrays on a SharedArrayBuffer wherever a host TypedArray is taken: the inputs of ssd(),
 * ssdSync(), ssdBackward(), ssdBackwardSync(), ssdStep() and ssdStepSync(), options.out, the step's
 * in-place state (whole, or rows picked by stateIndices), in every dtype (bfloat16 and float16 as
 * Uint16Array, Float16Array where the runtime has one), bitwise equal to the same calls on ordinary
 * ArrayBuffers; two worker_threads stepping disjoint rows of one shared state cache, bitwise equal to
 * the same steps on one thread; and the TypeErrors for arrays the package cannot take (a resizable
 * ArrayBuffer, a growable SharedArrayBuffer, a detached buffer, a DataView, the wrong element type).
 * Device uploads and downloads of shared arrays are in the GPU suite (test/cuda/memory.cuda.test.ts).
 */
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import {
  Tensor,
  ssd,
  ssdBackward,
  ssdBackwardSync,
  ssdStep,
  ssdStepSync,
  ssdSync,
  type SsdBackwardOptions,
  type SsdGrads,
  type SsdOptions,
  type SsdStepOptions,
  type TensorData,
} from '../lib/index';
import { makeStepExample } from '../lib/reference-step';
import { sameBits } from './helpers';
import { bufferOf, bytesOf, copyOf, mapTensors, onShared, sameBytes, zeroed } from './memory-helpers';
import { Random, makeExample } from './reference';

const rng = new Random(19002);
const F16 = (globalThis as { Float16Array?: new (buffer: ArrayBufferLike) => TensorData }).Float16Array;

function expectShared(t: Tensor): void {
  expect(Object.prototype.toString.call(t.data.buffer)).toBe('[object SharedArrayBuffer]');
}

describe('SharedArrayBuffer inputs and outputs give the bits of ArrayBuffer ones', () => {
  const config = { batch: 2, seqlen: 50, nheads: 4, headdim: 8, ngroups: 2, dstate: 16 };
  const options: SsdOptions = { dtSoftplus: true, chunkSize: 16, returnFinalStates: true, returnUngated: true };
  const backwardOptions: SsdBackwardOptions = { dtSoftplus: true, chunkSize: 16 };

  for (const dtype of ['float32', 'bfloat16', 'float16'] as const) {
    const example = makeExample(rng, config, { dtype, D: 'channel', z: true, dtBias: true, initialStates: true, seqStarts: [20] });
    const plain = example.inputs;
    const shared = mapTensors(plain, onShared);

    test(`${dtype}: ssdSync and ssd with every input on a SharedArrayBuffer`, async () => {
      expectShared(shared.x);
      const expected = ssdSync(plain, options);
      for (const got of [ssdSync(shared, options), await ssd(shared, options)]) {
        expect(sameBits(got.y, expected.y)).toBe(true);
        expect(sameBits(got.finalStates!, expected.finalStates!)).toBe(true);
        expect(sameBits(got.yUngated!, expected.yUngated!)).toBe(true);
      }
    });

    test(`${dtype}: options.out on SharedArrayBuffers is written in place, sync and async`, async () => {
      const expected = ssdSync(plain, options);
      for (const run of [(o: SsdOptions) => Promise.resolve(ssdSync(shared, o)), (o: SsdOptions) => ssd(shared, o)]) {
        const out = { y: zeroed(onShared(expected.y)), finalStates: zeroed(onShared(expected.finalStates!)), yUngated: zeroed(onShared(expected.yUngated!)) };
        const got = await run({ ...options, out });
        expect(got.y).toBe(out.y);
        expect(got.finalStates).toBe(out.finalStates);
        expect(sameBits(out.y, expected.y)).toBe(true);
        expect(sameBits(out.finalStates, expected.finalStates!)).toBe(true);
        expect(sameBits(out.yUngated, expected.yUngated!)).toBe(true);
        expectShared(out.y);
      }
    });

    test(`${dtype}: ssdBackwardSync and ssdBackward with inputs, grads and options.out on SharedArrayBuffers`, async () => {
      const { y, finalStates } = ssdSync(plain, options);
      const grads = { dy: y, dFinalStates: finalStates! };
      const expected = ssdBackwardSync(plain, grads, backwardOptions);
      const sharedGrads = mapTensors(grads, onShared);
      const names = Object.keys(expected) as (keyof SsdGrads)[];
      for (const got of [ssdBackwardSync(shared, sharedGrads, backwardOptions), await ssdBackward(shared, sharedGrads, backwardOptions)]) {
        for (const name of names) expect([name, sameBits(got[name]!, expected[name]!)]).toEqual([name, true]);
      }
      const out = mapTensors(expected, (t) => zeroed(onShared(t)));
      const got = await ssdBackward(shared, sharedGrads, { ...backwardOptions, out });
      for (const name of names) {
        expect(got[name]).toBe(out[name]);
        expect([name, sameBits(out[name]!, expected[name]!)]).toEqual([name, true]);
      }
    });
  }

  test('cuSeqlens and varlenStates (options.out) on SharedArrayBuffers', async () => {
    const example = makeExample(rng, { ...config, batch: 1 }, { D: 'head', z: true });
    const cuSeqlens = new Tensor('int32', Int32Array.from([0, 17, 17, 50]), [4]);
    const o: SsdOptions = { chunkSize: 16, returnVarlenStates: true };
    const expected = ssdSync({ ...example.inputs, cuSeqlens }, o);
    const shared = mapTensors({ ...example.inputs, cuSeqlens }, onShared);
    const varlenStates = zeroed(onShared(expected.varlenStates!));
    const got = await ssd(shared, { ...o, out: { varlenStates } });
    expect(sameBits(got.y, expected.y)).toBe(true);
    expect(sameBits(varlenStates, expected.varlenStates!)).toBe(true);
  });

  for (const stateType of ['float32', 'bfloat16'] as const) {
    for (const indices of [undefined, [5, -1, 0]]) {
      test(`the step in place on a ${stateType} state on a SharedArrayBuffer${indices ? ' (rows picked by stateIndices)' : ''}, sync and async, y in options.out`, async () => {
        const cfg = { batch: 3, nheads: 4, headdim: 8, ngroups: 2, dstate: 16, stateRows: indices ? 7 : 3 };
        const { state, inputs } = makeStepExample(rng, cfg, { stateType, D: 'head', z: true, dtBias: true, stateIndices: indices });
        const o: SsdStepOptions = { dtSoftplus: true };
        const plainState = copyOf(state);
        const expected = ssdStepSync(plainState, inputs, o);
        const sharedInputs = mapTensors(inputs, onShared);
        const syncState = onShared(state);
        expect(sameBits(ssdStepSync(syncState, sharedInputs, o).y, expected.y)).toBe(true);
        expect(sameBits(syncState, plainState)).toBe(true);
        const asyncState = onShared(state);
        const y = zeroed(onShared(expected.y));
        const got = await ssdStep(asyncState, sharedInputs, { ...o, out: { y } });
        expect(got.y).toBe(y);
        expect(sameBits(y, expected.y)).toBe(true);
        expect(sameBits(asyncState, plainState)).toBe(true);
        expectShared(asyncState);
      });
    }
  }

  const f16 = F16 ? test : test.skip;
  if (!F16) {
    test(`Float16Array: skipped, Node.js ${process.version} has no globalThis.Float16Array (float16 goes as a Uint16Array, tested above)`, () => {
      expect(F16).toBeUndefined();
    });
  }
  f16('Float16Array on a SharedArrayBuffer for float16 data (inputs and options.out), sync and async', async () => {
    const Ctor = F16!;
    const example = makeExample(rng, config, { dtype: 'float16', z: true });
    const asF16 = (t: Tensor): Tensor => {
      if (t.type !== 'float16') return onShared(t);
      const s = onShared(t);
      return new Tensor('float16', new Ctor(bufferOf(s)), t.dims);
    };
    const expected = ssdSync(example.inputs, { chunkSize: 16 });
    const inputs = mapTensors(example.inputs, asF16);
    const y = asF16(expected.y);
    expect(ssdSync(inputs, { chunkSize: 16 }).y.toFloat32()).toEqual(expected.y.toFloat32());
    await ssd(inputs, { chunkSize: 16, out: { y } });
    expect(y.data).toBeInstanceOf(Ctor);
    expect(sameBits(y, expected.y)).toBe(true);
  });
});

describe('two worker_threads step disjoint rows of one shared state cache', () => {
  const entry = path.join(__dirname, '..', 'dist', 'lib', 'index.js');
  // Each worker steps its own rows (stateIndices) token after token with ssdStep, in place on the one
  // cache both were given (a Float32Array or Uint16Array on a SharedArrayBuffer), and sends back y.
  const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const { ssdStep, Tensor } = require(workerData.entry);
(async () => {
  const { cache, cacheDims, stateType, tokens, options } = workerData;
  const state = new Tensor(stateType, cache, cacheDims);
  const ys = [];
  for (const t of tokens) {
    const inputs = {};
    for (const [name, { type, data, dims }] of Object.entries(t)) inputs[name] = new Tensor(type, data, dims);
    const { y } = await ssdStep(state, inputs, options);
    ys.push(y.data);
  }
  parentPort.postMessage({ ys });
})().catch((err) => parentPort.postMessage({ error: String((err && err.stack) || err) }));
`;

  type Plain = Record<string, { type: string; data: TensorData; dims: readonly number[] }>;
  function plain(inputs: Record<string, Tensor>): Plain {
    const out: Plain = {};
    for (const [k, t] of Object.entries(inputs)) out[k] = { type: t.type, data: t.data, dims: t.dims };
    return out;
  }

  function run(data: Record<string, unknown>): Promise<{ ys?: TensorData[]; error?: string }> {
    return new Promise((resolve, reject) => {
      const worker = new Worker(workerSource, { eval: true, workerData: data });
      worker.once('message', (m: { ys?: TensorData[]; error?: string }) => {
        void worker.terminate();
        resolve(m);
      });
      worker.once('error', reject);
    });
  }

  for (const stateType of ['float32', 'bfloat16'] as const) {
    test(`${stateType} cache of 9 rows: worker 0 steps rows 0, 2, 4 and 6, worker 1 rows 7, 5, 3 and 1 (row 8 untouched), 12 tokens each`, async () => {
      const rows = 9;
      const cfg = { batch: 4, nheads: 4, headdim: 16, ngroups: 2, dstate: 32, stateRows: rows };
      const rowsOf = [
        [0, 2, 4, 6],
        [7, 5, 3, 1],
      ];
      const options: SsdStepOptions = { dtSoftplus: true };
      const initial = makeStepExample(rng, cfg, { stateType }).state;
      const tokens = rowsOf.map((indices) =>
        Array.from({ length: 12 }, () => makeStepExample(rng, cfg, { D: 'head', z: true, dtBias: true, stateIndices: indices }).inputs),
      );
      // one thread: the same steps, worker 0's then worker 1's for each token, on a private copy
      const single = copyOf(initial);
      const singleYs: Tensor[][] = [[], []];
      for (let t = 0; t < 12; t++) for (const w of [0, 1]) singleYs[w].push(ssdStepSync(single, tokens[w][t], options).y);

      const shared = onShared(initial);
      const results = await Promise.all(
        [0, 1].map((w) => run({ entry, cache: shared.data, cacheDims: shared.dims, stateType, tokens: tokens[w].map((t) => plain(t as unknown as Record<string, Tensor>)), options })),
      );
      for (const [w, r] of results.entries()) {
        expect(r.error).toBeUndefined();
        expect(r.ys).toHaveLength(12);
        for (let t = 0; t < 12; t++) expect(sameBits(new Tensor(singleYs[w][t].type, r.ys![t], singleYs[w][t].dims), singleYs[w][t])).toBe(true);
      }
      expect(sameBits(shared, single)).toBe(true);
      // row 8 was stepped by nobody
      const rowBytes = cfg.nheads * cfg.headdim * cfg.dstate * (stateType === 'float32' ? 4 : 2);
      expect(sameBytes(bytesOf(shared).subarray(8 * rowBytes), bytesOf(initial).subarray(8 * rowBytes))).toBe(true);
    });
  }
});

describe('arrays the package cannot take are TypeErrors that name the argument, what was expected and what came', () => {
  const config = { batch: 1, seqlen: 8, nheads: 2, headdim: 4, ngroups: 1, dstate: 4 };

  function thrown(fn: () => unknown): Error {
    try {
      fn();
    } catch (err) {
      return err as Error;
    }
    throw new Error('expected a throw');
  }
  function expectTypeError(fn: () => unknown, ...parts: string[]): void {
    const err = thrown(fn);
    expect(err).toBeInstanceOf(TypeError);
    expect(err.message).toMatch(/^Expected .+ for .+ but received .+$/);
    for (const part of parts) expect(err.message).toContain(part);
  }
  const detach = (data: TensorData): void => void structuredClone(data.buffer, { transfer: [data.buffer as ArrayBuffer] });

  test('a resizable ArrayBuffer: new Tensor (data) and a plain tensor object (inputs.x.data)', () => {
    const rab = new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer)(256, { maxByteLength: 512 });
    expectTypeError(() => new Tensor('float32', new Float32Array(rab), [64]), 'for data', 'fixed-length ArrayBuffer or SharedArrayBuffer', 'a Float32Array of length 64 on a resizable ArrayBuffer');
    const { inputs } = makeExample(rng, config);
    expectTypeError(
      () => ssdSync({ ...inputs, x: { type: 'float32', dims: [1, 8, 2, 4], data: new Float32Array(rab, 0, 64) } } as never),
      'for inputs.x.data',
      'on a resizable ArrayBuffer',
    );
  });

  test('a growable SharedArrayBuffer', () => {
    const gsab = new (SharedArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => SharedArrayBuffer)(64, { maxByteLength: 128 });
    expectTypeError(() => new Tensor('bfloat16', new Uint16Array(gsab), [32]), 'for data', 'a Uint16Array of length 32 on a growable SharedArrayBuffer');
  });

  test('a detached buffer: when the tensor is made, and when a tensor made earlier is passed (input, state, out)', async () => {
    const data = new Float32Array(8);
    detach(data);
    expectTypeError(() => new Tensor('float32', data, [8]), 'for data', 'on a detached ArrayBuffer');
    const { inputs } = makeExample(rng, config);
    detach(inputs.dt.data);
    expectTypeError(() => ssdSync(inputs), 'for inputs.dt', 'a Tensor (batch, seqlen, nheads)', 'whose data (a Float32Array of length 0) is on a detached ArrayBuffer');
    await expect(ssd(inputs)).rejects.toThrow(/for inputs\.dt but received a Tensor whose data .* detached/);
    const step = makeStepExample(rng, { batch: 1, nheads: 2, headdim: 4, ngroups: 1, dstate: 4 });
    detach(step.state.data);
    expectTypeError(() => ssdStepSync(step.state, step.inputs), 'for state', 'detached');
    const fresh = makeStepExample(rng, { batch: 1, nheads: 2, headdim: 4, ngroups: 1, dstate: 4 });
    const y = new Tensor('float32', new Float32Array(8), [1, 2, 4]);
    detach(y.data);
    expectTypeError(() => ssdStepSync(fresh.state, fresh.inputs, { out: { y } }), 'for options.out.y', 'detached');
    expectTypeError(() => y.toDevice(), 'for toDevice()', 'detached');
  });

  test('a DataView, and arrays of the wrong element type, name the argument', () => {
    const { inputs } = makeExample(rng, config);
    expectTypeError(() => new Tensor('float32', new DataView(new ArrayBuffer(64)) as never, [16]), 'for data', 'a Float32Array', 'a DataView');
    expectTypeError(() => ssdSync({ ...inputs, B: { type: 'float32', dims: [1, 8, 1, 4], data: new DataView(new ArrayBuffer(128)) } } as never), 'for inputs.B.data', 'a DataView');
    expectTypeError(() => ssdSync({ ...inputs, x: { type: 'bfloat16', dims: [1, 8, 2, 4], data: new Int16Array(64) } } as never), 'for inputs.x.data', 'a Uint16Array of bfloat16 bit patterns', 'a Int16Array of length 64');
    expectTypeError(() => ssdSync({ ...inputs, A: { type: 'float32', dims: [2], data: new Float64Array(2) } } as never), 'for inputs.A.data', 'a Float32Array', 'a Float64Array of length 2');
    expectTypeError(() => new Tensor('float16', new Int16Array(new SharedArrayBuffer(8)) as never, [4]), 'for data', 'a Uint16Array of float16 bit patterns', 'a Int16Array');
  });
});
