/**
 * The CUDA step and the CUDA varlen forward on a GPU, against the float64 references: every step
 * option, bf16 and fp32 states, a state cache with stateIndices (padding, rows untouched), device
 * tensors in place, ssd() on a prefix then ssdStep() per token equal to ssd() on the whole sequence,
 * bad indices rejected before any row is written, repeatability; cuSeqlens packing equal to each
 * sequence alone and to the reference, with varlenStates.
 *
 * Without a usable GPU every test here is skipped, and the suite says why.
 */
import { Tensor, backends, ssd, ssdStep, ssdSync, SsdError, type SsdOptions, type SsdStepOptions } from '../../lib/index';
import { CUDA_FORWARD_BOUND, CUDA_SPLIT_BOUND, CUDA_STEP_FP32_BOUND, ROUNDING_ALLOWANCE } from '../../lib/tolerances';
import { makeStepExample, ssdStepReference, type RefStepInputs, type StepExampleOptions } from '../../lib/reference-step';
import { Random, makeExample, ssdReference, withOptions, relativeL2, l2, allFinite, roundingError, type ExampleOptions } from '../reference';
/** Bitwise equality of two float arrays (NaN patterns included). */
function sameBits(a: Float32Array, b: Float32Array): boolean {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

const cuda = backends().cuda;
const gpu = cuda.available;
const describeGpu = gpu ? describe : describe.skip;

test('CUDA availability is reported (GPU step and varlen tests run only where it is available)', () => {
  if (!gpu) {
    console.log(`GPU step/varlen tests skipped: CUDA is unavailable here (${cuda.reason})`);
    expect(cuda.reason.length).toBeGreaterThan(0);
  } else {
    expect(cuda.devices).toBeGreaterThan(0);
  }
});

const rng = new Random(77001);
function refWith(ref: RefStepInputs, options: SsdStepOptions): RefStepInputs {
  return { ...ref, dtSoftplus: options.dtSoftplus ?? false, dtLimit: options.dtLimit ? [options.dtLimit[0], options.dtLimit[1]] : undefined };
}

function checkStep(y: Tensor, state: Tensor, ref: RefStepInputs, options: SsdStepOptions): void {
  const expected = ssdStepReference(refWith(ref, options));
  const yv = y.toFloat32();
  const sv = state.toFloat32();
  expect(allFinite(yv) && allFinite(sv)).toBe(true);
  expect(l2(yv)).toBeGreaterThan(0);
  expect(l2(sv)).toBeGreaterThan(0);
  expect(relativeL2(yv, expected.y)).toBeLessThanOrEqual(CUDA_STEP_FP32_BOUND + ROUNDING_ALLOWANCE * roundingError(y.type as 'float32', expected.y));
  expect(relativeL2(sv, expected.state)).toBeLessThanOrEqual(CUDA_STEP_FP32_BOUND + ROUNDING_ALLOWANCE * roundingError(state.type as 'float32', expected.state));
}

describeGpu('CUDA step against the float64 recurrence', () => {
  const cases: [string, StepExampleOptions, SsdStepOptions][] = [];
  for (const D of ['none', 'head', 'channel'] as const)
    for (const z of [false, true])
      for (const dtBias of [false, true])
        for (const dtSoftplus of [false, true])
          for (const clamp of [false, true]) {
            const options: SsdStepOptions = { dtSoftplus, device: 'cuda' };
            if (clamp) options.dtLimit = [0.01, 0.04];
            cases.push([`D=${D} z=${z} dtBias=${dtBias} softplus=${dtSoftplus} clamp=${clamp}`, { D, z, dtBias, positiveDt: !dtSoftplus }, options]);
          }
  test.each(cases)('%s', async (_name, example, options) => {
    const { state, inputs, ref } = makeStepExample(rng, { batch: 3, nheads: 4, headdim: 16, ngroups: 2, dstate: 32 }, example);
    const { y } = await ssdStep(state, inputs, options);
    expect(y.location).toBe('cpu');
    checkStep(y, state, ref, options);
  });

  test.each([
    ['bf16 inputs, fp32 state', { dtype: 'bfloat16' }, 1, 64, 128],
    ['bf16 inputs, bf16 state', { dtype: 'bfloat16', stateType: 'bfloat16' }, 5, 64, 128],
    ['fp32, odd dstate (scalar path)', {}, 2, 7, 13],
    ['f16, n=256 p=80', { dtype: 'float16' }, 2, 80, 256],
    ['h = g', {}, 2, 8, 16],
  ] as [string, StepExampleOptions, number, number, number][])('%s', async (_name, example, batch, headdim, dstate) => {
    const { state, inputs, ref } = makeStepExample(rng, { batch, nheads: 4, headdim, ngroups: _name === 'h = g' ? 4 : 1, dstate }, { D: 'head', z: true, dtBias: true, ...example });
    const options: SsdStepOptions = { dtSoftplus: true, device: 'cuda' };
    const { y } = await ssdStep(state, inputs, options);
    checkStep(y, state, ref, options);
  });

  test('a state cache with stateIndices and padding: only the picked rows change, padded y is zero', async () => {
    const { state, inputs, ref } = makeStepExample(rng, { batch: 4, nheads: 2, headdim: 8, ngroups: 1, dstate: 16, stateRows: 9 }, { stateIndices: [7, -1, 0, 4], D: 'head', z: true });
    const before = state.toFloat32().slice();
    const options: SsdStepOptions = { dtSoftplus: true, device: 'cuda' };
    const { y } = await ssdStep(state, inputs, options);
    checkStep(y, state, ref, options);
    const rowSize = 2 * 8 * 16;
    const after = state.toFloat32();
    for (const row of [1, 2, 3, 5, 6, 8]) expect(sameBits(after.subarray(row * rowSize, (row + 1) * rowSize), before.subarray(row * rowSize, (row + 1) * rowSize))).toBe(true);
    expect(y.toFloat32().subarray(2 * 8, 4 * 8).every((v) => v === 0)).toBe(true);
  });

  test('device tensors: the step runs in place on the device state; y stays on the device', async () => {
    const { state, inputs, ref } = makeStepExample(rng, { batch: 2, nheads: 4, headdim: 16, ngroups: 1, dstate: 32, stateRows: 3 }, { stateIndices: [2, 0], D: 'channel', z: true, dtBias: true });
    const dState = state.toDevice();
    const dInputs = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, (v as Tensor).toDevice()]));
    const options: SsdStepOptions = { dtSoftplus: true };
    const { y } = await ssdStep(dState, dInputs as never, options);
    expect(y.location).toBe('cuda');
    const yHost = await y.toHost();
    const stateHost = await dState.toHost();
    checkStep(yHost, stateHost, ref, options);
    for (const t of [y, dState, ...Object.values(dInputs)]) t.dispose();
  });

  test('device stateIndices out of range or repeated: rejected, and no state row is written', async () => {
    for (const indices of [[0, 3], [1, 1]]) {
      const { state, inputs } = makeStepExample(rng, { batch: 2, nheads: 2, headdim: 8, ngroups: 1, dstate: 16, stateRows: 3 }, { stateIndices: [0, 1] });
      const dState = state.toDevice();
      const dIdx = new Tensor('int32', Int32Array.from(indices), [2]).toDevice();
      const before = state.toFloat32().slice();
      await expect(ssdStep(dState, { ...inputs, stateIndices: dIdx }, { device: 'cuda' })).rejects.toThrow(SsdError);
      const after = (await dState.toHost()).toFloat32();
      expect(sameBits(after, before)).toBe(true);
      dState.dispose();
      dIdx.dispose();
    }
  });

  test('ssd() on a prefix, then ssdStep() per token, equals ssd() on the whole sequence (bf16, every option on)', async () => {
    const L = 70, prefix = 61;
    const config = { batch: 2, seqlen: L, nheads: 4, headdim: 16, ngroups: 2, dstate: 32 };
    const { inputs } = makeExample(rng, config, { dtype: 'float32', D: 'head', z: true, dtBias: true });
    const options: SsdOptions = { dtSoftplus: true, dtLimit: [0, 0.5], chunkSize: 32, device: 'cuda' };
    const whole = await ssd(inputs, { ...options, returnFinalStates: true });
    const slice = (t: Tensor, from: number, to: number): Tensor => {
      const inner = t.size / (t.dims[0] * t.dims[1]);
      const v = t.toFloat32();
      const out = new Float32Array(t.dims[0] * (to - from) * inner);
      for (let b = 0; b < t.dims[0]; b++) out.set(v.subarray((b * t.dims[1] + from) * inner, (b * t.dims[1] + to) * inner), b * (to - from) * inner);
      return Tensor.fromFloat32('float32', out, [t.dims[0], to - from, ...t.dims.slice(2)]);
    };
    const head = await ssd({ ...inputs, x: slice(inputs.x, 0, prefix), dt: slice(inputs.dt, 0, prefix), B: slice(inputs.B, 0, prefix), C: slice(inputs.C, 0, prefix), z: slice(inputs.z!, 0, prefix) }, { ...options, returnFinalStates: true });
    const state = head.finalStates!.toDevice();
    const yWhole = whole.y.toFloat32();
    const inner = config.nheads * config.headdim;
    for (let t = prefix; t < L; t++) {
      const token = (x: Tensor) => {
        const s = slice(x, t, t + 1);
        return Tensor.fromFloat32('float32', s.toFloat32(), [s.dims[0], ...s.dims.slice(2)]);
      };
      const { y } = await ssdStep(state, { x: token(inputs.x), dt: token(inputs.dt), A: inputs.A, B: token(inputs.B), C: token(inputs.C), D: inputs.D, z: token(inputs.z!), dtBias: inputs.dtBias }, { dtSoftplus: true, dtLimit: [0, 0.5] });
      const yStep = (await y.toHost()).toFloat32();
      y.dispose();
      const expected = new Float32Array(config.batch * inner);
      for (let b = 0; b < config.batch; b++) expected.set(yWhole.subarray((b * L + t) * inner, (b * L + t + 1) * inner), b * inner);
      expect(relativeL2(yStep, expected)).toBeLessThanOrEqual(CUDA_SPLIT_BOUND);
    }
    const final = (await state.toHost()).toFloat32();
    expect(relativeL2(final, whole.finalStates!.toFloat32())).toBeLessThanOrEqual(CUDA_SPLIT_BOUND);
    state.dispose();
  });

  test('repeated steps from the same state give the same bits', async () => {
    const { state, inputs } = makeStepExample(rng, { batch: 16, nheads: 8, headdim: 64, ngroups: 1, dstate: 128 }, { D: 'head', z: true, dtBias: true, dtype: 'bfloat16' });
    const original = state.toFloat32().slice();
    let first: Float32Array | undefined;
    for (let i = 0; i < 5; i++) {
      const s = Tensor.fromFloat32('float32', original.slice(), state.dims); // its own copy: the step writes it
      const { y } = await ssdStep(s, inputs, { dtSoftplus: true, device: 'cuda' });
      const both = Float32Array.from([...y.toFloat32(), ...s.toFloat32()]);
      if (!first) first = both;
      else expect(sameBits(both, first)).toBe(true);
    }
  });
});

