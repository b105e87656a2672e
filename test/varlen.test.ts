/**
 * Variable-length sequences in the forward (inputs.cuSeqlens, options.returnVarlenStates): packing
 * k sequences into one row and running once equals running each alone, for every option, awkward
 * lengths (0, 1, around the CPU's 64-token blocks), dtypes and instruction sets; both match the
 * float64 reference; the cuSeqlens form gives the bits of the equivalent seqIdx form; bad input.
 * The backward of a packed call: the bits of the seqIdx form, each sequence's gradients those of
 * the float64 reference backward of that sequence alone.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { SsdError, Tensor, ssd, ssdBackward, ssdBackwardSync, ssdSync, ssdWithGrad, type SsdGrads, type SsdInputs, type SsdOptions } from '../lib/index';
import { ssdReferenceBackward } from '../lib/reference-backward';
import { GRAD_NAMES } from '../lib/validate-backward';
import { native } from '../lib/native';
import { OPTION_NAMES } from '../lib/validate';
import { defaultNativeOptions, sameBits } from './helpers';
import { Random, allFinite, l2, makeExample, relativeL2, roundingError, ssdReference, withOptions, type ExampleOptions, type RefInputs } from './reference';
import { BF16_STEP, CPU_BOUND, ROUNDING_ALLOWANCE } from '../lib/tolerances';

const rng = new Random(20261201);
const SIZES = { nheads: 4, headdim: 12, ngroups: 2, dstate: 20 };

function offsets(lengths: number[]): Int32Array {
  const cu = new Int32Array(lengths.length + 1);
  lengths.forEach((len, k) => (cu[k + 1] = cu[k] + len));
  return cu;
}

/** Positions [from, to) of a (1, L, ...) tensor. */
function slice(t: Tensor, from: number, to: number): Tensor {
  const inner = t.size / t.dims[1];
  const values = t.toFloat32().slice(from * inner, to * inner);
  return Tensor.fromFloat32(t.type as 'float32', values, [1, to - from, ...t.dims.slice(2)]);
}

function sliceRef(ref: RefInputs, from: number, to: number): RefInputs {
  const part = (a: ArrayLike<number>, inner: number) => Array.prototype.slice.call(a, from * inner, to * inner) as number[];
  const { nheads: h, headdim: p, ngroups: g, dstate: n } = ref;
  return { ...ref, seqlen: to - from, x: part(ref.x, h * p), dt: part(ref.dt, h), B: part(ref.B, g * n), C: part(ref.C, g * n), z: ref.z && part(ref.z, h * p) };
}

/**
 * Packs sequences of `lengths` into one row, runs ssdSync once with cuSeqlens, each non-empty
 * sequence alone, and the float64 reference per sequence; checks y and the final states.
 */
function checkPacked(lengths: number[], example: ExampleOptions, options: SsdOptions): void {
  const seqlen = lengths.reduce((a, b) => a + b, 0);
  const { inputs, ref } = makeExample(rng, { batch: 1, seqlen, ...SIZES }, example);
  const cu = offsets(lengths);
  const packed = ssdSync({ ...inputs, cuSeqlens: new Tensor('int32', cu, [cu.length]) }, { ...options, returnVarlenStates: true, returnFinalStates: true });
  const { nheads: h, headdim: p, dstate: n } = SIZES;
  expect(packed.varlenStates!.dims).toEqual([lengths.length, h, p, n]);
  expect(packed.varlenStates!.type).toBe('float32');
  const y = packed.y.toFloat32();
  const states = packed.varlenStates!.data as Float32Array;
  expect(allFinite(y) && allFinite(states)).toBe(true);
  expect(l2(y)).toBeGreaterThan(0);
  const rounding = (values: Float64Array) => roundingError(packed.y.type as 'float32', values);
  let lastNonEmpty = -1;
  lengths.forEach((len, k) => {
    const state = states.subarray(k * h * p * n, (k + 1) * h * p * n);
    if (len === 0) {
      expect(state.every((v) => v === 0)).toBe(true);
      return;
    }
    lastNonEmpty = k;
    const [from, to] = [cu[k], cu[k + 1]];
    const alone = ssdSync(
      { ...inputs, x: slice(inputs.x, from, to), dt: slice(inputs.dt, from, to), B: slice(inputs.B, from, to), C: slice(inputs.C, from, to), z: inputs.z && slice(inputs.z, from, to) },
      { ...options, returnFinalStates: true },
    );
    const expected = ssdReference(withOptions(sliceRef(ref, from, to), options));
    const ySeq = y.subarray(from * h * p, to * h * p);
    expect(l2(state)).toBeGreaterThan(0);
    expect(relativeL2(ySeq, alone.y.toFloat32())).toBeLessThanOrEqual(CPU_BOUND + ROUNDING_ALLOWANCE * rounding(expected.y));
    expect(relativeL2(ySeq, expected.y)).toBeLessThanOrEqual(CPU_BOUND + ROUNDING_ALLOWANCE * rounding(expected.y));
    expect(relativeL2(state, alone.finalStates!.toFloat32())).toBeLessThanOrEqual(CPU_BOUND);
    expect(relativeL2(state, expected.finalStates)).toBeLessThanOrEqual(CPU_BOUND);
  });
  // finalStates: the state after the last position, i.e. of the last non-empty sequence
  expect(packed.finalStates!.data).toEqual(states.slice(lastNonEmpty * h * p * n, (lastNonEmpty + 1) * h * p * n));
}

