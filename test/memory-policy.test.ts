/**
 * The memory policy of asynchronous calls (README, "Memory of asynchronous calls"): a caller who
 * hands an ArrayBuffer away while ssd(), ssdBackward() or ssdStep() runs (structuredClone or
 * postMessage with a transfer list, ArrayBuffer.prototype.transfer() where the runtime has it, or
 * a transfer whose new owner is dropped and collected at once, a WebAssembly memory grown) never
 * makes the package read or write memory it does not own:
 *   - an input handed away: the call resolves with the results of the inputs as they were when it
 *     began, bitwise, and the new owner sees the data it received;
 *   - an output (options.out, the step's state) handed away: the call rejects with ERR_SSD_DETACHED
 *     naming it, the new owner sees the data as it was at the transfer, and the call's other outputs
 *     on ArrayBuffers are not written either;
 * and the process goes on (a later call works). Run under AddressSanitizer by scripts/asan-test.sh,
 * which fails on any report. The CUDA paths (uploads, downloads, host tensors through the GPU) are
 * in the GPU suite, test/cuda/memory.cuda.test.ts.
 */
import {
  SsdError,
  Tensor,
  ssd,
  ssdBackward,
  ssdBackwardSync,
  ssdStep,
  ssdStepSync,
  ssdSync,
  type SsdBackwardOptions,
  type SsdGrads,
  type SsdInputs,
  type SsdOptions,
  type SsdStepInputs,
  type SsdStepOptions,
} from '../lib/index';
import { makeStepExample, type StepExampleConfig } from '../lib/reference-step';
import { sameBits } from './helpers';
import { TRANSFERS, bufferOf, bytesOf, copyOf, mapTensors, onShared, sameBytes, type Transfer } from './memory-helpers';
import { Random, makeExample } from './reference';

const rng = new Random(19004);
const config = { batch: 2, seqlen: 160, nheads: 4, headdim: 16, ngroups: 2, dstate: 16 };
const options: SsdOptions = { dtSoftplus: true, chunkSize: 32, returnFinalStates: true };
const backwardOptions: SsdBackwardOptions = { dtSoftplus: true, chunkSize: 32 };
const stepConfig: StepExampleConfig = { batch: 3, nheads: 4, headdim: 16, ngroups: 2, dstate: 32, stateRows: 6 };
const stepOptions: SsdStepOptions = { dtSoftplus: true };

const available = TRANSFERS.filter((t) => t.run !== undefined);
for (const t of TRANSFERS.filter((t) => t.run === undefined)) {
  test(`${t.name}: skipped, ${t.why}`, () => expect(t.run).toBeUndefined());
}

/** Hands `tensor`'s buffer away; returns what the new owner sees of its first bytes then (undefined: dropped). */
function handAway(transfer: Transfer, tensor: Tensor): { owner: ArrayBuffer | undefined; length: number } {
  const length = tensor.data.byteLength;
  const owner = transfer.run!(bufferOf(tensor));
  expect(tensor.data.byteLength).toBe(0); // detached: the caller no longer owns that memory
  return { owner, length };
}

/** The new owner's first `length` bytes, if there is an owner. */
function ownerBytes(h: { owner: ArrayBuffer | undefined; length: number }): Uint8Array | undefined {
  return h.owner === undefined ? undefined : new Uint8Array(h.owner, 0, h.length).slice();
}

/** Fills with a pattern that no result has, so that any write shows. */
function marked(t: Tensor): Tensor {
  const c = copyOf(t);
  new Uint8Array(c.data.buffer, c.data.byteOffset, c.data.byteLength).fill(0x5a);
  return c;
}

async function expectDetached(pending: Promise<unknown>, name: string): Promise<void> {
  const err = await pending.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SsdError);
  expect((err as SsdError).code).toBe('ERR_SSD_DETACHED');
  expect((err as SsdError).message).toContain(`${name}'s ArrayBuffer was detached`);
}

function forwardExample(): SsdInputs {
  return makeExample(rng, config, { D: 'channel', z: true, dtBias: true, initialStates: true, seqStarts: [70] }).inputs;
}