/**
 * A host seqIdx of one row runs as its cuSeqlens form (lib/forward.ts, seqIdxAsPacked): the same
 * bits as that form, and within the bound of the reference, as a device seqIdx (kept as seqIdx).
 */
describeGpu('CUDA forward: a host seqIdx of one row runs as the packed sequences it describes', () => {
  test('bits of the cuSeqlens form; a device seqIdx agrees within the bound', async () => {
    const sizes = { nheads: 16, headdim: 64, ngroups: 1, dstate: 64 };
    const lengths = [90, 1, 300, 64, 200];
    const seqlen = lengths.reduce((a, b) => a + b, 0);
    const { inputs, ref } = makeExample(rng, { batch: 1, seqlen, ...sizes }, { dtype: 'bfloat16', D: 'head', z: true, dtBias: true });
    const cu = new Int32Array(lengths.length + 1);
    lengths.forEach((len, k) => (cu[k + 1] = cu[k] + len));
    const ids = new Int32Array(seqlen);
    lengths.forEach((_, k) => ids.fill(3 * k + 1, cu[k], cu[k + 1]));
    const options: SsdOptions = { dtSoftplus: true, chunkSize: 128, returnFinalStates: true, device: 'cuda' };
    const bySeqIdx = await ssd({ ...inputs, seqIdx: new Tensor('int32', ids, [1, seqlen]) }, options);
    const packed = await ssd({ ...inputs, cuSeqlens: new Tensor('int32', cu, [cu.length]) }, options);
    expect(sameBits(bySeqIdx.y.toFloat32(), packed.y.toFloat32()) && sameBits(bySeqIdx.finalStates!.toFloat32(), packed.finalStates!.toFloat32())).toBe(true);
    const deviceIds = new Tensor('int32', ids, [1, seqlen]).toDevice();
    const masked = await ssd({ ...inputs, seqIdx: deviceIds }, options);
    deviceIds.dispose();
    const expected = ssdReference(withOptions({ ...ref, seqIdx: ids }, options));
    const bound = CUDA_FORWARD_BOUND.bfloat16 + ROUNDING_ALLOWANCE * roundingError('bfloat16', expected.y);
    for (const r of [bySeqIdx, masked]) {
      const y = r.y.toFloat32();
      expect(allFinite(y) && l2(y) > 0).toBe(true);
      expect(relativeL2(y, expected.y)).toBeLessThanOrEqual(bound);
      expect(relativeL2(r.finalStates!.toFloat32(), expected.finalStates)).toBeLessThanOrEqual(CUDA_FORWARD_BOUND.bfloat16);
    }
  });
});

