/**
 * What the CUDA backward's GPU test files share: the backward's options for a forward call's options,
 * a case (inputs, dy, dFinalStates and the float64 reverse), and the check of every gradient against
 * the reference and the CPU backward, with the bounds stated in backward.cuda.test.ts.
 */
import { Tensor, type SsdBackwardOptions, type SsdGrads, type SsdInputs, type SsdOptions } from '../../lib/index';
import { ssdReferenceBackward, type RefGrads } from '../../lib/reference-backward';
import { GRAD_INPUT, GRAD_NAMES, type SsdGradName } from '../../lib/validate-backward';
import { Random, makeExample, withOptions, relativeL2, l2, allFinite, roundingError, type ExampleConfig, type ExampleOptions } from '../reference';
import { CUDA_BACKWARD_BF16_BOUND, CUDA_BACKWARD_BF16_SUMMED_BOUND, CUDA_BACKWARD_FP32_BOUND, CUDA_VS_CPU_FACTOR, CUDA_ZERO_GRADIENT_L2, ROUNDING_ALLOWANCE } from '../../lib/tolerances';

/** The backward's options for a forward call's options, on `device` (undefined: 'auto'). */
export function bopts(o: SsdOptions, device?: 'cuda' | 'cpu'): SsdBackwardOptions {
  const rest: Record<string, unknown> = { ...o };
  delete rest.out;
  delete rest.returnVarlenStates;
  return (device ? { ...rest, device } : rest) as SsdBackwardOptions;
}
export const SUMMED: readonly SsdGradName[] = ['dA', 'dDtBias', 'dD'];

function bound(dtype: string, key: SsdGradName, want: Float64Array, gradType: string): number {
  if (dtype === 'float32') return CUDA_BACKWARD_FP32_BOUND;
  const base = SUMMED.includes(key) ? CUDA_BACKWARD_BF16_SUMMED_BOUND : CUDA_BACKWARD_BF16_BOUND;
  return base + ROUNDING_ALLOWANCE * roundingError(gradType as 'float32', want);
}

export function bitsEqual(a: Tensor, b: Tensor): boolean {
  const x = new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength);
  const y = new Uint8Array(b.data.buffer, b.data.byteOffset, b.data.byteLength);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/** Checks every gradient against the reference (and the CPU); returns the errors. */
export function checkGrads(grads: SsdGrads, expected: RefGrads, cpu: SsdGrads, inputs: SsdInputs, dtype: string): Record<string, number> {
  const errors: Record<string, number> = {};
  for (const key of GRAD_NAMES) {
    const input = inputs[GRAD_INPUT[key]];
    const grad = grads[key];
    if (input === undefined) {
      expect(grad).toBeUndefined();
      continue;
    }
    if (grad === undefined) throw new Error(`${key} is missing`);
    expect(grad.location).toBe('cpu');
    expect(grad.dims).toEqual(input.dims);
    const values = grad.toFloat32();
    const want = Float64Array.from(expected[key]!);
    expect(allFinite(values)).toBe(true);
    if (l2(want) === 0) {
      // exact zeros in float64 (clamped steps, no path to an output) may come out as fp32 dust
      expect(l2(values)).toBeLessThan(CUDA_ZERO_GRADIENT_L2);
      errors[key] = 0;
      continue;
    }
    expect(l2(values)).toBeGreaterThan(0);
    let error = relativeL2(values, want);
    if (key === 'dDtBias' && dtype !== 'float32') {
      // dDtBias[h] is exactly the sum of ddt over (b, t) for head h: its error is that of b·L terms,
      // each held to the ddt bound, so it is measured against the sum of their magnitudes.
      const ddt = Float64Array.from(expected.ddt);
      const h = want.length;
      const scale = new Float64Array(h);
      for (let i = 0; i < ddt.length; i++) scale[i % h] += Math.abs(ddt[i]);
      let num = 0;
      for (let i = 0; i < h; i++) num += (values[i] - want[i]) ** 2;
      error = Math.sqrt(num) / l2(scale);
    }
    const b = bound(dtype, key, want, grad.type);
    if (!(error <= b)) throw new Error(`${key}: relative L2 error ${error} above ${b}`);
    // against the CPU backward too (the summed gradients are held to the reference only: their plain
    // relative distance inherits the cancellation discussed above)
    const vsCpu = SUMMED.includes(key) && dtype !== 'float32' ? 0 : relativeL2(values, cpu[key]!.toFloat32());
    if (!(vsCpu <= CUDA_VS_CPU_FACTOR * b)) throw new Error(`${key}: relative L2 distance to the CPU backward ${vsCpu} above ${CUDA_VS_CPU_FACTOR * b}`);
    errors[key] = error;
  }
  return errors;
}

export interface Case {
  inputs: SsdInputs;
  dy: Tensor;
  dFinalStates?: Tensor;
  expected: RefGrads;
}

export function makeCase(rng: Random, config: ExampleConfig, example: ExampleOptions, options: SsdOptions, final: boolean): Case {
  const { inputs, ref } = makeExample(rng, config, example);
  const { batch: b, seqlen: L, nheads: h, headdim: p, dstate: n } = config;
  const dy = Tensor.fromFloat32(example.dtype ?? 'float32', rng.normals(b * L * h * p), [b, L, h, p]);
  const dFinalStates = final ? new Tensor('float32', rng.normals(b * h * p * n), [b, h, p, n]) : undefined;
  const expected = ssdReferenceBackward(withOptions(ref, options), dy.toFloat32(), dFinalStates?.toFloat32());
  return { inputs, dy, dFinalStates, expected };
}

