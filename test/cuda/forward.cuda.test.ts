/**
 * The CUDA forward on a GPU: every option combination and the awkward sizes of the CPU suite
 * against the float64 reference (computed on the same rounded inputs) and against the CPU path;
 * device tensors; repeated runs give the same bits; concurrent calls; memory back to its starting
 * level after 1,000 calls; recovery after an out-of-memory rejection.
 *
 * Without a usable GPU every test here is skipped, and the suite says why.
 */
import { Tensor, cudaEmptyCache, cudaMemoryStats, ssd, ssdSync, SsdError, type SsdOptions } from '../../lib/index';
import { native } from '../../lib/native';
import { CUDA_FORWARD_BF16_ROUNDING_SLACK, CUDA_FORWARD_BOUND, ROUNDING_ALLOWANCE } from '../../lib/tolerances';
import { Random, makeExample, ssdReference, withOptions, relativeL2, l2, allFinite, roundingError, type ExampleConfig, type ExampleOptions } from '../reference';
import { optionCombinations, sameBits, gpuSuite } from '../helpers';

const { describeGpu } = gpuSuite('GPU tests');

const rng = new Random(424242);

interface Checked {
  yError: number;
  statesError?: number;
}

/** Runs one case on the GPU (host tensors, device 'cuda') and checks it against the reference and the CPU. */
async function check(config: ExampleConfig, example: ExampleOptions, options: SsdOptions): Promise<Checked> {
  const { inputs, ref } = makeExample(rng, config, example);
  const dtype = example.dtype ?? 'float32';
  const out = await ssd(inputs, { ...options, device: 'cuda' });
  expect(out.y.location).toBe('cpu');
  expect(out.y.type).toBe(dtype);
  const expected = ssdReference(withOptions(ref, options));
  const y = out.y.toFloat32();
  expect(allFinite(y)).toBe(true);
  expect(l2(y)).toBeGreaterThan(0);
  const bound = CUDA_FORWARD_BOUND[dtype] + ROUNDING_ALLOWANCE * roundingError(dtype, expected.y);
  const yError = relativeL2(y, expected.y);
  expect(yError).toBeLessThanOrEqual(bound);
  const cpu = ssdSync(inputs, { ...options, device: 'cpu' });
  expect(relativeL2(y, cpu.y.toFloat32())).toBeLessThanOrEqual(bound);
  const result: Checked = { yError };
  if (options.returnFinalStates) {
    const states = out.finalStates!.toFloat32();
    expect(allFinite(states)).toBe(true);
    result.statesError = relativeL2(states, expected.finalStates);
    expect(result.statesError).toBeLessThanOrEqual(CUDA_FORWARD_BOUND[dtype]);
  }
  return result;
}

describeGpu('CUDA forward: every option combination', () => {
  const small: ExampleConfig = { batch: 2, seqlen: 37, nheads: 4, headdim: 8, ngroups: 2, dstate: 16 };
  const combos = optionCombinations(['bfloat16', 'float32'], false);
  test.each(combos)('%s', async (_name, example, options) => {
    await check(small, example, options);
  });
});

