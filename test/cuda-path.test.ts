/** withCudaPath: sets the path variable of one direction for one call, restores it, and limits the wait when asked. */
import { withBackwardPath, withForwardPath, PATH_VARIABLES } from '../lib/cuda-path';

const FORWARD = PATH_VARIABLES.forward;
const BACKWARD = PATH_VARIABLES.backward;

describe('withCudaPath', () => {
  afterEach(() => {
    delete process.env[FORWARD];
    delete process.env[BACKWARD];
  });

  test('the variable holds the path during the call and is removed after it when it was unset', async () => {
    const seen = await withForwardPath('sm90', async () => [process.env[FORWARD], process.env[BACKWARD]]);
    expect(seen).toEqual(['sm90', undefined]);
    expect(process.env[FORWARD]).toBeUndefined();
    const back = await withBackwardPath('sm90', async () => [process.env[FORWARD], process.env[BACKWARD]]);
    expect(back).toEqual([undefined, 'sm90']);
    expect(process.env[BACKWARD]).toBeUndefined();
  });

  test('a value set before is restored, after a rejection too', async () => {
    process.env[FORWARD] = 'sm80';
    await expect(withForwardPath('sm90', async () => { throw new Error('refused'); })).rejects.toThrow('refused');
    expect(process.env[FORWARD]).toBe('sm80');
  });

  test('a call with no answer within the limit is rejected, naming the path and the direction', async () => {
    const never = new Promise<number>(() => undefined);
    await expect(withBackwardPath('sm90', () => never, 50)).rejects.toThrow('the sm90 backward gave no answer in 0.05 s');
    expect(process.env[BACKWARD]).toBeUndefined();
  });

  test('an answer within the limit is returned', async () => {
    await expect(withForwardPath('sm80', async () => 7, 5000)).resolves.toBe(7);
  });
});
