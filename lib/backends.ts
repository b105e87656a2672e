/**
 * What this build can run here (backends(), version) and the CUDA memory the package holds.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fromNativeError as fromNative } from './errors';
import { native, packageRoot, type NativeBackends } from './native';
import { deviceIndex } from './tensor';

export const version: string = (
  JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }
).version;

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

/** Device memory held by this package on a CUDA device: in use by tensors and calls, cached for reuse, and the peak in use. */
export function cudaMemoryStats(device: number | string = 'cuda'): { inUse: number; cached: number; peakInUse: number } {
  return native().cudaMemoryStats(deviceIndex('device', device));
}

/** Returns the cached (unused) device memory of a device to CUDA. */
export function cudaEmptyCache(device: number | string = 'cuda'): void {
  try {
    native().cudaEmptyCache(deviceIndex('device', device));
  } catch (err) {
    throw fromNative(err);
  }
}
