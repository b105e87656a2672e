/**
 * Which CUDA kernels a call runs on, for the checks that compare them: the addon reads
 * SSD_KERNELS_FORWARD_PATH when a CUDA forward is dispatched (csrc/cuda/sm90/forward.h) and
 * SSD_KERNELS_BACKWARD_PATH for a CUDA backward (csrc/cuda/sm90/backward.h). 'sm90' forces the sm_90a
 * kernels (a call they do not take is refused, never run elsewhere); 'sm80' or unset keeps the default
 * kernels. Not part of the package's API: `check`, the GPU tests and bench/cuda/sm90_probe.js use it.
 */
export type CudaPath = 'sm80' | 'sm90';

/** The variable that picks the path of each direction. */
export const PATH_VARIABLES = { forward: 'SSD_KERNELS_FORWARD_PATH', backward: 'SSD_KERNELS_BACKWARD_PATH' } as const;

/**
 * f() with the path of `direction` set to `path`, the variable restored afterwards. With `limitMs` the
 * result is rejected once that many milliseconds pass without an answer, naming the path: a kernel that
 * never completes then fails the check that called it instead of holding the process.
 */
export async function withCudaPath<R>(direction: keyof typeof PATH_VARIABLES, path: CudaPath, f: () => Promise<R>, limitMs?: number): Promise<R> {
  const variable = PATH_VARIABLES[direction];
  const before = process.env[variable];
  process.env[variable] = path;
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
    if (before === undefined) delete process.env[variable];
    else process.env[variable] = before;
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
