/**
 * Host memory on the CUDA paths (README, "Memory of asynchronous calls"):
 *   - arrays on a SharedArrayBuffer: toDevice() uploads and toHost() downloads of every dtype, and
 *     ssd(), ssdBackward() and ssdStep() with device 'cuda' on host inputs, options.out and a host
 *     state on SharedArrayBuffers, bitwise equal to the same calls on ArrayBuffers;
 *   - buffers handed away mid-call: the source of a toDevice() upload (the device copy holds the
 *     data as it was), every input of the three calls (the results of the inputs as they were), and
 *     host outputs (options.out, the step's host state: ERR_SSD_DETACHED naming them, the new owner
 *     finds the data as it was when it got it), and the process goes on.
 *
 * Without a usable GPU every test here is skipped, and the suite says why.
 */
import {
  SsdError,
  Tensor,
  backends,
  ssd,
  ssdBackward,
  ssdStep,
  type SsdBackwardOptions,
  type SsdGrads,
  type SsdInputs,
  type SsdOptions,
  type SsdStepInputs,
  type SsdStepOptions,
} from '../../lib/index';
import { makeStepExample } from '../../lib/reference-step';
import { sameBits } from '../helpers';
import { TRANSFERS, bufferOf, bytesOf, copyOf, mapTensors, onShared, sameBytes, type Transfer } from '../memory-helpers';
import { Random, makeExample } from '../reference';

const cuda = backends().cuda;
const gpu = cuda.available;
const describeGpu = gpu ? describe : describe.skip;

test('CUDA availability is reported (GPU host-memory tests run only where it is available)', () => {
  if (!gpu) {
    console.log(`GPU host-memory tests skipped: CUDA is unavailable here (${cuda.reason})`);
    expect(cuda.reason.length).toBeGreaterThan(0);
  } else {
    expect(cuda.devices).toBeGreaterThan(0);
  }
});

const rng = new Random(19007);
const config = { batch: 2, seqlen: 300, nheads: 8, headdim: 64, ngroups: 2, dstate: 64 };
const options: SsdOptions = { dtSoftplus: true, returnFinalStates: true, device: 'cuda' };
const backwardOptions: SsdBackwardOptions = { dtSoftplus: true, device: 'cuda' };
const stepOptions: SsdStepOptions = { dtSoftplus: true, device: 'cuda' };
const stepConfig = { batch: 4, nheads: 8, headdim: 64, ngroups: 2, dstate: 128, stateRows: 7 };
const available = TRANSFERS.filter((t) => t.run !== undefined);

function marked(t: Tensor): Tensor {
  const c = copyOf(t);
  new Uint8Array(c.data.buffer, c.data.byteOffset, c.data.byteLength).fill(0x5a);
  return c;
}

function handAway(transfer: Transfer, tensor: Tensor): Uint8Array | undefined {
  const length = tensor.data.byteLength;
  const owner = transfer.run!(bufferOf(tensor));
  expect(tensor.data.byteLength).toBe(0);
  return owner === undefined ? undefined : new Uint8Array(owner, 0, length);
}

async function expectDetached(pending: Promise<unknown>, name: string): Promise<void> {
  const err = await pending.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SsdError);
  expect((err as SsdError).code).toBe('ERR_SSD_DETACHED');
  expect((err as SsdError).message).toContain(name);
}

describeGpu('SharedArrayBuffers on the CUDA paths', () => {
  test.each(['float32', 'bfloat16', 'float16', 'int32'] as const)('toDevice() of a %s tensor on a SharedArrayBuffer, and toHost()', async (type) => {
    const n = 1000;
    const data = type === 'float32' ? new Float32Array(new SharedArrayBuffer(4 * n)) : type === 'int32' ? new Int32Array(new SharedArrayBuffer(4 * n)) : new Uint16Array(new SharedArrayBuffer(2 * n));
    for (let i = 0; i < n; i++) data[i] = (i * 7919) % 30011;
    const host = new Tensor(type, data, [10, 100]);
    const device = host.toDevice();
    const back = await device.toHost();
    device.dispose();
    expect(sameBits(back, host)).toBe(true);
  });

  test('ssd(), ssdBackward() with device cuda: host inputs and options.out on SharedArrayBuffers give the bits of ArrayBuffer ones', async () => {
    const { inputs } = makeExample(rng, config, { dtype: 'bfloat16', D: 'head', z: true, dtBias: true, initialStates: true });
    const expected = await ssd(inputs, options);
    const shared = mapTensors(inputs, onShared);
    const out = { y: onShared(marked(expected.y)), finalStates: onShared(marked(expected.finalStates!)) };
    const got = await ssd(shared, { ...options, out });
    expect(got.y).toBe(out.y);
    expect(sameBits(out.y, expected.y)).toBe(true);
    expect(sameBits(out.finalStates, expected.finalStates!)).toBe(true);
    const grads = { dy: expected.y };
    const want = await ssdBackward(inputs, grads, backwardOptions);
    const gradOut = mapTensors(want, (t) => onShared(marked(t)));
    await ssdBackward(shared, mapTensors(grads, onShared), { ...backwardOptions, out: gradOut });
    for (const name of Object.keys(want) as (keyof SsdGrads)[]) expect([name, sameBits(gradOut[name]!, want[name]!)]).toEqual([name, true]);
  });

  test('ssdStep() with device cuda on a host state on a SharedArrayBuffer (stateIndices) gives the bits of an ArrayBuffer state', async () => {
    const { state, inputs } = makeStepExample(rng, stepConfig, { stateType: 'bfloat16', z: true, stateIndices: [6, -1, 0, 3] });
    const plainState = copyOf(state);
    const expected = await ssdStep(plainState, inputs, stepOptions);
    const sharedState = onShared(state);
    const y = onShared(marked(expected.y));
    await ssdStep(sharedState, mapTensors(inputs, onShared), { ...stepOptions, out: { y } });
    expect(sameBits(y, expected.y)).toBe(true);
    expect(sameBits(sharedState, plainState)).toBe(true);
  });
});

