/**
 * The backward of a call packed with cuSeqlens, which the native backward takes as it is (the CPU
 * backend runs it as the equivalent seqIdx row): odd lengths (empty sequences first, inside and last,
 * length 1, 63, 64 and 65 around the 64-token blocks, a partial last chunk) against the float64
 * reference backward, with and without dFinalStates, in float32 and bfloat16; no NaN or Inf, nonzero
 * gradients; the bits of the seqIdx form and of the asynchronous call; and the native contract
 * (offsets re-checked when the TypeScript checks are bypassed, no varlenStates, no dInitialStates).
 */
import { SsdError, Tensor, ssdBackward, ssdBackwardSync, type SsdGrads, type SsdOptions } from '../lib/index';
import { ssdReferenceBackward } from '../lib/reference-backward';
import { GRAD_NAMES } from '../lib/validate-backward';
import { native, type NativeBackwardArgs } from '../lib/native';
import { OPTION_NAMES } from '../lib/validate';
import { defaultNativeOptions, sameBits } from './helpers';
import { Random, allFinite, l2, makeExample, relativeL2, roundingError, withOptions, type ExampleOptions } from './reference';
import { CPU_BOUND, ROUNDING_ALLOWANCE } from '../lib/tolerances';

const rng = new Random(20261207);
const SIZES = { nheads: 4, headdim: 10, ngroups: 2, dstate: 12 };

function offsets(lengths: number[]): Int32Array {
  const cu = new Int32Array(lengths.length + 1);
  lengths.forEach((len, k) => (cu[k + 1] = cu[k] + len));
  return cu;
}

/** The seqIdx row a pack is defined by: sequence k's positions get k. */
function seqIdxOf(cu: Int32Array): Int32Array {
  const seq = new Int32Array(cu[cu.length - 1]);
  for (let k = 0; k + 1 < cu.length; k++) seq.fill(k, cu[k], cu[k + 1]);
  return seq;
}

type Options = Omit<SsdOptions, 'out'>;
const LENGTHS: [string, number[]][] = [
  ['0, 1, 63, 64, 65, 0, 37', [0, 1, 63, 64, 65, 0, 37]],
  ['65 then an empty last', [65, 0]],
  ['one sequence of 1', [1]],
  ['two empty first, then 5', [0, 0, 5]],
  ['64, 64 (whole chunks)', [64, 64]],
  ['127, 2 (a partial last chunk)', [127, 2]],
];
const cases: [string, number[], ExampleOptions, Options, boolean][] = [];
for (const [name, lengths] of LENGTHS) {
  cases.push([`${name}, float32, every option, dFinalStates`, lengths, { D: 'channel', z: true, dtBias: true }, { dtSoftplus: true, dtLimit: [0.001, 0.5], chunkSize: 64 }, true]);
  cases.push([`${name}, bfloat16, no dFinalStates`, lengths, { dtype: 'bfloat16', D: 'head', z: true }, { dtSoftplus: true, chunkSize: 64 }, false]);
}

describe('the backward of a packed call against the float64 reference', () => {
  test.each(cases)('%s', async (_name, lengths, example, options, final) => {
    const cu = offsets(lengths);
    const L = cu[cu.length - 1];
    const { inputs, ref } = makeExample(rng, { batch: 1, seqlen: L, ...SIZES }, example);
    const { nheads: h, headdim: p, dstate: n } = SIZES;
    const dy = Tensor.fromFloat32(inputs.x.type as 'float32', rng.normals(L * h * p), [1, L, h, p]);
    const dFinalStates = final ? new Tensor('float32', rng.normals(h * p * n), [1, h, p, n]) : undefined;
    const grads = { dy, ...(dFinalStates ? { dFinalStates } : {}) };
    const packedInputs = { ...inputs, cuSeqlens: new Tensor('int32', cu, [cu.length]) };
    const packed = ssdBackwardSync(packedInputs, grads, options);
    const want = ssdReferenceBackward(withOptions({ ...ref, seqIdx: seqIdxOf(cu) }, options), dy.toFloat32(), dFinalStates?.toFloat32());
    for (const key of GRAD_NAMES) {
      const expected = want[key];
      const got = packed[key];
      expect(got === undefined).toBe(expected === undefined);
      if (got === undefined || expected === undefined) continue;
      const values = got.toFloat32();
      expect(allFinite(values)).toBe(true);
      const reference = Float64Array.from(expected);
      if (l2(reference) === 0) {
        expect(l2(values)).toBe(0);
        continue;
      }
      expect(l2(values)).toBeGreaterThan(0);
      const bound = CPU_BOUND + ROUNDING_ALLOWANCE * roundingError(got.type as 'float32', reference);
      const error = relativeL2(values, reference);
      if (!(error <= bound)) throw new Error(`${key}: relative L2 error ${error} above ${bound}`);
    }
    // the pack is its seqIdx row, bit for bit; the asynchronous call gives the same bits
    const bySeqIdx = ssdBackwardSync({ ...inputs, seqIdx: new Tensor('int32', seqIdxOf(cu), [1, L]) }, grads, options);
    const async = await ssdBackward(packedInputs, grads, options);
    for (const key of GRAD_NAMES) {
      if (packed[key] === undefined) continue;
      expect(sameBits(packed[key]!, bySeqIdx[key]!)).toBe(true);
      expect(sameBits(packed[key]!, async[key]!)).toBe(true);
    }
  });

  test('dFinalStates reaches only the last non-empty sequence', () => {
    const lengths = [20, 33, 0];
    const cu = offsets(lengths);
    const L = cu[cu.length - 1];
    const { inputs } = makeExample(rng, { batch: 1, seqlen: L, ...SIZES }, { z: true });
    const { nheads: h, headdim: p, dstate: n } = SIZES;
    const dy = new Tensor('float32', new Float32Array(L * h * p), [1, L, h, p]); // zero: only dFinalStates drives the gradients
    const dFinalStates = new Tensor('float32', rng.normals(h * p * n), [1, h, p, n]);
    const g: SsdGrads = ssdBackwardSync({ ...inputs, cuSeqlens: new Tensor('int32', cu, [cu.length]) }, { dy, dFinalStates }, { dtSoftplus: true });
    const dx = g.dx.toFloat32();
    const first = dx.slice(0, cu[1] * h * p);
    const second = dx.slice(cu[1] * h * p, cu[2] * h * p);
    expect(l2(first)).toBe(0);
    expect(l2(second)).toBeGreaterThan(0);
  });
});

