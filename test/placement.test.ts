/**
 * Placement (lib/placement.ts) against a stand-in for the addon: where 'auto', 'cpu' and 'cuda'
 * calls run for each op, when cudaSupports() is asked, and the ERR_SSD_DEVICE refusals. Needs no
 * addon and no GPU: the stand-in says whether CUDA is available and what its path supports.
 */
import { Tensor, SsdError } from '../lib/index';
import { scanQuery, stepQuery } from '../lib/native-args';
import type { CudaQuery, NativeBackends } from '../lib/native';
import { place, type Op, type PlacementAddon, type PlacementRequest } from '../lib/placement';
import { validate, type SsdInputs, type SsdOptions } from '../lib/validate';
import { validateStep } from '../lib/validate-step';

/** A stand-in addon: CUDA available on `devices` devices (or not), its path supporting headdim up to 256. */
function fakeAddon(available: boolean, devices = 1): PlacementAddon & { asked: [Op, CudaQuery][]; backendCalls: number } {
  const cuda: NativeBackends['cuda'] = available
    ? { compiled: true, available: true, reason: '', devices }
    : { compiled: false, available: false, reason: 'this build has no CUDA kernels', devices: 0 };
  const fake = {
    asked: [] as [Op, CudaQuery][],
    backendCalls: 0,
    backends(): NativeBackends {
      fake.backendCalls++;
      return { cpu: { isa: 'scalar', bestIsa: 'scalar', threads: 1 }, cuda };
    },
    cudaSupports(op: Op, query: CudaQuery): { ok: boolean; reason: string } {
      fake.asked.push([op, query]);
      return query.dims[3] <= 256 ? { ok: true, reason: '' } : { ok: false, reason: 'headdim above 256' };
    },
  };
  return fake;
}

const f32 = (dims: number[]): Tensor => new Tensor('float32', new Float32Array(dims.reduce((a, b) => a * b, 1)), dims);
const onDevice = (dims: number[], device = 0): Tensor => Tensor.fromDevicePointer(0x1000n, 'float32', dims, { device });

/** Forward inputs of (batch 1, seqlen 4, nheads 2, headdim p, ngroups 1, dstate 8). */
function inputs(p: number, over: Partial<SsdInputs> = {}): SsdInputs {
  return { x: f32([1, 4, 2, p]), dt: f32([1, 4, 2]), A: f32([2]), B: f32([1, 4, 1, 8]), C: f32([1, 4, 1, 8]), ...over };
}

/** The placement request of a forward or backward call, as lib/forward.ts and lib/backward.ts make it. */
function scanRequest(op: 'forward' | 'backward', given: SsdInputs, options: SsdOptions, sync: boolean): PlacementRequest {
  const { inputs: t, plan } = validate(given, options);
  const tensors = Object.entries(t).map(([k, v]): [string, Tensor] => [`inputs.${k}`, v as Tensor]);
  return { op, device: plan.device, tensors, sync, query: () => scanQuery(t, plan) };
}

function refusal(fn: () => unknown): SsdError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SsdError);
    expect((err as SsdError).code).toBe('ERR_SSD_DEVICE');
    return err as SsdError;
  }
  throw new Error('expected ERR_SSD_DEVICE');
}

describe("device 'auto' with host tensors", () => {
  for (const op of ['forward', 'backward'] as const) {
    test(`${op}: CUDA available and supporting the call: cuda:0`, () => {
      const addon = fakeAddon(true);
      expect(place(scanRequest(op, inputs(64), {}, false), () => addon)).toEqual({ kind: 'cuda', device: 0 });
      expect(addon.asked).toHaveLength(1);
      const [askedOp, query] = addon.asked[0];
      expect(askedOp).toBe(op);
      expect(query).toEqual({ dims: [1, 4, 2, 64, 1, 8], chunkSize: 256, dtSoftplus: false, dtMin: 0, dtMax: Infinity, threads: 0, xType: 0, BType: 0, CType: 0, dtType: 0, zType: null });
    });

    test(`${op}: a call the CUDA path does not support (headdim 512): the CPU`, () => {
      const addon = fakeAddon(true);
      expect(place(scanRequest(op, inputs(512), { chunkSize: 64 }, false), () => addon)).toEqual({ kind: 'cpu' });
      expect(addon.asked.map(([o, q]) => [o, q.dims[3], q.chunkSize])).toEqual([[op, 512, 64]]);
    });

    test(`${op}: CUDA unavailable: the CPU, without asking cudaSupports()`, () => {
      const addon = fakeAddon(false);
      expect(place(scanRequest(op, inputs(64), {}, false), () => addon)).toEqual({ kind: 'cpu' });
      expect(addon.asked).toHaveLength(0);
    });

    test(`${op}: a sync call: the CPU, without reading the backends`, () => {
      const addon = fakeAddon(true);
      expect(place(scanRequest(op, inputs(64), {}, true), () => addon)).toEqual({ kind: 'cpu' });
      expect(addon.backendCalls).toBe(0);
      expect(addon.asked).toHaveLength(0);
    });
  }

  test('the query carries the dtypes of x, B, C, dt and z', () => {
    const addon = fakeAddon(true);
    const bf16 = (dims: number[]): Tensor => new Tensor('bfloat16', new Uint16Array(dims.reduce((a, b) => a * b, 1)), dims);
    const f16 = (dims: number[]): Tensor => new Tensor('float16', new Uint16Array(dims.reduce((a, b) => a * b, 1)), dims);
    place(scanRequest('forward', inputs(16, { x: bf16([1, 4, 2, 16]), B: f16([1, 4, 1, 8]), z: f16([1, 4, 2, 16]) }), {}, false), () => addon);
    expect(addon.asked[0][1]).toMatchObject({ xType: 1, BType: 2, CType: 0, dtType: 0, zType: 2 });
  });

  test('step: the CPU even where CUDA is available and supports it', () => {
    const addon = fakeAddon(true);
    const v = validateStep(f32([2, 2, 16, 8]), { x: f32([2, 2, 16]), dt: f32([2, 2]), A: f32([2]), B: f32([2, 1, 8]), C: f32([2, 1, 8]) }, {});
    const tensors: [string, Tensor][] = [['state', v.state], ...Object.entries(v.inputs).map(([k, t]): [string, Tensor] => [`inputs.${k}`, t as Tensor])];
    const request: PlacementRequest = { op: 'step', device: v.plan.device, tensors, sync: false, query: () => stepQuery(v.state, v.inputs, v.plan) };
    expect(place(request, () => addon)).toEqual({ kind: 'cpu' });
    expect(addon.asked).toHaveLength(0);
  });
});

