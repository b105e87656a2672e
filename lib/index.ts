/**
 * ssd-kernels: Mamba-2's SSD scan (state space duality) for Node.js.
 *
 *   const { y, finalStates } = await ssd({ x, dt, A, B, C, D }, { dtSoftplus: true, returnFinalStates: true });
 *
 * Semantics: docs/semantics.md. Inputs are validated here in full; the native addon re-checks sizes.
 */
export { ssd, ssdSync, type SsdResult } from './forward';
export { backends, cudaEmptyCache, cudaMemoryStats, version, type Backends } from './backends';
export { SsdError, type SsdErrorCode } from './errors';
export { ssdStep, ssdStepSync, type SsdStepInputs, type SsdStepOptions, type SsdStepResult } from './step';
export { ssdMatrix, type SsdMatrixOptions } from './matrix';
export { Tensor, type TensorType, type FloatType, type TensorLocation, type TensorData, type TensorLike } from './tensor';
export type { SsdInputs, SsdOptions, SsdDevice } from './validate';
export {
  ssdBackward,
  ssdBackwardSync,
  ssdWithGrad,
  type SsdWithGrad,
  type SsdGrads,
  type SsdOutputGrads,
  type SsdBackwardOptions,
} from './backward';
export {
  bfloat16Bits,
  bfloat16Value,
  bfloat16ToFloat32,
  float16Bits,
  float16Value,
  float16ToFloat32,
  float32ToBfloat16,
  float32ToFloat16,
} from './half';