describeGpu.each(available.map((t) => [t.name, t] as const))('CUDA, %s', (_name, transfer) => {
  test('the source of toDevice() handed away at once: the device copy holds the data as it was', async () => {
    const host = new Tensor('float32', Float32Array.from({ length: 1 << 20 }, (_, i) => Math.sin(i)), [1 << 20]);
    const before = bytesOf(host);
    const device = host.toDevice();
    const seen = handAway(transfer, host);
    const back = await device.toHost();
    device.dispose();
    expect(sameBytes(bytesOf(back), before)).toBe(true);
    if (seen) expect(sameBytes(seen, before)).toBe(true);
  });

  const example = makeExample(rng, config, { D: 'head', z: true, dtBias: true, initialStates: true }).inputs;
  test.each(Object.keys(example))('ssd() device cuda: inputs.%s handed away mid-call: the results of the inputs as they were', async (name) => {
    const expected = await ssd(example, options);
    const inputs = mapTensors(example, copyOf);
    const tensor = inputs[name as keyof SsdInputs]!;
    const before = bytesOf(tensor);
    const pending = ssd(inputs, options);
    const seen = handAway(transfer, tensor);
    const got = await pending;
    expect(sameBits(got.y, expected.y)).toBe(true);
    expect(sameBits(got.finalStates!, expected.finalStates!)).toBe(true);
    if (seen) expect(sameBytes(seen, before)).toBe(true);
  });

  test.each(['y', 'finalStates'] as const)('ssd() device cuda: options.out.%s handed away mid-call: ERR_SSD_DETACHED, the new owner finds it untouched', async (field) => {
    const expected = await ssd(example, options);
    const out = { y: marked(expected.y), finalStates: marked(expected.finalStates!) };
    const pending = ssd(example, { ...options, out });
    const seen = handAway(transfer, out[field]);
    await expectDetached(pending, `options.out.${field}`);
    if (seen) expect(seen.every((b) => b === 0x5a)).toBe(true);
    expect(sameBits((await ssd(example, options)).y, expected.y)).toBe(true); // the process goes on
  });

  test('ssdBackward() device cuda: grads.dy handed away mid-call gives the gradients of the inputs as they were; options.out.dx handed away is ERR_SSD_DETACHED', async () => {
    const { y } = await ssd(example, options);
    const expected = await ssdBackward(example, { dy: y }, backwardOptions);
    const dy = copyOf(y);
    const pending = ssdBackward(example, { dy }, backwardOptions);
    handAway(transfer, dy);
    const got = await pending;
    for (const name of Object.keys(expected) as (keyof SsdGrads)[]) expect([name, sameBits(got[name]!, expected[name]!)]).toEqual([name, true]);
    const out = { dx: marked(expected.dx) };
    const pendingOut = ssdBackward(example, { dy: y }, { ...backwardOptions, out });
    const seen = handAway(transfer, out.dx);
    await expectDetached(pendingOut, 'options.out.dx');
    if (seen) expect(seen.every((b) => b === 0x5a)).toBe(true);
  });

  test('ssdStep() device cuda on a host state: an input handed away mid-call changes nothing; the state handed away is ERR_SSD_DETACHED naming it', async () => {
    const { state, inputs } = makeStepExample(rng, stepConfig, { z: true, stateIndices: [6, -1, 0, 3] });
    const expectedState = copyOf(state);
    const expected = await ssdStep(expectedState, inputs, stepOptions);
    for (const name of Object.keys(inputs)) {
      const s = copyOf(state);
      const own = mapTensors(inputs, copyOf);
      const pending = ssdStep(s, own, stepOptions);
      handAway(transfer, own[name as keyof SsdStepInputs]!);
      expect(sameBits((await pending).y, expected.y)).toBe(true);
      expect(sameBits(s, expectedState)).toBe(true);
    }
    const s = copyOf(state);
    const before = bytesOf(s);
    const pending = ssdStep(s, inputs, stepOptions);
    const seen = handAway(transfer, s);
    await expectDetached(pending, 'state');
    if (seen) expect(sameBytes(seen, before)).toBe(true);
  });
});