describeGpu('CUDA forward: awkward sizes', () => {
  const seqlens = (Q: number): number[] => [1, 2, Q - 1, Q, Q + 1, 3 * Q + 5];
  const cases: [string, ExampleConfig, ExampleOptions, SsdOptions][] = [];
  for (const Q of [16, 64, 256]) {
    for (const seqlen of seqlens(Q)) {
      cases.push([`chunk ${Q} seqlen ${seqlen}`, { batch: 2, seqlen, nheads: 4, headdim: 64, ngroups: 1, dstate: 128 }, { dtype: 'bfloat16', z: true, initialStates: true }, { dtSoftplus: true, returnFinalStates: true, chunkSize: Q }]);
    }
  }
  for (const headdim of [1, 5, 17, 33, 64, 128, 256]) {
    cases.push([`headdim ${headdim}`, { batch: 1, seqlen: 100, nheads: 2, headdim, ngroups: 2, dstate: 32 }, { dtype: 'bfloat16', D: 'channel' }, { dtSoftplus: true, returnFinalStates: true, chunkSize: 32 }]);
  }
  for (const dstate of [1, 7, 16, 33, 64, 128, 256]) {
    cases.push([`dstate ${dstate}`, { batch: 1, seqlen: 100, nheads: 2, headdim: 32, ngroups: 1, dstate }, { dtype: 'bfloat16', initialStates: true }, { dtSoftplus: true, returnFinalStates: true, chunkSize: 32 }]);
  }
  for (const ngroups of [1, 2, 8]) {
    cases.push([`ngroups ${ngroups} of 8 heads`, { batch: 2, seqlen: 130, nheads: 8, headdim: 16, ngroups, dstate: 16 }, { dtype: 'float16', z: true }, { dtSoftplus: true, returnFinalStates: true, chunkSize: 64 }]);
  }
  for (const dtype of ['bfloat16', 'float16', 'float32'] as const) {
    cases.push([`${dtype}, every option, seqIdx across chunk edges`, { batch: 2, seqlen: 300, nheads: 4, headdim: 64, ngroups: 2, dstate: 64 }, { dtype, D: 'channel', z: true, dtBias: true, initialStates: true, seqStarts: [64, 100, 101, 256] }, { dtSoftplus: true, dtLimit: [0.001, 0.5], returnFinalStates: true, chunkSize: 64 }]);
  }
  cases.push(['large dt: exp underflows', { batch: 1, seqlen: 70, nheads: 2, headdim: 16, ngroups: 1, dstate: 16 }, { dtype: 'bfloat16', dtShift: 100 }, { dtSoftplus: true, returnFinalStates: true, chunkSize: 16 }]);
  cases.push(['first seqIdx nonzero drops initial states', { batch: 2, seqlen: 80, nheads: 2, headdim: 16, ngroups: 1, dstate: 16 }, { dtype: 'bfloat16', seqFirst: 2, seqStarts: [40], initialStates: true }, { dtSoftplus: true, returnFinalStates: true, chunkSize: 32 }]);
  test.each(cases)('%s', async (_name, config, example, options) => {
    await check(config, example, options);
  });
});

