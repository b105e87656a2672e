/**
 * returnUngated on the CPU: the forward's yUngated (y before the gate) against the float64 reference
 * for every option combination with z, the same y as without it, varlen packing, options.out, the
 * backward taking it (the CPU backward recomputes, so its gradients are bitwise those without it),
 * ssdWithGrad handing it over, and the validation of both options. The CUDA side is in
 * test/cuda/backward.cuda.test.ts.
 */
import { SsdError, Tensor, ssd, ssdBackwardSync, ssdSync, ssdWithGrad, type SsdInputs, type SsdOptions } from '../lib/index';
import { GRAD_NAMES } from '../lib/validate-backward';
import { Random, allFinite, l2, makeExample, relativeL2, roundingError, ssdReference, withOptions, type ExampleConfig } from './reference';
import { optionCombinations, sameBits } from './helpers';
import { CPU_BOUND, ROUNDING_ALLOWANCE } from '../lib/tolerances';

const rng = new Random(20261129);
const CONFIG: ExampleConfig = { batch: 2, seqlen: 37, nheads: 4, headdim: 8, ngroups: 2, dstate: 8 };

function expectUngated(yu: Tensor, want: Float64Array, dtype: 'float32' | 'bfloat16' | 'float16'): number {
  const values = yu.toFloat32();
  expect(yu.type).toBe(dtype);
  expect(allFinite(values)).toBe(true);
  expect(l2(values)).toBeGreaterThan(0);
  const error = relativeL2(values, want);
  expect(error).toBeLessThanOrEqual(CPU_BOUND + ROUNDING_ALLOWANCE * roundingError(dtype, want));
  return error;
}

describe('the forward returns yUngated', () => {
  const withZ = optionCombinations(['float32', 'bfloat16'], false).filter(([, example]) => example.z);
  test.each(withZ)('%s', (_name, example, options) => {
    const { inputs, ref } = makeExample(rng, CONFIG, example);
    const expected = ssdReference(withOptions(ref, options));
    const kept = ssdSync(inputs, { ...options, returnUngated: true });
    const plain = ssdSync(inputs, options);
    expect(sameBits(kept.y, plain.y)).toBe(true);
    expect(sameBits(kept.finalStates!, plain.finalStates!)).toBe(true);
    expect(kept.yUngated!.dims).toEqual(kept.y.dims);
    expectUngated(kept.yUngated!, expected.yUngated!, example.dtype ?? 'float32');
  });

  test('ssd() (worker threads), options.out.yUngated, and packed sequences (cuSeqlens)', async () => {
    const cfg: ExampleConfig = { ...CONFIG, batch: 1, seqlen: 70 };
    const { inputs, ref } = makeExample(rng, cfg, { z: true, D: 'channel', seqStarts: [20, 45] });
    const cuSeqlens = new Tensor('int32', Int32Array.from([0, 20, 45, 70]), [4]);
    const packed: SsdInputs = { ...inputs, cuSeqlens };
    delete packed.seqIdx;
    const options: SsdOptions = { dtSoftplus: true, chunkSize: 16 };
    const expected = ssdReference(withOptions(ref, options));
    const yUngated = new Tensor('float32', new Float32Array(inputs.x.size), inputs.x.dims);
    const out = await ssd(packed, { ...options, returnUngated: true, out: { yUngated } });
    expect(out.yUngated).toBe(yUngated);
    expectUngated(yUngated, expected.yUngated!, 'float32');
  });
});

describe('the backward takes yUngated', () => {
  test('the CPU backward recomputes: the same bits with and without it; ssdWithGrad hands it over', async () => {
    const options: Omit<SsdOptions, 'out'> = { dtSoftplus: true, chunkSize: 16 };
    const { inputs } = makeExample(rng, CONFIG, { z: true, dtBias: true, initialStates: true });
    const dy = new Tensor('float32', rng.normals(inputs.x.size), inputs.x.dims);
    const withGrad = await ssdWithGrad(inputs, { ...options, returnUngated: true });
    expect(withGrad.yUngated).toBeDefined();
    const viaStep = await withGrad.backward({ dy });
    const given = ssdBackwardSync(inputs, { dy }, { ...options, yUngated: withGrad.yUngated });
    const plain = ssdBackwardSync(inputs, { dy }, options);
    for (const key of GRAD_NAMES) {
      if (plain[key] === undefined) continue;
      expect(sameBits(given[key]!, plain[key]!)).toBe(true);
      expect(sameBits(viaStep[key]!, plain[key]!)).toBe(true);
    }
    expect(l2(plain.dz!.toFloat32())).toBeGreaterThan(0);
  });
});

