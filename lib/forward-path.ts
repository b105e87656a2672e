/**
 * Which CUDA forward a call runs on, for the checks that compare the two: the addon reads
 * SSD_KERNELS_FORWARD_PATH when a CUDA forward is dispatched (csrc/cuda/sm90/forward.h). 'sm90' forces
 * the sm_90a forward (a call it does not take is refused, never run elsewhere); 'sm80' or unset keeps the
 * default kernels. Not part of the package's API: `check`, the GPU tests and bench/cuda/sm90_probe.js use it.
 */
export type ForwardPath = 'sm80' | 'sm90';

const VARIABLE = 'SSD_KERNELS_FORWARD_PATH';

/**
 * f() with the forward path set to `path`, the variable restored afterwards. With `limitMs` the result
 * is rejected once that many milliseconds pass without an answer, naming the path: a kernel that never
 * completes then fails the check that called it instead of holding the process.
 */
export async function withForwardPath<R>(path: ForwardPath, f: () => Promise<R>, limitMs?: number): Promise<R> {
  const before = process.env[VARIABLE];
  process.env[VARIABLE] = path;
  let timer: NodeJS.Timeout | undefined;
  try {
    if (limitMs === undefined) return await f();
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the ${path} forward gave no answer in ${limitMs / 1000} s`)), limitMs);
      timer.unref();
    });
    return await Promise.race([f(), limit]);
  } finally {
    clearTimeout(timer);
    if (before === undefined) delete process.env[VARIABLE];
    else process.env[VARIABLE] = before;
  }
}