describeGpu('CUDA device tensors', () => {
  const cfg: ExampleConfig = { batch: 2, seqlen: 300, nheads: 8, headdim: 64, ngroups: 2, dstate: 128 };

  test('device inputs give device outputs that match host inputs bit for bit, and toHost brings them back', async () => {
    const { inputs, ref } = makeExample(rng, cfg, { dtype: 'bfloat16', z: true, initialStates: true, dtBias: true });
    const options: SsdOptions = { dtSoftplus: true, returnFinalStates: true };
    const onDevice = Object.fromEntries(Object.entries(inputs).map(([k, t]) => [k, (t as Tensor).toDevice()])) as unknown as typeof inputs;
    expect(onDevice.x.location).toBe('cuda');
    expect(onDevice.x.device).toBe(0);
    expect(() => onDevice.x.data).toThrow(SsdError);
    const out = await ssd(onDevice, options);
    expect(out.y.location).toBe('cuda');
    expect(out.finalStates!.location).toBe('cuda');
    const y = await out.y.toHost();
    const fromHost = await ssd(inputs, { ...options, device: 'cuda' });
    expect(sameBits(y, fromHost.y)).toBe(true);
    expect(sameBits(await out.finalStates!.toHost(), fromHost.finalStates!)).toBe(true);
    expect(relativeL2(y.toFloat32(), ssdReference(withOptions(ref, options)).y)).toBeLessThanOrEqual(CUDA_FORWARD_BOUND.bfloat16 + CUDA_FORWARD_BF16_ROUNDING_SLACK);
    for (const t of [...Object.values(onDevice), out.y, out.finalStates!]) (t as Tensor).dispose();
  });

  test("fromDevicePointer wraps memory owned elsewhere; dispose() leaves it to its owner", async () => {
    const { inputs } = makeExample(rng, cfg, { dtype: 'bfloat16' });
    const owner = inputs.x.toDevice();
    const view = Tensor.fromDevicePointer(owner.devicePointer, 'bfloat16', inputs.x.dims, { device: 0 });
    const out = await ssd({ ...inputs, x: view }, { dtSoftplus: true, device: 'cuda' });
    const reference = await ssd(inputs, { dtSoftplus: true, device: 'cuda' });
    expect(sameBits(await out.y.toHost(), await reference.y.toHost())).toBe(true);
    view.dispose();
    const back = await owner.toHost();
    expect(sameBits(back, inputs.x)).toBe(true);
    owner.dispose();
    out.y.dispose();
  });

  test("'auto' runs on CUDA when it is available; ssdSync refuses CUDA and says to use ssd()", async () => {
    const { inputs } = makeExample(rng, { batch: 1, seqlen: 40, nheads: 2, headdim: 8, ngroups: 1, dstate: 8 }, {});
    const onDevice = { ...inputs, x: inputs.x.toDevice() };
    const out = await ssd(onDevice, { dtSoftplus: true });
    expect(out.y.location).toBe('cuda');
    expect(() => ssdSync(onDevice, { dtSoftplus: true })).toThrow(/use ssd\(\)/);
    expect(() => ssdSync(inputs, { device: 'cuda' })).toThrow(/use ssd\(\)/);
    onDevice.x.dispose();
    out.y.dispose();
  });

  test('20 repeated runs give the same bits', async () => {
    const { inputs } = makeExample(rng, cfg, { dtype: 'bfloat16', z: true, initialStates: true, seqStarts: [77, 256] });
    const first = await ssd(inputs, { dtSoftplus: true, returnFinalStates: true, device: 'cuda' });
    for (let i = 0; i < 20; i++) {
      const again = await ssd(inputs, { dtSoftplus: true, returnFinalStates: true, device: 'cuda' });
      expect(sameBits(again.y, first.y)).toBe(true);
      expect(sameBits(again.finalStates!, first.finalStates!)).toBe(true);
    }
  });

  test('64 concurrent ssd() calls all resolve to their own right answers', async () => {
    const examples = Array.from({ length: 64 }, () => makeExample(rng, { batch: 1, seqlen: 130, nheads: 4, headdim: 32, ngroups: 1, dstate: 32 }, { dtype: 'bfloat16', z: true }));
    const results = await Promise.all(examples.map((e) => ssd(e.inputs, { dtSoftplus: true, device: 'cuda' })));
    results.forEach((r, i) => {
      const expected = ssdReference(withOptions(examples[i].ref, { dtSoftplus: true }));
      expect(relativeL2(r.y.toFloat32(), expected.y)).toBeLessThanOrEqual(CUDA_FORWARD_BOUND.bfloat16 + ROUNDING_ALLOWANCE * roundingError('bfloat16', expected.y));
    });
  });

  test('device memory returns to its starting level after 1,000 calls with disposed tensors', async () => {
    const { inputs } = makeExample(rng, { batch: 1, seqlen: 256, nheads: 4, headdim: 64, ngroups: 1, dstate: 64 }, { dtype: 'bfloat16' });
    const onDevice = Object.fromEntries(Object.entries(inputs).map(([k, t]) => [k, (t as Tensor).toDevice()])) as unknown as typeof inputs;
    await Promise.all(Object.values(onDevice).map((t) => (t as Tensor).ready));
    const start = cudaMemoryStats().inUse;
    for (let i = 0; i < 1000; i++) {
      const out = await ssd(onDevice, { dtSoftplus: true, returnFinalStates: true });
      out.y.dispose();
      out.finalStates!.dispose();
    }
    expect(cudaMemoryStats().inUse).toBe(start);
    for (const t of Object.values(onDevice)) (t as Tensor).dispose();
  });

  test('an out-of-memory rejection leaves the process usable: free, call again, it works', async () => {
    const addon = native();
    // Each phase's time is printed: on the H200 run of 2026-11-29 this test exceeded 60 s, cause unknown.
    const started = Date.now();
    const phase = (name: string): void => console.log(`out-of-memory test: ${name} at ${Date.now() - started} ms`);
    const hogs: bigint[] = [];
    let failure: unknown;
    // Fill the card: large blocks until one fails, then smaller ones, down to 4 MiB.
    for (const size of [16 * 2 ** 30, 2 ** 30, 64 * 2 ** 20, 4 * 2 ** 20]) {
      for (let i = 0; i < 4096; i++) {
        try {
          hogs.push(addon.cudaAlloc(0, size));
        } catch (err) {
          failure = err;
          break;
        }
      }
    }
    phase(`card filled with ${hogs.length} blocks`);
    expect((failure as { code?: string }).code).toBe('ERR_SSD_OUT_OF_MEMORY');
    expect(String((failure as Error).message)).toMatch(/cudaErrorMemoryAllocation/);
    // 16 MiB of bf16 x alone: more than the 4 MiB the filling loop can leave free.
    const { inputs } = makeExample(rng, { batch: 1, seqlen: 4096, nheads: 32, headdim: 64, ngroups: 1, dstate: 128 }, { dtype: 'bfloat16' });
    // With the card full, a large call is rejected with ERR_SSD_OUT_OF_MEMORY, not a crash.
    phase('inputs made');
    await expect(ssd(inputs, { dtSoftplus: true, device: 'cuda' })).rejects.toMatchObject({ code: 'ERR_SSD_OUT_OF_MEMORY' });
    phase('call rejected');
    for (const p of hogs) addon.cudaRelease(0, p);
    cudaEmptyCache();
    phase('memory freed');
    const out = await ssd(inputs, { dtSoftplus: true, device: 'cuda' });
    phase('call after freeing resolved');
    expect(l2(out.y.toFloat32())).toBeGreaterThan(0);
  }, 240000);
});