/**
 * Each packed sequence is chunked from its own start: the any-size kernels (headdim 16), the fixed
 * shapes' two-launch path (few chains) and their sequential state pass (>= 64 sequence-head chains).
 */
describeGpu('CUDA varlen forward (cuSeqlens) against each sequence alone and the reference', () => {
  const ANY = { nheads: 4, headdim: 16, ngroups: 2, dstate: 32 };
  const FIXED = { nheads: 4, headdim: 64, ngroups: 1, dstate: 64 };
  const CHAINS = { nheads: 16, headdim: 64, ngroups: 2, dstate: 128 };
  test.each([
    ['two sequences, bf16', [20, 45], 'bfloat16', 16, ANY],
    ['around chunk edges, bf16', [63, 64, 65, 1, 128, 127], 'bfloat16', 64, ANY],
    ['empty sequences first, inside and last, fp32', [0, 30, 0, 0, 17, 0], 'float32', 16, ANY],
    ['many short ones, fp32', Array.from({ length: 40 }, (_, i) => (i * 7) % 5), 'float32', 32, ANY],
    ['long sequences, chunk 256, bf16', [300, 1, 511, 200], 'bfloat16', 256, ANY],
    ['fixed shapes, two launches, bf16', [0, 100, 64, 1, 200, 0, 77], 'bfloat16', 64, FIXED],
    ['fixed shapes, sequential pass, bf16', [0, 300, 129, 1, 0, 256, 90], 'bfloat16', 128, CHAINS],
  ] as [string, number[], 'float32' | 'bfloat16', number, typeof ANY][])('%s', async (_name, lengths, dtype, chunkSize, SIZES) => {
    const seqlen = lengths.reduce((a, b) => a + b, 0);
    const example: ExampleOptions = { dtype, D: 'head', z: true, dtBias: true };
    const { inputs, ref } = makeExample(rng, { batch: 1, seqlen, ...SIZES }, example);
    const cu = new Int32Array(lengths.length + 1);
    lengths.forEach((len, k) => (cu[k + 1] = cu[k] + len));
    const options: SsdOptions = { dtSoftplus: true, chunkSize };
    const packed = await ssd({ ...inputs, cuSeqlens: new Tensor('int32', cu, [cu.length]) }, { ...options, device: 'cuda', returnVarlenStates: true, returnFinalStates: true });
    const cpu = ssdSync({ ...inputs, cuSeqlens: new Tensor('int32', cu, [cu.length]) }, { ...options, device: 'cpu', returnVarlenStates: true });
    const { nheads: h, headdim: p, dstate: n } = SIZES;
    const y = packed.y.toFloat32();
    const states = packed.varlenStates!.toFloat32();
    expect(allFinite(y) && allFinite(states)).toBe(true);
    expect(l2(y)).toBeGreaterThan(0);
    const seqIdx = new Int32Array(seqlen);
    lengths.forEach((_, k) => seqIdx.fill(k, cu[k], cu[k + 1]));
    const expected = ssdReference(withOptions({ ...ref, seqIdx }, options));
    const bound = CUDA_FORWARD_BOUND[dtype] + ROUNDING_ALLOWANCE * roundingError(dtype, expected.y);
    expect(relativeL2(y, expected.y)).toBeLessThanOrEqual(bound);
    expect(relativeL2(y, cpu.y.toFloat32())).toBeLessThanOrEqual(bound);
    expect(relativeL2(states, cpu.varlenStates!.toFloat32())).toBeLessThanOrEqual(CUDA_FORWARD_BOUND[dtype]);
    lengths.forEach((len, k) => {
      const s = states.subarray(k * h * p * n, (k + 1) * h * p * n);
      if (len === 0) {
        expect(s.every((v) => v === 0)).toBe(true);
        return;
      }
      expect(l2(s)).toBeGreaterThan(0);
      const alone = ssdReference(withOptions({ ...ref, seqlen: len, x: Array.prototype.slice.call(ref.x, cu[k] * h * p, cu[k + 1] * h * p), dt: Array.prototype.slice.call(ref.dt, cu[k] * h, cu[k + 1] * h), B: Array.prototype.slice.call(ref.B, cu[k] * SIZES.ngroups * n, cu[k + 1] * SIZES.ngroups * n), C: Array.prototype.slice.call(ref.C, cu[k] * SIZES.ngroups * n, cu[k + 1] * SIZES.ngroups * n), z: ref.z && Array.prototype.slice.call(ref.z, cu[k] * h * p, cu[k + 1] * h * p) }, options));
      expect(relativeL2(s, alone.finalStates)).toBeLessThanOrEqual(CUDA_FORWARD_BOUND[dtype]);
    });
  });
});
