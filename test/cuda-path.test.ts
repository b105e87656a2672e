/**
 * withCudaPath: forces the CUDA kernels of one direction through the addon for one call, restores the
 * path forced before, and limits the wait when asked. The addon checks what it is handed (cudaSetPath);
 * which kernels then run is the GPU suite's to see (test/cuda/sm90-backward.cuda.test.ts: a forced call
 * the sm_90a kernels do not take is refused).
 */
import { forcedCudaPath, withBackwardPath, withForwardPath } from '../lib/cuda-path';
import { native } from '../lib/native';

describe('withCudaPath', () => {
  test('the path is forced during the call and cleared after it when none was forced before', async () => {
    const seen = await withForwardPath('sm90', async () => [forcedCudaPath('forward'), forcedCudaPath('backward')]);
    expect(seen).toEqual(['sm90', null]);
    expect(forcedCudaPath('forward')).toBeNull();
    const back = await withBackwardPath('sm90', async () => [forcedCudaPath('forward'), forcedCudaPath('backward')]);
    expect(back).toEqual([null, 'sm90']);
    expect(forcedCudaPath('backward')).toBeNull();
  });

  test('a path forced around a call is restored after it, after a rejection too', async () => {
    const inner = await withForwardPath('sm80', () =>
      withForwardPath('sm90', async () => { throw new Error('refused'); }).catch((e: Error) => [e.message, forcedCudaPath('forward')]));
    expect(inner).toEqual(['refused', 'sm80']);
    expect(forcedCudaPath('forward')).toBeNull();
  });

  test('a call with no answer within the limit is rejected, naming the path and the direction', async () => {
    const never = new Promise<number>(() => undefined);
    await expect(withBackwardPath('sm90', () => never, 50)).rejects.toThrow('the sm90 backward gave no answer in 0.05 s');
    expect(forcedCudaPath('backward')).toBeNull();
  });

  test('an answer within the limit is returned', async () => {
    await expect(withForwardPath('sm80', async () => 7, 5000)).resolves.toBe(7);
  });

  test('the addon refuses a direction or a path it does not know, naming what it expected', () => {
    const set = native().cudaSetPath as (d: unknown, p: unknown) => void;
    // the addon's errors come from the main realm, not the test's: compared by name
    let thrown: unknown;
    try { set('sideways', 'sm90'); } catch (e) { thrown = e; }
    expect((thrown as Error).name).toBe('TypeError');
    expect(() => set('sideways', 'sm90')).toThrow("expected direction 'forward' or 'backward'");
    expect(() => set('forward', 'sm70')).toThrow("expected path 'sm80', 'sm90' or null");
    expect(() => set('forward', 3)).toThrow("expected path 'sm80', 'sm90' or null");
    expect(() => set('forward', null)).not.toThrow();
  });
});
