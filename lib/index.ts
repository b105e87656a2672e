/**
 * ssd-kernels: Mamba-2's SSD scan (state space duality) for Node.js.
 *
 *   const { y, finalStates } = await ssd({ x, dt, A, B, C, D }, { dtSoftplus: true, returnFinalStates: true });
 *
 * Semantics: docs/semantics.md. Inputs are validated here in full; the native addon re-checks sizes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SsdError, type SsdErrorCode } from './errors';
import { native, packageRoot, type NativeBackends, type NativeForwardArgs } from './native';
import { Tensor, type FloatType } from './tensor';
import { nativeDtype, validate, type SsdInputs, type SsdOptions, type SsdPlan } from './validate';

export { SsdError, type SsdErrorCode } from './errors';
export { Tensor, type TensorType, type FloatType, type TensorLocation, type TensorData } from './tensor';
export type { SsdInputs, SsdOptions, SsdDevice } from './validate';
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

export const version: string = (
  JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }
).version;

export interface SsdResult {
  /** (batch, seqlen, nheads, headdim), in x's type */
  y: Tensor;
  /** (batch, nheads, headdim, dstate) float32, when options.returnFinalStates */
  finalStates?: Tensor;
}

export interface Backends {
  version: string;
  cpu: {
    /** The instruction set the CPU path uses now: 'avx512', 'avx2' or 'scalar'. */
    isa: string;
    /** The best instruction set this CPU supports (SSD_KERNELS_CPU_ISA may lower `isa`). */
    bestIsa: string;
    /** Default thread count: the cores available to this process. */
    threads: number;
  };
  cuda: {
    /** Whether this build contains CUDA kernels. */
    compiled: boolean;
    /** Whether a CUDA device can run them now. */
    available: boolean;
    /** Why CUDA is unavailable ('' when available). */
    reason: string;
    devices: number;
  };
}

/** What this build can run on this machine. */
export function backends(): Backends {
  const b: NativeBackends = native().backends();
  return { version, cpu: { ...b.cpu }, cuda: { ...b.cuda } };
}

/** Native failures carry a `code`; they surface as SsdError. TypeError and RangeError pass through. */
function fromNative(err: unknown): unknown {
  if (err instanceof Error && !(err instanceof SsdError)) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('ERR_SSD_')) return new SsdError(code as SsdErrorCode, err.message);
  }
  return err;
}

function floatData(tensor: Tensor | undefined): Float32Array | null {
  return tensor === undefined ? null : tensor.toFloat32();
}

function allocate<T>(name: string, make: () => T): T {
  try {
    return make();
  } catch (err) {
    throw new SsdError('ERR_SSD_OUT_OF_MEMORY', `Could not allocate ${name}: ${(err as Error).message}`);
  }
}

/** Picks the backend for a call; throws ERR_SSD_DEVICE when the requested one cannot run. */
function resolveDevice(plan: SsdPlan): 'cpu' {
  if (plan.device.kind === 'cuda') {
    const cuda = native().backends().cuda;
    const reason = cuda.available
      ? 'the CUDA forward is not part of this version yet (it runs on the CPU only)'
      : cuda.reason;
    throw new SsdError('ERR_SSD_DEVICE', `options.device '${plan.device.kind}:${plan.device.index}' is not available: ${reason}`);
  }
  return 'cpu';
}

function prepare(inputs: unknown, options: unknown): { args: NativeForwardArgs; result: SsdResult } {
  const { inputs: t, plan } = validate(inputs, options);
  resolveDevice(plan);
  const { batch, seqlen, nheads, headdim, ngroups, dstate } = plan;
  const ySize = batch * seqlen * nheads * headdim;
  const yType = plan.xType as FloatType;
  const y = allocate('y', () =>
    yType === 'float32' ? new Tensor('float32', new Float32Array(ySize), t.x.dims) : new Tensor(yType, new Uint16Array(ySize), t.x.dims),
  );
  const finalStates = plan.returnFinalStates
    ? allocate('finalStates', () => {
        const dims = [batch, nheads, headdim, dstate];
        return new Tensor('float32', new Float32Array(batch * nheads * headdim * dstate), dims);
      })
    : undefined;
  const args: NativeForwardArgs = {
    dims: [batch, seqlen, nheads, headdim, ngroups, dstate],
    chunkSize: plan.chunkSize,
    x: t.x.data,
    xType: nativeDtype(t.x.type),
    dt: t.dt.data,
    dtType: nativeDtype(t.dt.type),
    A: t.A.toFloat32(),
    B: t.B.data,
    BType: nativeDtype(t.B.type),
    C: t.C.data,
    CType: nativeDtype(t.C.type),
    D: floatData(t.D),
    dPerChannel: t.D !== undefined && t.D.dims.length === 2,
    z: t.z === undefined ? null : t.z.data,
    zType: nativeDtype(t.z === undefined ? 'float32' : t.z.type),
    dtBias: floatData(t.dtBias),
    initialStates: floatData(t.initialStates),
    seqIdx: t.seqIdx === undefined ? null : (t.seqIdx.data as Int32Array),
    dtSoftplus: plan.dtSoftplus,
    dtMin: plan.dtMin,
    dtMax: plan.dtMax,
    y: y.data,
    yType: nativeDtype(yType),
    finalStates: finalStates === undefined ? null : (finalStates.data as Float32Array),
    threads: plan.threads,
  };
  return { args, result: finalStates === undefined ? { y } : { y, finalStates } };
}

/**
 * The SSD forward, off the event loop: resolves with y (and finalStates when asked).
 * Rejects with TypeError, RangeError or SsdError on bad input; the inputs' buffers stay referenced
 * until the Promise settles.
 */
export async function ssd(inputs: SsdInputs, options?: SsdOptions): Promise<SsdResult> {
  const { args, result } = prepare(inputs, options);
  try {
    await native().forward(args);
  } catch (err) {
    throw fromNative(err);
  }
  return result;
}

/** The SSD forward on the calling thread. Throws where ssd() would reject. */
export function ssdSync(inputs: SsdInputs, options?: SsdOptions): SsdResult {
  const { args, result } = prepare(inputs, options);
  try {
    native().forwardSync(args);
  } catch (err) {
    throw fromNative(err);
  }
  return result;
}