describe.each(available.map((t) => [t.name, t] as const))('%s', (_name, transfer) => {
  describe('ssd()', () => {
    const example = forwardExample();
    const expected = ssdSync(example, options);

    test.each(Object.keys(example))('inputs.%s handed away mid-call: the results of the inputs as they were', async (name) => {
      const inputs = mapTensors(example, copyOf);
      const tensor = inputs[name as keyof SsdInputs]!;
      const before = bytesOf(tensor);
      const pending = ssd(inputs, options);
      const h = handAway(transfer, tensor);
      const got = await pending;
      expect(sameBits(got.y, expected.y)).toBe(true);
      expect(sameBits(got.finalStates!, expected.finalStates!)).toBe(true);
      const seen = ownerBytes(h);
      if (seen) expect(sameBytes(seen, before)).toBe(true);
    });

    const withUngated: SsdOptions = { ...options, returnUngated: true };
    const full = ssdSync(example, withUngated);
    test.each(['y', 'finalStates', 'yUngated'] as const)('options.out.%s handed away mid-call: ERR_SSD_DETACHED, nothing written', async (field) => {
      const out = { y: marked(full.y), finalStates: marked(full.finalStates!), yUngated: marked(full.yUngated!) };
      const untouched = bytesOf(out.y);
      const pending = ssd(mapTensors(example, copyOf), { ...withUngated, out });
      const h = handAway(transfer, out[field]);
      await expectDetached(pending, `options.out.${field}`);
      const seen = ownerBytes(h);
      if (seen) expect(sameBytes(seen, untouched.subarray(0, h.length))).toBe(true); // as at the transfer: never written
      for (const other of (['y', 'finalStates', 'yUngated'] as const).filter((f) => f !== field)) {
        expect(sameBytes(bytesOf(out[other]), untouched.subarray(0, out[other].data.byteLength))).toBe(true);
      }
      // the process goes on
      expect(sameBits((await ssd(example, withUngated)).y, full.y)).toBe(true);
    });

    test('options.out.varlenStates handed away mid-call (cuSeqlens): ERR_SSD_DETACHED', async () => {
      const inputs = { ...makeExample(rng, { ...config, batch: 1 }, { z: true }).inputs, cuSeqlens: new Tensor('int32', Int32Array.from([0, 60, 160]), [3]) };
      const o: SsdOptions = { chunkSize: 32, returnVarlenStates: true };
      const varlenStates = marked(ssdSync(inputs, o).varlenStates!);
      const untouched = bytesOf(varlenStates);
      const pending = ssd(inputs, { ...o, out: { varlenStates } });
      const h = handAway(transfer, varlenStates);
      await expectDetached(pending, 'options.out.varlenStates');
      const seen = ownerBytes(h);
      if (seen) expect(sameBytes(seen, untouched)).toBe(true);
    });

    test('inputs.cuSeqlens handed away mid-call', async () => {
      const base = makeExample(rng, { ...config, batch: 1 }).inputs;
      const cuSeqlens = new Tensor('int32', Int32Array.from([0, 60, 160]), [3]);
      const o: SsdOptions = { chunkSize: 32, returnVarlenStates: true };
      const want = ssdSync({ ...base, cuSeqlens }, o);
      const pending = ssd({ ...base, cuSeqlens }, o);
      handAway(transfer, cuSeqlens);
      const got = await pending;
      expect(sameBits(got.y, want.y)).toBe(true);
      expect(sameBits(got.varlenStates!, want.varlenStates!)).toBe(true);
    });
  });

  describe('ssdBackward()', () => {
    const example = forwardExample();
    const { y, finalStates } = ssdSync(example, options);
    const grads = { dy: y, dFinalStates: finalStates! };
    const expected = ssdBackwardSync(example, grads, backwardOptions);
    const gradNames = Object.keys(expected) as (keyof SsdGrads)[];

    const inputNames = [...Object.keys(example).map((k) => `inputs.${k}`), 'grads.dy', 'grads.dFinalStates'];
    test.each(inputNames)('%s handed away mid-call: the gradients of the inputs as they were', async (name) => {
      const inputs = mapTensors(example, copyOf);
      const g = mapTensors(grads, copyOf);
      const [group, key] = name.split('.');
      const tensor = (group === 'inputs' ? (inputs as unknown as Record<string, Tensor>) : (g as Record<string, Tensor>))[key];
      const before = bytesOf(tensor);
      const pending = ssdBackward(inputs, g, backwardOptions);
      const h = handAway(transfer, tensor);
      const got = await pending;
      for (const n of gradNames) expect([n, sameBits(got[n]!, expected[n]!)]).toEqual([n, true]);
      const seen = ownerBytes(h);
      if (seen) expect(sameBytes(seen, before)).toBe(true);
    });

    test.each(gradNames)('options.out.%s handed away mid-call: ERR_SSD_DETACHED, no gradient written', async (field) => {
      const out = mapTensors(expected, marked);
      const pending = ssdBackward(example, grads, { ...backwardOptions, out });
      const snapshot = bytesOf(out[field]!);
      const h = handAway(transfer, out[field]!);
      await expectDetached(pending, `options.out.${field}`);
      const seen = ownerBytes(h);
      if (seen) expect(sameBytes(seen, snapshot)).toBe(true);
      for (const other of gradNames.filter((f) => f !== field)) {
        expect(bytesOf(out[other]!).every((b) => b === 0x5a)).toBe(true);
      }
    });
  });

  describe('ssdStep()', () => {
    for (const indices of [undefined, [4, -1, 1]]) {
      const label = indices ? 'a cache with stateIndices' : 'a state of batch rows';
      const cfg = indices ? stepConfig : { ...stepConfig, stateRows: stepConfig.batch };
      const example = makeStepExample(rng, cfg, { D: 'head', z: true, dtBias: true, stateIndices: indices });
      const expectedState = copyOf(example.state);
      const expected = ssdStepSync(expectedState, example.inputs, stepOptions);

      test.each(Object.keys(example.inputs))(`${label}: inputs.%s handed away mid-call: y and the state of the inputs as they were`, async (name) => {
        const inputs = mapTensors(example.inputs, copyOf);
        const state = copyOf(example.state);
        const tensor = inputs[name as keyof SsdStepInputs]!;
        const before = bytesOf(tensor);
        const pending = ssdStep(state, inputs, stepOptions);
        const h = handAway(transfer, tensor);
        const got = await pending;
        expect(sameBits(got.y, expected.y)).toBe(true);
        expect(sameBits(state, expectedState)).toBe(true);
        const seen = ownerBytes(h);
        if (seen) expect(sameBytes(seen, before)).toBe(true);
      });

      test(`${label}: the state handed away mid-call: ERR_SSD_DETACHED naming it, the new owner sees the state from before the step`, async () => {
        const state = copyOf(example.state);
        const before = bytesOf(state);
        const y = marked(expected.y);
        const pending = ssdStep(state, mapTensors(example.inputs, copyOf), { ...stepOptions, out: { y } });
        const h = handAway(transfer, state);
        await expectDetached(pending, 'state');
        const seen = ownerBytes(h);
        if (seen) expect(sameBytes(seen, before)).toBe(true);
        expect(bytesOf(y).every((b) => b === 0x5a)).toBe(true); // nor was y written
      });

      test(`${label}: options.out.y handed away mid-call: ERR_SSD_DETACHED, the state not stepped`, async () => {
        const state = copyOf(example.state);
        const before = bytesOf(state);
        const y = marked(expected.y);
        const snapshot = bytesOf(y);
        const pending = ssdStep(state, mapTensors(example.inputs, copyOf), { ...stepOptions, out: { y } });
        const h = handAway(transfer, y);
        await expectDetached(pending, 'options.out.y');
        const seen = ownerBytes(h);
        if (seen) expect(sameBytes(seen, snapshot)).toBe(true);
        expect(sameBytes(bytesOf(state), before)).toBe(true);
      });
    }
  });
});

