/** withForwardPath: sets SSD_KERNELS_FORWARD_PATH for one call, restores it, and limits the wait when asked. */
import { withForwardPath } from '../lib/forward-path';

const VARIABLE = 'SSD_KERNELS_FORWARD_PATH';

describe('withForwardPath', () => {
  afterEach(() => delete process.env[VARIABLE]);

  test('the variable holds the path during the call and is removed after it when it was unset', async () => {
    delete process.env[VARIABLE];
    const seen = await withForwardPath('sm90', async () => process.env[VARIABLE]);
    expect(seen).toBe('sm90');
    expect(process.env[VARIABLE]).toBeUndefined();
  });

  test('a value set before is restored, after a rejection too', async () => {
    process.env[VARIABLE] = 'sm80';
    await expect(withForwardPath('sm90', async () => { throw new Error('refused'); })).rejects.toThrow('refused');
    expect(process.env[VARIABLE]).toBe('sm80');
  });

  test('a call with no answer within the limit is rejected, naming the path', async () => {
    const never = new Promise<number>(() => undefined);
    await expect(withForwardPath('sm90', () => never, 50)).rejects.toThrow('the sm90 forward gave no answer in 0.05 s');
    expect(process.env[VARIABLE]).toBeUndefined();
  });

  test('an answer within the limit is returned', async () => {
    await expect(withForwardPath('sm80', async () => 7, 5000)).resolves.toBe(7);
  });
});