describe('validation', () => {
  const { inputs } = makeExample(rng, CONFIG, { z: true });
  const noZ: SsdInputs = { ...inputs };
  delete noZ.z;
  const dy = new Tensor('float32', new Float32Array(inputs.x.size), inputs.x.dims);
  const code = (f: () => unknown): string | undefined => {
    try {
      f();
    } catch (err) {
      expect(err).toBeInstanceOf(SsdError);
      return (err as SsdError).code;
    }
    throw new Error('expected an error');
  };

  test('returnUngated must be a boolean and needs z', async () => {
    expect(() => ssdSync(inputs, { returnUngated: 1 } as never)).toThrow(new TypeError('Expected a boolean for options.returnUngated but received number 1'));
    expect(() => ssdSync(noZ, { returnUngated: true })).toThrow(/options.returnUngated needs inputs.z/);
    expect(code(() => ssdSync(noZ, { returnUngated: true }))).toBe('ERR_SSD_OPTION');
    await expect(ssd(noZ, { returnUngated: true })).rejects.toThrow(/options.returnUngated needs inputs.z/);
    expect(() => ssdSync(inputs, { returnUngatd: true } as never)).toThrow(/Unknown option 'returnUngatd' \(did you mean 'returnUngated'\?\)/);
  });

  test('options.out.yUngated: y\'s type and dims, needs returnUngated, apart from out.y', () => {
    const good = new Tensor('float32', new Float32Array(inputs.x.size), inputs.x.dims);
    expect(() => ssdSync(inputs, { out: { yUngated: good } })).toThrow(/options.out.yUngated is given but options.returnUngated is not true/);
    expect(() => ssdSync(inputs, { returnUngated: true, out: { y: good, yUngated: good } })).toThrow(/Expected options.out.y and options.out.yUngated to be two tensors/);
    const bf = new Tensor('bfloat16', new Uint16Array(inputs.x.size), inputs.x.dims);
    expect(() => ssdSync(inputs, { returnUngated: true, out: { yUngated: bf } })).toThrow(new TypeError("Expected a Tensor of type 'float32' for options.out.yUngated but received a Tensor of type 'bfloat16'"));
    const flat = new Tensor('float32', new Float32Array(inputs.x.size), [2, 37, 32]);
    expect(() => ssdSync(inputs, { returnUngated: true, out: { yUngated: flat } })).toThrow(RangeError);
  });

  test('the backward\'s options.yUngated: y\'s type and dims, only with z, not an output', () => {
    const good = new Tensor('float32', new Float32Array(inputs.x.size), inputs.x.dims);
    expect(() => ssdBackwardSync(noZ, { dy }, { yUngated: good })).toThrow(/options.yUngated is given but inputs.z is not/);
    expect(code(() => ssdBackwardSync(noZ, { dy }, { yUngated: good }))).toBe('ERR_SSD_OPTION');
    const bf = new Tensor('bfloat16', new Uint16Array(inputs.x.size), inputs.x.dims);
    expect(() => ssdBackwardSync(inputs, { dy }, { yUngated: bf })).toThrow(new TypeError("Expected a Tensor of type 'float32' for options.yUngated but received a Tensor of type 'bfloat16'"));
    const swapped = new Tensor('float32', new Float32Array(inputs.x.size), [2, 4, 37, 8]);
    expect(() => ssdBackwardSync(inputs, { dy }, { yUngated: swapped })).toThrow(/Expected dims \[2, 37, 4, 8\] \(batch, seqlen, nheads, headdim\), the dims of y, for options.yUngated but received \[2, 4, 37, 8\]/);
    expect(() => ssdBackwardSync(inputs, { dy }, { yUngated: inputs.x.data } as never)).toThrow(TypeError);
    expect(() => ssdBackwardSync(inputs, { dy }, { yUngated: good, out: { dz: good } })).toThrow(/Expected options.out.dz to be a tensor apart from the inputs, grads and other outputs/);
  });
});