describe('what the policy leaves alone', () => {
  test('SharedArrayBuffers cannot be detached (a clone shares them), so an asynchronous call uses them in place', async () => {
    const example = forwardExample();
    const expected = ssdSync(example, options);
    const y = onShared(marked(expected.y));
    const pending = ssd(mapTensors(example, onShared), { ...options, out: { y } });
    const clone = structuredClone(y.data); // another view of the same memory, as a worker would get
    expect(Object.prototype.toString.call(clone.buffer)).toBe('[object SharedArrayBuffer]');
    expect(y.data.byteLength).toBe(clone.byteLength);
    await pending;
    expect(sameBits(y, expected.y)).toBe(true);
    expect(sameBits(new Tensor('float32', clone, y.dims), expected.y)).toBe(true);
  });

  test('a buffer handed away before the call is a TypeError naming it, not a detach error', async () => {
    const example = mapTensors(forwardExample(), copyOf);
    structuredClone(bufferOf(example.B), { transfer: [bufferOf(example.B)] });
    await expect(ssd(example, options)).rejects.toThrow(/^Expected a Tensor \(batch, seqlen, ngroups, dstate\) for inputs\.B but received a Tensor whose data .* detached/);
  });

  test('WebAssembly memory grown mid-call (which detaches its old buffer): an input changes nothing, options.out.y is ERR_SSD_DETACHED', async () => {
    const example = forwardExample();
    const expected = ssdSync(example, options);
    const pages = (bytes: number): number => Math.ceil(bytes / 65536);
    // (this project's TypeScript settings have no WebAssembly typings)
    const WebAssembly = (globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number }) => { buffer: ArrayBuffer; grow(pages: number): number } } }).WebAssembly;
    // x and y each on a WebAssembly memory of their own
    const xMemory = new WebAssembly.Memory({ initial: pages(example.x.data.byteLength) });
    const x = new Tensor('float32', new Float32Array(xMemory.buffer, 0, example.x.size), example.x.dims);
    (x.data as Float32Array).set(example.x.data as Float32Array);
    const yMemory = new WebAssembly.Memory({ initial: pages(expected.y.data.byteLength) });
    const y = new Tensor('float32', new Float32Array(yMemory.buffer, 0, expected.y.size), expected.y.dims);
    const pendingIn = ssd({ ...example, x }, options);
    // checked from the start: it may reject before pendingIn settles, and must never be left unhandled
    const outChecked = expectDetached(ssd(example, { ...options, out: { y } }), 'options.out.y');
    xMemory.grow(1);
    yMemory.grow(1);
    expect(x.data.byteLength).toBe(0);
    expect(y.data.byteLength).toBe(0);
    expect(sameBits((await pendingIn).y, expected.y)).toBe(true);
    await outChecked;
    expect(new Uint8Array(yMemory.buffer, 0, expected.y.data.byteLength).every((b) => b === 0)).toBe(true);
  });

  // A forward long enough to be caught running: one thread, headdim 64, dstate 128.
  const long = makeExample(rng, { batch: 1, seqlen: 4096, nheads: 8, headdim: 64, ngroups: 1, dstate: 128 }, { z: true }).inputs;
  const longOptions: SsdOptions = { dtSoftplus: true, threads: 1 };

  test('buffers handed away while the native worker is inside the kernels (an input: correct results; options.out.y: ERR_SSD_DETACHED)', async () => {
    const expected = ssdSync(long, longOptions);
    // how long the worker runs after ssd() returns, on this machine now
    await ssd(long, longOptions);
    const t0 = performance.now();
    const probe = ssd(long, longOptions);
    const returned = performance.now() - t0;
    await probe;
    const total = performance.now() - t0;
    let wait = Math.max(0.5, (total - returned) / 4);
    let caught = 0;
    for (let attempt = 0; attempt < 6 && caught < 2; attempt++, wait /= 2) {
      const inputs = mapTensors(long, copyOf);
      const y = marked(expected.y);
      let settled = false;
      const pending = ssd(inputs, { ...longOptions, out: { y } }).finally(() => (settled = true));
      pending.catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, wait));
      const running = !settled;
      const x = bytesOf(inputs.x);
      const hx = handAway(TRANSFERS[0], inputs.x);
      const hy = handAway(TRANSFERS[0], y);
      await expectDetached(pending, 'options.out.y');
      expect(sameBytes(ownerBytes(hx)!, x)).toBe(true);
      expect(ownerBytes(hy)!.every((b) => b === 0x5a)).toBe(true);
      if (running) caught++;
    }
    expect(caught).toBeGreaterThan(0); // at least one hand-over happened while the call ran
    // and an input alone: the results of the inputs as they were
    const inputs = mapTensors(long, copyOf);
    const pending = ssd(inputs, longOptions);
    const z = bytesOf(inputs.z!);
    const hz = handAway(TRANSFERS[0], inputs.z!);
    expect(sameBits((await pending).y, expected.y)).toBe(true);
    expect(sameBytes(ownerBytes(hz)!, z)).toBe(true);
  });

  test('buffers handed away (and collected) while the call waits for the thread pool behind a long call', async () => {
    const example = forwardExample();
    const expected = ssdSync(example, options);
    const ahead = ssd(long, longOptions); // holds the CPU thread pool for a while
    const inputs = mapTensors(example, copyOf);
    const y = marked(expected.y);
    let settled = false;
    const pendingIn = ssd(inputs, options).finally(() => (settled = true));
    const outChecked = expectDetached(ssd(mapTensors(example, copyOf), { ...options, out: { y } }), 'options.out.y');
    for (const name of Object.keys(inputs)) handAway(TRANSFERS[TRANSFERS.length - 1], inputs[name as keyof SsdInputs]!);
    handAway(TRANSFERS[TRANSFERS.length - 1], y);
    expect(settled).toBe(false);
    const got = await pendingIn;
    expect(sameBits(got.y, expected.y)).toBe(true);
    expect(sameBits(got.finalStates!, expected.finalStates!)).toBe(true);
    await outChecked;
    await ahead;
  });
});
