/** The README's example runs as written (inside the package, `require('ssd-kernels')` resolves to it). */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

test('the README example runs and prints the dims it promises', () => {
  const root = path.join(__dirname, '..');
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const match = /## Example\s+```js\n([\s\S]*?)```/.exec(readme);
  expect(match).not.toBeNull();
  const r = spawnSync(process.execPath, ['-e', match![1]], { cwd: root, encoding: 'utf8' });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  expect(r.stdout.trim()).toBe('[ 1, 64, 4, 16 ] [ 1, 4, 16, 32 ]');
});

test('the README training example runs and prints the dims and gradients it promises', () => {
  const root = path.join(__dirname, '..');
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const match = /## Training\s+[\s\S]*?```js\n([\s\S]*?)```/.exec(readme);
  expect(match).not.toBeNull();
  const r = spawnSync(process.execPath, ['-e', match![1]], { cwd: root, encoding: 'utf8' });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  expect(r.stdout.trim()).toBe('[ 1, 64, 4, 16 ] [ 4 ] dx ddt dA dB dC dD');
});
