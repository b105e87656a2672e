/**
 * The loader (lib/native.ts): where it looks and in what order, and the one error that lists every
 * place tried, why each failed, and what to do. Package roots are built in a temporary folder.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { addonCandidates, loadAddon, nativePath } from '../lib/native';
import { SsdError } from '../lib/errors';

const tuple = `${process.platform}-${process.arch}`;
let root: string;

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'ssd-kernels-loader-'));
});
afterEach(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

function put(relative: string, content: string | Buffer): string {
  const file = path.join(root, relative);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, content);
  return file;
}

/** The error loadAddon throws for this root and environment. */
function failure(env: NodeJS.ProcessEnv = {}): SsdError {
  try {
    loadAddon(root, env);
  } catch (err) {
    expect(err).toBeInstanceOf(SsdError);
    return err as SsdError;
  }
  throw new Error('loadAddon did not throw');
}

test('order: a local cmake-js build, then the prebuilt binary, then the node-gyp build', () => {
  put(`prebuilds/${tuple}/ssd-kernels.node`, 'x');
  expect(addonCandidates(root, {})).toEqual([
    { file: path.join(root, 'build-cmake', 'Release', 'ssd_kernels.node'), kind: 'local cmake-js build' },
    { file: path.join(root, 'prebuilds', tuple, 'ssd-kernels.node'), kind: `prebuilt binary for ${tuple}` },
    { file: path.join(root, 'build', 'Release', 'ssd_kernels.node'), kind: 'local node-gyp build (CPU only)' },
  ]);
});

test('SSD_KERNELS_ADDON is the only place tried when set', () => {
  put(`prebuilds/${tuple}/ssd-kernels.node`, 'x');
  const file = path.join(root, 'elsewhere', 'mine.node');
  expect(addonCandidates(root, { SSD_KERNELS_ADDON: file })).toEqual([{ file, kind: 'SSD_KERNELS_ADDON' }]);
  const err = failure({ SSD_KERNELS_ADDON: file });
  expect(err.code).toBe('ERR_SSD_NATIVE');
  expect(err.message).toContain(`${file} (SSD_KERNELS_ADDON): not found`);
  expect(err.message).toContain('SSD_KERNELS_ADDON is set, so no other place was tried');
});

test('nothing loads: one error names every place, why it failed, and what to do', () => {
  put(`prebuilds/${tuple}/ssd-kernels.node`, 'not an ELF file');
  const err = failure();
  expect(err.code).toBe('ERR_SSD_NATIVE');
  const lines = err.message.split('\n');
  expect(lines[0]).toBe('Could not load the ssd-kernels native addon. Tried:');
  expect(lines[1]).toBe(`  ${path.join(root, 'build-cmake', 'Release', 'ssd_kernels.node')} (local cmake-js build): not found`);
  // The prebuild exists but is no shared object: the loader's own reason is passed on.
  expect(lines[2]).toMatch(new RegExp(`^  ${path.join(root, 'prebuilds', tuple, 'ssd-kernels.node').replace(/[.+]/g, '\\$&')} \\(prebuilt binary for ${tuple}\\): .*(invalid ELF header|file too short)`));
  expect(lines[3]).toBe(`  ${path.join(root, 'build', 'Release', 'ssd_kernels.node')} (local node-gyp build (CPU only)): not found`);
  expect(err.message).toContain('The prebuilt binary needs x86-64 Linux with glibc 2.28 or newer');
  expect(err.message).toContain('npm rebuild ssd-kernels --build-from-source');
  expect(err.message).toContain('npx cmake-js compile --out build-cmake');
});

test('a platform without a prebuilt binary is told so', () => {
  put('prebuilds/sunos-sparc/ssd-kernels.node', 'x');
  const err = failure();
  expect(err.message).toContain(`${path.join(root, 'prebuilds', tuple, 'ssd-kernels.node')} (prebuilt binary for ${tuple}): not found`);
  expect(err.message).toContain(`This package has no prebuilt binary for ${tuple} (it has: sunos-sparc)`);
});

test('a working build loads, and a broken one before it is skipped', () => {
  put('build-cmake/Release/ssd_kernels.node', 'broken');
  const real = nativePath(); // this checkout's addon
  fs.mkdirSync(path.join(root, 'build', 'Release'), { recursive: true });
  fs.copyFileSync(real, path.join(root, 'build', 'Release', 'ssd_kernels.node'));
  const { addon, file } = loadAddon(root, {});
  expect(file).toBe(path.join(root, 'build', 'Release', 'ssd_kernels.node'));
  expect(typeof addon.forwardSync).toBe('function');
  expect(addon.backends().cpu.threads).toBeGreaterThan(0);
});