describe("device 'cuda' and device tensors", () => {
  test("'cuda' runs on CUDA whether or not the CUDA path supports the call (the addon then rejects)", () => {
    const addon = fakeAddon(true);
    expect(place(scanRequest('forward', inputs(512), { device: 'cuda' }, false), () => addon)).toEqual({ kind: 'cuda', device: 0 });
    expect(addon.asked).toHaveLength(0);
  });

  test("'auto' with device tensors runs on their device without asking cudaSupports()", () => {
    const addon = fakeAddon(true, 2);
    const request = scanRequest('forward', inputs(512, { x: onDevice([1, 4, 2, 512], 1) }), {}, false);
    expect(place(request, () => addon)).toEqual({ kind: 'cuda', device: 1 });
    expect(addon.asked).toHaveLength(0);
  });

  test('a sync call refuses CUDA, naming the async function of its op', () => {
    const addon = fakeAddon(true);
    expect(refusal(() => place(scanRequest('forward', inputs(64), { device: 'cuda' }, true), () => addon)).message).toBe(
      "options.device 'cuda:0' is not available to ssdSync(): CUDA calls are asynchronous, use ssd()",
    );
    expect(refusal(() => place(scanRequest('backward', inputs(64), { device: 'cuda' }, true), () => addon)).message).toBe(
      "options.device 'cuda:0' is not available to ssdBackwardSync(): CUDA calls are asynchronous, use ssdBackward()",
    );
    const stepRequest: PlacementRequest = { op: 'step', device: { kind: 'cuda', index: 0 }, tensors: [['state', f32([1])]], sync: true, query: () => ({ dims: [], xType: 0, BType: 0, CType: 0, dtType: 0 }) };
    expect(refusal(() => place(stepRequest, () => addon)).message).toBe(
      "options.device 'cuda:0' is not available to ssdStepSync(): CUDA calls are asynchronous, use ssdStep()",
    );
  });

  test('CUDA unavailable: the reason, in the words of each op', () => {
    const addon = fakeAddon(false);
    expect(refusal(() => place(scanRequest('forward', inputs(64), { device: 'cuda:1' }, false), () => addon)).message).toBe(
      "options.device 'cuda:1' is not available: this build has no CUDA kernels",
    );
    expect(refusal(() => place(scanRequest('backward', inputs(64), { device: 'cuda' }, false), () => addon)).message).toBe(
      "options.device 'cuda:0' cannot run the backward: CUDA is not available: this build has no CUDA kernels",
    );
    const x = onDevice([1, 4, 2, 64]);
    expect(refusal(() => place(scanRequest('forward', inputs(64, { x }), {}, false), () => addon)).message).toBe(
      "options.device 'auto (inputs on 'cuda:0')' is not available: this build has no CUDA kernels",
    );
    expect(refusal(() => place(scanRequest('backward', inputs(64, { x }), {}, false), () => addon)).message).toBe(
      "options.device 'auto (inputs.x on 'cuda:0')' cannot run the backward: CUDA is not available: this build has no CUDA kernels",
    );
  });

  test('a device past the last: how many devices there are', () => {
    const addon = fakeAddon(true, 2);
    expect(refusal(() => place(scanRequest('forward', inputs(64), { device: 'cuda:2' }, false), () => addon)).message).toBe(
      "options.device 'cuda:2' is not available: this machine has 2 CUDA device(s)",
    );
  });

  test("tensors on two devices, a device tensor with 'cpu', and a device other than the tensors'", () => {
    const addon = fakeAddon(true, 2);
    const two = inputs(64, { x: onDevice([1, 4, 2, 64], 0), B: onDevice([1, 4, 1, 8], 1) });
    expect(refusal(() => place(scanRequest('forward', two, {}, false), () => addon)).message).toBe(
      "Expected every device tensor on one device but received inputs.x on 'cuda:0', inputs.B on 'cuda:1'",
    );
    const one = inputs(64, { B: onDevice([1, 4, 1, 8], 1) });
    expect(refusal(() => place(scanRequest('forward', one, { device: 'cpu' }, false), () => addon)).message).toBe(
      "options.device 'cpu' cannot read inputs.B, which is on 'cuda:1'; use `await tensor.toHost()` or device 'cuda'",
    );
    expect(refusal(() => place(scanRequest('forward', one, { device: 'cuda:0' }, false), () => addon)).message).toBe(
      "options.device 'cuda:0' cannot read inputs.B, which is on 'cuda:1'",
    );
  });
});