describe('packing k sequences equals running each alone', () => {
  test.each([
    ['one sequence', [37]],
    ['two sequences', [20, 45]],
    ['lengths 1 and 2', [1, 2, 1, 1]],
    ['around the 64-token blocks', [63, 64, 65, 1, 128, 127]],
    ['empty sequences first, inside and last', [0, 30, 0, 0, 17, 0]],
    ['many short ones', Array.from({ length: 40 }, (_, i) => (i * 7) % 5)],
  ])('%s: %j', (_name, lengths) => {
    checkPacked(lengths, { z: true, dtBias: true, D: 'channel' }, { dtSoftplus: true, chunkSize: 16 });
  });

  const combos: [string, ExampleOptions, SsdOptions][] = [];
  for (const D of ['none', 'head', 'channel'] as const)
    for (const z of [false, true])
      for (const dtBias of [false, true])
        for (const dtSoftplus of [false, true])
          for (const clamp of [false, true]) {
            const options: SsdOptions = { dtSoftplus };
            if (clamp) options.dtLimit = [0.01, 0.04];
            combos.push([`D=${D} z=${z} dtBias=${dtBias} softplus=${dtSoftplus} clamp=${clamp}`, { D, z, dtBias, positiveDt: !dtSoftplus }, options]);
          }
  test.each(combos)('every option: %s', (_name, example, options) => checkPacked([9, 0, 70, 3], example, options));

  test.each(['bfloat16', 'float16'] as const)('%s inputs', (dtype) => {
    checkPacked([33, 80, 2], { dtype, z: true, dtBias: true }, { dtSoftplus: true, dtLimit: [0.001, 0.5] });
  });
});