describe('the native backward takes cuSeqlens', () => {
  const L = 12;
  const { inputs } = makeExample(new Random(6), { batch: 1, seqlen: L, ...SIZES }, { D: 'none' });
  const { nheads: h, headdim: p, ngroups: g, dstate: n } = SIZES;
  const dx = (): Float32Array => new Float32Array(L * h * p).fill(7);
  const args = (): NativeBackwardArgs => ({
    dims: [1, L, h, p, g, n], ...defaultNativeOptions(OPTION_NAMES), dtSoftplus: true, x: inputs.x.data, xType: 0, dt: inputs.dt.data, dtType: 0,
    A: inputs.A.data as Float32Array, B: inputs.B.data, BType: 0, C: inputs.C.data, CType: 0, D: null, dPerChannel: false, z: null, zType: 0,
    dtBias: null, initialStates: null, seqIdx: null, numSeqs: 2, cuSeqlens: Int32Array.from([0, 5, L]), varlenStates: null,
    dy: new Float32Array(L * h * p).fill(1), dyType: 0, dFinalStates: null, dx: dx(), ddt: true, dA: true, dB: true, dC: true,
    dD: null, dz: null, dDtBias: null, dInitialStates: null,
  });

  test('host offsets are re-checked when the TypeScript checks are bypassed, and nothing is written', () => {
    for (const [cu, message] of [
      [[0, 6, 11], /cu_seqlens must start at 0 and end at seqlen \(12\), got 0 and 11/],
      [[1, 6, 12], /cu_seqlens must start at 0 and end at seqlen \(12\), got 1 and 12/],
      [[0, 13, 12], /cu_seqlens must be non-decreasing, got 12 after 13 at index 2/],
    ] as [number[], RegExp][]) {
      const a = { ...args(), cuSeqlens: Int32Array.from(cu) };
      let error: unknown;
      try {
        native().backwardSync(a);
      } catch (err) {
        error = err;
      }
      expect((error as { code?: string }).code).toBe('ERR_SSD_INVALID_ARGUMENT');
      expect((error as Error).message).toMatch(message);
      expect((a.dx as Float32Array).every((v) => v === 7)).toBe(true);
    }
    expect(() => native().backwardSync({ ...args(), cuSeqlens: new Int32Array(2) })).toThrow(/Expected 12 bytes for cuSeqlens but received 8/);
  });

  test('valid offsets run; varlenStates is refused (a forward output, with no gradient)', () => {
    const a = args();
    native().backwardSync(a);
    expect(allFinite(a.dx as Float32Array)).toBe(true);
    expect(l2(a.dx as Float32Array)).toBeGreaterThan(0);
    let error: unknown;
    try {
      native().backwardSync({ ...args(), varlenStates: new Float32Array(2 * h * p * n) });
    } catch (err) {
      error = err;
    }
    // a TypeError of the addon's realm (jest runs tests in another): checked by name
    expect((error as Error).name).toBe('TypeError');
    expect((error as Error).message).toMatch(/Expected no varlenStates in a backward call/);
  });

  test('the public API refuses bad offsets with an SsdError naming inputs.cuSeqlens', () => {
    const dy = new Tensor('float32', new Float32Array(L * h * p), [1, L, h, p]);
    for (const [cu, message] of [
      [[0, 8, 4, L], /Expected non-decreasing values in inputs.cuSeqlens but received 4 after 8 at index 2/],
      [[0, 4, L - 1], /Expected the last value of inputs.cuSeqlens to be seqlen \(x.dims\[1\]\) = 12 but received 11/],
    ] as [number[], RegExp][]) {
      let error: unknown;
      try {
        ssdBackwardSync({ ...inputs, cuSeqlens: new Tensor('int32', Int32Array.from(cu), [cu.length]) }, { dy });
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(SsdError);
      expect((error as SsdError).code).toBe('ERR_SSD_VALUE');
      expect((error as Error).message).toMatch(message);
    }
  });
});
