/**
 * Which CUDA kernels a call runs on, for the checks that compare them. The addon reads
 * SSD_KERNELS_FORWARD_PATH when a CUDA forward is dispatched (csrc/cuda/sm90/forward.h) and
 * SSD_KERNELS_BACKWARD_PATH for a CUDA backward (csrc/cuda/sm90/backward.h): 'sm90' forces the sm_90a
 * kernels (a call they do not take is refused, never run elsewhere), 'sm80' the sm_80 kernels; unset,
 * each direction takes its default (the forward the sm_80 kernels; the backward the sm_90a kernels for
 * the calls they take on an H100 or H200). withCudaPath forces a path through the addon (cudaSetPath),
 * which overrides the variable: native code never sees the copy of process.env that jest gives each
 * test file. Not part of the package's API: `check`, the GPU tests and bench/cuda/sm90_probe.js use it.
 */
import { native } from './native';

export type CudaPath = 'sm80' | 'sm90';

/** The variable that picks the path of each direction at start-up. */
export const PATH_VARIABLES = { forward: 'SSD_KERNELS_FORWARD_PATH', backward: 'SSD_KERNELS_BACKWARD_PATH' } as const;

type Direction = keyof typeof PATH_VARIABLES;
const forced: Record<Direction, CudaPath | null> = { forward: null, backward: null };

/** The path withCudaPath forces on a direction now (null: none, the variable decides). */
export function forcedCudaPath(direction: Direction): CudaPath | null {
  return forced[direction];
}

function force(direction: Direction, path: CudaPath | null): void {
  native().cudaSetPath(direction, path);
  forced[direction] = path;
}

/**
 * f() with the path of `direction` forced to `path`, the path forced before restored afterwards. With
 * `limitMs` the result is rejected once that many milliseconds pass without an answer, naming the path:
 * a kernel that never completes then fails the check that called it instead of holding the process.
 */
export async function withCudaPath<R>(direction: Direction, path: CudaPath, f: () => Promise<R>, limitMs?: number): Promise<R> {
  const before = forced[direction];
  force(direction, path);
  let timer: NodeJS.Timeout | undefined;
  try {
    if (limitMs === undefined) return await f();
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the ${path} ${direction} gave no answer in ${limitMs / 1000} s`)), limitMs);
      timer.unref();
    });
    return await Promise.race([f(), limit]);
  } finally {
    clearTimeout(timer);
    force(direction, before);
  }
}

/** withCudaPath for the forward. */
export function withForwardPath<R>(path: CudaPath, f: () => Promise<R>, limitMs?: number): Promise<R> {
  return withCudaPath('forward', path, f, limitMs);
}

/** withCudaPath for the backward. */
export function withBackwardPath<R>(path: CudaPath, f: () => Promise<R>, limitMs?: number): Promise<R> {
  return withCudaPath('backward', path, f, limitMs);
}