describe('cuSeqlens and seqIdx', () => {
  test('the cuSeqlens form gives the bits of the seqIdx form (y and finalStates)', () => {
    const lengths = [10, 64, 0, 65, 3];
    const cu = offsets(lengths);
    const seqlen = cu[cu.length - 1];
    const { inputs } = makeExample(rng, { batch: 1, seqlen, ...SIZES }, { z: true, dtBias: true });
    const seq = new Int32Array(seqlen);
    lengths.forEach((_, k) => seq.fill(k, cu[k], cu[k + 1]));
    const options: SsdOptions = { dtSoftplus: true, returnFinalStates: true };
    const a = ssdSync({ ...inputs, cuSeqlens: new Tensor('int32', cu, [cu.length]) }, options);
    const b = ssdSync({ ...inputs, seqIdx: new Tensor('int32', seq, [1, seqlen]) }, options);
    expect(l2(a.y.data as Float32Array)).toBeGreaterThan(0);
    expect(sameBits(a.y, b.y)).toBe(true);
    expect(sameBits(a.finalStates!, b.finalStates!)).toBe(true);
  });

  test('ssd() gives the bits of ssdSync(), and options.out.varlenStates is filled and returned', async () => {
    const lengths = [40, 1, 90];
    const cu = new Tensor('int32', offsets(lengths), [4]);
    const { inputs } = makeExample(rng, { batch: 1, seqlen: 131, ...SIZES }, { z: true });
    const options: SsdOptions = { dtSoftplus: true, returnVarlenStates: true };
    const sync = ssdSync({ ...inputs, cuSeqlens: cu }, options);
    const varlenStates = new Tensor('float32', new Float32Array(3 * 4 * 12 * 20).fill(NaN), [3, 4, 12, 20]);
    const pending = ssd({ ...inputs, cuSeqlens: cu }, { ...options, out: { varlenStates } });
    expect(pending).toBeInstanceOf(Promise);
    const async = await pending;
    expect(async.varlenStates).toBe(varlenStates);
    expect(async.finalStates).toBeUndefined();
    expect(sameBits(sync.y, async.y)).toBe(true);
    expect(sameBits(sync.varlenStates!, varlenStates)).toBe(true);
  });

  test('threads = 1 and threads = many give the same bits', () => {
    const cu = new Tensor('int32', offsets([50, 0, 77, 20]), [5]);
    const { inputs } = makeExample(rng, { batch: 1, seqlen: 147, nheads: 6, headdim: 40, ngroups: 3, dstate: 24 }, { z: true });
    const one = ssdSync({ ...inputs, cuSeqlens: cu }, { dtSoftplus: true, returnVarlenStates: true, threads: 1 });
    for (const threads of [2, 5]) {
      const many = ssdSync({ ...inputs, cuSeqlens: cu }, { dtSoftplus: true, returnVarlenStates: true, threads });
      expect(sameBits(one.y, many.y)).toBe(true);
      expect(sameBits(one.varlenStates!, many.varlenStates!)).toBe(true);
    }
  });
});