describeGpu("device 'auto' asks the CUDA path whether it takes the sizes", () => {
  test('headdim 320 (past what the CUDA kernels take) runs on the CPU under auto, and is refused under cuda', async () => {
    const config: ExampleConfig = { batch: 1, seqlen: 40, nheads: 2, headdim: 320, ngroups: 1, dstate: 16 };
    expect(native().cudaSupports('forward', { dims: [1, 40, 2, 320, 1, 16], chunkSize: 16, xType: 0, dtType: 0, BType: 0, CType: 0 })).toEqual({
      ok: false,
      reason: 'the CUDA backend supports headdim and dstate up to 256',
    });
    const { inputs, ref } = makeExample(rng, config, { D: 'head' });
    const options: SsdOptions = { dtSoftplus: true, chunkSize: 16 };
    const auto = await ssd(inputs, { ...options, device: 'auto' });
    const expected = ssdReference(withOptions(ref, options));
    const y = auto.y.toFloat32();
    expect(allFinite(y)).toBe(true);
    expect(l2(y)).toBeGreaterThan(0);
    expect(relativeL2(y, expected.y)).toBeLessThanOrEqual(CUDA_FORWARD_BOUND.float32);
    expect(sameBits(auto.y, ssdSync(inputs, { ...options, device: 'cpu' }).y)).toBe(true); // the CPU's bits
    await expect(ssd(inputs, { ...options, device: 'cuda' })).rejects.toMatchObject({ code: 'ERR_SSD_UNSUPPORTED' });
  });

  test('a size the CUDA kernels take runs on the GPU under auto', () => {
    expect(native().cudaSupports('forward', { dims: [1, 40, 2, 64, 1, 16], chunkSize: 16, xType: 1, dtType: 0, BType: 1, CType: 1 })).toEqual({ ok: true, reason: '' });
    expect(native().cudaSupports('step', { dims: [4, 2, 64, 1, 16], xType: 0, dtType: 0, BType: 0, CType: 0, stateType: 0 }).ok).toBe(true);
  });
});