describe('the backward of a packed call', () => {
  /** The seqIdx row equivalent to `cu`. */
  function seqIdxOf(cu: Int32Array): Int32Array {
    const seq = new Int32Array(cu[cu.length - 1]);
    for (let k = 0; k + 1 < cu.length; k++) seq.fill(k, cu[k], cu[k + 1]);
    return seq;
  }

  type Options = Omit<SsdOptions, 'out'>;
  const cases: [string, number[], ExampleOptions, Options][] = [
    ['every option, an empty sequence inside and last', [9, 0, 40, 17, 0], { D: 'channel', z: true, dtBias: true }, { dtSoftplus: true, dtLimit: [0.001, 0.5] }],
    ['D per head, lengths 1 and 2', [1, 2, 1, 30], { D: 'head' }, { dtSoftplus: true }],
    ['bfloat16, an empty sequence first', [0, 33, 20], { dtype: 'bfloat16', z: true }, { dtSoftplus: true }],
  ];
  test.each(cases)('%s: the bits of the seqIdx form, and each sequence its own reference backward', (_name, lengths, example, options) => {
    const cu = offsets(lengths);
    const L = cu[cu.length - 1];
    const { inputs, ref } = makeExample(rng, { batch: 1, seqlen: L, ...SIZES }, example);
    const { nheads: h, headdim: p, dstate: n } = SIZES;
    const dy = Tensor.fromFloat32(inputs.x.type as 'float32', rng.normals(L * h * p), [1, L, h, p]);
    const dFinalStates = new Tensor('float32', rng.normals(h * p * n), [1, h, p, n]);
    const packed = ssdBackwardSync({ ...inputs, cuSeqlens: new Tensor('int32', cu, [cu.length]) }, { dy, dFinalStates }, { ...options, returnVarlenStates: true });
    const seqIdx = ssdBackwardSync({ ...inputs, seqIdx: new Tensor('int32', seqIdxOf(cu), [1, L]) }, { dy, dFinalStates }, options);
    for (const key of GRAD_NAMES) {
      expect(packed[key] === undefined).toBe(seqIdx[key] === undefined);
      if (packed[key]) expect(sameBits(packed[key]!, seqIdx[key]!)).toBe(true);
    }
    // Each sequence alone: its per-position gradients are its slice; the summed ones add up. dFinalStates
    // reaches the last non-empty sequence only (finalStates is the state after the last position).
    const rounding = (type: string, values: Float64Array): number => ROUNDING_ALLOWANCE * roundingError(type as 'float32', values);
    const lastNonEmpty = lengths.reduce((last, len, k) => (len > 0 ? k : last), -1);
    const sums = { dA: new Float64Array(h), dD: new Float64Array(ref.D ? ref.D.length : 0), dDtBias: new Float64Array(h) };
    lengths.forEach((len, k) => {
      if (len === 0) return;
      const [from, to] = [cu[k], cu[k + 1]];
      const dySeq = (dy.toFloat32() as Float32Array).slice(from * h * p, to * h * p);
      const want = ssdReferenceBackward(withOptions(sliceRef(ref, from, to), options), dySeq, k === lastNonEmpty ? dFinalStates.data as Float32Array : undefined);
      const perPosition: [keyof SsdGrads, Float64Array, number][] = [
        ['dx', want.dx, h * p],
        ['ddt', want.ddt, h],
        ['dB', want.dB, SIZES.ngroups * n],
        ['dC', want.dC, SIZES.ngroups * n],
      ];
      if (want.dz) perPosition.push(['dz', want.dz, h * p]);
      for (const [key, values, inner] of perPosition) {
        const got = packed[key]!.toFloat32().slice(from * inner, to * inner);
        expect(relativeL2(got, values)).toBeLessThanOrEqual(CPU_BOUND + rounding(packed[key]!.type, values));
      }
      want.dA.forEach((v, i) => (sums.dA[i] += v));
      want.dD?.forEach((v, i) => (sums.dD[i] += v));
      want.dDtBias?.forEach((v, i) => (sums.dDtBias[i] += v));
    });
    expect(relativeL2(packed.dA.toFloat32(), sums.dA)).toBeLessThanOrEqual(CPU_BOUND);
    if (packed.dD) expect(relativeL2(packed.dD.toFloat32(), sums.dD)).toBeLessThanOrEqual(CPU_BOUND);
    if (packed.dDtBias) expect(relativeL2(packed.dDtBias.toFloat32(), sums.dDtBias)).toBeLessThanOrEqual(CPU_BOUND);
  });

  test('ssdBackward() and ssdWithGrad() give the bits of ssdBackwardSync(); bad offsets are refused', async () => {
    const cu = new Tensor('int32', offsets([20, 0, 31]), [4]);
    const { inputs } = makeExample(rng, { batch: 1, seqlen: 51, ...SIZES }, { z: true });
    const dy = new Tensor('float32', rng.normals(51 * 4 * 12), [1, 51, 4, 12]);
    const options: Options = { dtSoftplus: true };
    const sync = ssdBackwardSync({ ...inputs, cuSeqlens: cu }, { dy }, options);
    const async = await ssdBackward({ ...inputs, cuSeqlens: cu }, { dy }, options);
    const { backward } = await ssdWithGrad({ ...inputs, cuSeqlens: cu }, { ...options, returnVarlenStates: true });
    const bound = await backward({ dy });
    for (const key of GRAD_NAMES) {
      if (!sync[key]) continue;
      expect(sameBits(sync[key]!, async[key]!)).toBe(true);
      expect(sameBits(sync[key]!, bound[key]!)).toBe(true);
    }
    expect(() => ssdBackwardSync({ ...inputs, cuSeqlens: new Tensor('int32', Int32Array.from([0, 30, 20, 51]), [4]) }, { dy }, options)).toThrow(
      /Expected non-decreasing values in inputs.cuSeqlens but received 20 after 30 at index 2/,
    );
  });
});

describe('bad input', () => {
  const cuOf = (values: number[], dims = [values.length]) => new Tensor('int32', Int32Array.from(values), dims);
  const base = (batch = 1, o: ExampleOptions = {}): SsdInputs => makeExample(new Random(4), { batch, seqlen: 10, ...SIZES }, o).inputs;

  test.each([
    ['batch 2', () => ({ ...base(2), cuSeqlens: cuOf([0, 10]) }), {}, 'ERR_SSD_SHAPE', /Expected batch \(x.dims\[0\]\) 1 with inputs.cuSeqlens .* but received 2/],
    ['with seqIdx', () => ({ ...base(1, { seqStarts: [4] }), cuSeqlens: cuOf([0, 10]) }), {}, 'ERR_SSD_VALUE', /Expected inputs.seqIdx or inputs.cuSeqlens, not both/],
    ['with initialStates', () => ({ ...base(1, { initialStates: true }), cuSeqlens: cuOf([0, 10]) }), {}, 'ERR_SSD_VALUE', /Expected no inputs.initialStates with inputs.cuSeqlens/],
    ['not starting at 0', () => ({ ...base(), cuSeqlens: cuOf([1, 10]) }), {}, 'ERR_SSD_VALUE', /Expected inputs.cuSeqlens\[0\] to be 0 but received 1/],
    ['decreasing', () => ({ ...base(), cuSeqlens: cuOf([0, 6, 4, 10]) }), {}, 'ERR_SSD_VALUE', /Expected non-decreasing values in inputs.cuSeqlens but received 4 after 6 at index 2/],
    ['not ending at seqlen', () => ({ ...base(), cuSeqlens: cuOf([0, 4, 9]) }), {}, 'ERR_SSD_VALUE', /Expected the last value of inputs.cuSeqlens to be seqlen \(x.dims\[1\]\) = 10 but received 9/],
    ['returnVarlenStates without cuSeqlens', () => base(), { returnVarlenStates: true }, 'ERR_SSD_OPTION', /options.returnVarlenStates needs inputs.cuSeqlens/],
    ['out.varlenStates without returnVarlenStates', () => ({ ...base(), cuSeqlens: cuOf([0, 10]) }), { out: { varlenStates: new Tensor('float32', new Float32Array(960), [1, 4, 12, 20]) } }, 'ERR_SSD_OPTION', /options.out.varlenStates is given but options.returnVarlenStates is not true/],
    ['out.varlenStates of other dims', () => ({ ...base(), cuSeqlens: cuOf([0, 5, 10]) }), { returnVarlenStates: true, out: { varlenStates: new Tensor('float32', new Float32Array(960), [1, 4, 12, 20]) } }, 'ERR_SSD_SHAPE', /Expected dims \[2, 4, 12, 20\] \(numSeqs, nheads, headdim, dstate\) for options.out.varlenStates but received \[1, 4, 12, 20\]/],
  ] as [string, () => SsdInputs, SsdOptions, string, RegExp][])('%s', async (_name, make, options, code, message) => {
    for (const call of [() => ssdSync(make(), options), () => ssd(make(), options)]) {
      let error: unknown;
      try {
        await call();
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(SsdError);
      expect((error as SsdError).code).toBe(code);
      expect((error as Error).message).toMatch(message);
    }
  });

  test.each([
    ['a float32 cuSeqlens', () => new Tensor('float32', Float32Array.from([0, 10]), [2]), TypeError, /Expected a Tensor of type 'int32' for inputs.cuSeqlens but received a Tensor of type 'float32'/],
    ['a 2-D cuSeqlens', () => cuOf([0, 10], [1, 2]), RangeError, /Expected a 1-D tensor \(numSeqs \+ 1\) for inputs.cuSeqlens but received 2-D dims \[1, 2\]/],
    ['a single offset', () => cuOf([0]), RangeError, /Expected at least 2 offsets \(one sequence\) for inputs.cuSeqlens but received dims \[1\]/],
  ] as [string, () => Tensor, typeof TypeError, RegExp][])('%s', (_name, make, kind, message) => {
    expect(() => ssdSync({ ...base(), cuSeqlens: make() })).toThrow(kind);
    expect(() => ssdSync({ ...base(), cuSeqlens: make() })).toThrow(message);
  });
});

test('the native code re-checks the offsets before writing (when the TypeScript checks are bypassed)', () => {
  const { inputs } = makeExample(new Random(5), { batch: 1, seqlen: 10, ...SIZES }, { D: 'none' });
  const y = new Float32Array(10 * 4 * 12).fill(7);
  const args = {
    dims: [1, 10, 4, 12, 2, 20], ...defaultNativeOptions(OPTION_NAMES), x: inputs.x.data, xType: 0, dt: inputs.dt.data, dtType: 0, A: inputs.A.data as Float32Array,
    B: inputs.B.data, BType: 0, C: inputs.C.data, CType: 0, D: null, dPerChannel: false, z: null, zType: 0, dtBias: null, initialStates: null,
    seqIdx: null, y, yType: 0, finalStates: null, numSeqs: 2,
  };
  for (const [cu, message] of [
    [[0, 6, 9], /cu_seqlens must start at 0 and end at seqlen \(10\), got 0 and 9/],
    [[1, 6, 10], /cu_seqlens must start at 0 and end at seqlen \(10\), got 1 and 10/],
    [[0, 11, 10], /cu_seqlens must be non-decreasing, got 10 after 11 at index 2/],
  ] as [number[], RegExp][]) {
    let error: unknown;
    try {
      native().forwardSync({ ...args, cuSeqlens: Int32Array.from(cu) });
    } catch (err) {
      error = err;
    }
    expect((error as { code?: string }).code).toBe('ERR_SSD_INVALID_ARGUMENT');
    expect((error as Error).message).toMatch(message);
  }
  expect(() => native().forwardSync({ ...args, cuSeqlens: new Int32Array(2) })).toThrow(/Expected 12 bytes for cuSeqlens but received 8/);
  expect(y.every((v) => v === 7)).toBe(true);
});

describe('instruction sets', () => {
  const order = ['scalar', 'avx2', 'avx512'];
  const script = `
    const lib = require('./dist/lib/index.js');
    const { Random, makeExample } = require('./dist/lib/examples.js');
    const { relativeL2, l2, allFinite } = require('./dist/lib/reference.js');
    const rng = new Random(12);
    const lengths = [30, 0, 66, 1, 64];
    const cu = new Int32Array(lengths.length + 1);
    lengths.forEach((len, k) => (cu[k + 1] = cu[k] + len));
    const L = cu[lengths.length];
    const rows = [];
    for (const dtype of ['float32', 'bfloat16']) {
      const { inputs } = makeExample(rng, { batch: 1, seqlen: L, nheads: 3, headdim: 19, ngroups: 1, dstate: 21 }, { dtype, z: true, D: 'channel' });
      const packed = lib.ssdSync({ ...inputs, cuSeqlens: new lib.Tensor('int32', cu, [cu.length]) }, { dtSoftplus: true, returnVarlenStates: true });
      const hpn = 3 * 19 * 21;
      lengths.forEach((len, k) => {
        if (len === 0) return;
        const part = (t) => { const inner = t.size / L; return lib.Tensor.fromFloat32(t.type, t.toFloat32().slice(cu[k] * inner, cu[k + 1] * inner), [1, len, ...t.dims.slice(2)]); };
        const alone = lib.ssdSync({ ...inputs, x: part(inputs.x), dt: part(inputs.dt), B: part(inputs.B), C: part(inputs.C), z: part(inputs.z) }, { dtSoftplus: true, returnFinalStates: true });
        const y = packed.y.toFloat32().slice(cu[k] * 3 * 19, cu[k + 1] * 3 * 19);
        const s = packed.varlenStates.data.slice(k * hpn, (k + 1) * hpn);
        // Two bf16 roundings of fp32 values that agree to ~1e-7 differ by at most one bf16 step (2^-8 relative).
        rows.push({ finite: allFinite(y) && allFinite(s), norm: l2(s), yError: relativeL2(y, alone.y.toFloat32()), yRounding: dtype === 'float32' ? 0 : ${BF16_STEP},
                    stateError: relativeL2(s, alone.finalStates.data) });
      });
    }
    console.log(JSON.stringify({ isa: lib.backends().cpu.isa, best: lib.backends().cpu.bestIsa, rows }));
  `;
  test.each(order)('%s: packed equals alone', (isa) => {
    const r = spawnSync(process.execPath, ['-e', script], { cwd: path.join(__dirname, '..'), encoding: 'utf8', env: { ...process.env, SSD_KERNELS_CPU_ISA: isa } });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { isa: string; best: string; rows: { finite: boolean; norm: number; yError: number; yRounding: number; stateError: number }[] };
    expect(out.isa).toBe(order.indexOf(isa) <= order.indexOf(out.best) ? isa : out.best);
    expect(out.rows).toHaveLength(8);
    for (const row of out.rows) {
      expect(row.finite).toBe(true);
      expect(row.norm).toBeGreaterThan(0);
      expect(row.yError).toBeLessThanOrEqual(CPU_BOUND + row.yRounding);
      expect(row.stateError).toBeLessThanOrEqual(CPU_BOUND);
    }
  });
});
