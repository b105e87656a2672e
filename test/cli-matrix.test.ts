/**
 * `ssd-kernels matrix`: writes a PNG heatmap of one head's M (decoded back here with pngjs): white
 * above the diagonal and across sequence boundaries, colours that darken away from the diagonal,
 * windows, inputs from a JSON file, usage errors; and the README's command reproduces docs/matrix.png.
 * Runs the compiled CLI (dist/), as `npx ssd-kernels` would.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PNG } from 'pngjs';

const root = path.join(__dirname, '..');
const cli = path.join(root, 'dist', 'lib', 'cli.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ssd-matrix-'));

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function runCli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: root, encoding: 'utf8', timeout: 120000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The pixel (row, column) of a decoded PNG as [r, g, b]. */
function pixel(png: PNG, row: number, column: number): number[] {
  const o = (row * png.width + column) * 4;
  return [png.data[o], png.data[o + 1], png.data[o + 2]];
}

const WHITE = [255, 255, 255];
const luminance = (rgb: number[]): number => 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2];

describe('ssd-kernels matrix', () => {
  test('--help describes the flags and the input format', () => {
    const r = runCli(['matrix', '--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/--seqlen/);
    expect(r.stdout).toMatch(/--input FILE\.json/);
    expect(r.stdout).toMatch(/dt \(batch, seqlen, nheads\)/);
  });

  test('random inputs with packed sequences: lower triangular, white across sequences, darker away from the diagonal', () => {
    const out = path.join(tmp, 'random.png');
    const r = runCli(['matrix', '--seqlen', '96', '--seq-starts', '40,70', '--head', '2', '--nheads', '3', '--dstate', '16', '--out', out]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/wrote .*random\.png \(96×96 pixels/);
    expect(r.stdout).toMatch(/M of head 2 \(A = -?\d/);
    const png = PNG.sync.read(fs.readFileSync(out));
    expect([png.width, png.height]).toEqual([96, 96]);
    const seq = (t: number): number => (t >= 70 ? 2 : t >= 40 ? 1 : 0);
    let colored = 0;
    for (let t = 0; t < 96; t++) {
      for (let s = 0; s < 96; s++) {
        const white = pixel(png, t, s).every((v, c) => v === WHITE[c]);
        if (s > t || seq(s) !== seq(t)) expect(white).toBe(true);
        else if (!white) colored++;
      }
    }
    const inside = 40 * 41 / 2 + 30 * 31 / 2 + 26 * 27 / 2;
    expect(colored).toBe(inside); // every entry within a sequence has a colour
    // averaged over rows, the diagonal is brighter (larger |M|) than 30 positions back
    let near = 0;
    let far = 0;
    for (let t = 30; t < 40; t++) {
      near += luminance(pixel(png, t, t));
      far += luminance(pixel(png, t, t - 30));
    }
    expect(near).toBeGreaterThan(far);
  });

  test('a window with --scale: (length · scale) pixels per side, signed colours', () => {
    const out = path.join(tmp, 'window.png');
    const r = runCli(['matrix', '--seqlen', '64', '--start', '20', '--length', '10', '--scale', '3', '--colors', 'signed', '--out', out]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/positions 20\.\.29 of 64/);
    const png = PNG.sync.read(fs.readFileSync(out));
    expect([png.width, png.height]).toEqual([30, 30]);
    expect(pixel(png, 0, 29)).toEqual([200, 200, 200]); // above the diagonal: structural grey
    expect(pixel(png, 0, 2)).toEqual(pixel(png, 2, 0)); // one entry, a 3 × 3 square
    expect(pixel(png, 29, 29)).not.toEqual([200, 200, 200]);
  });

  test('--input reads a JSON file of nested arrays; a value shows as its colour', () => {
    // batch 1, seqlen 3, 2 heads, 1 group, dstate 1; head 1 has A = 0, so M[t][s] = C_t·B_s
    const file = path.join(tmp, 'inputs.json');
    const json = {
      dt: [[[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]],
      A: [-1, 0],
      B: [[[[1]], [[1]], [[1]]]],
      C: [[[[1]], [[1]], [[1e-3]]]],
      seqIdx: [[0, 0, 0]],
    };
    fs.writeFileSync(file, JSON.stringify(json));
    const out = path.join(tmp, 'given.png');
    const r = runCli(['matrix', '--input', file, '--head', '1', '--decades', '3', '--out', out]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/A = 0\.000/);
    expect(r.stdout).toMatch(/\|M\| from 1\.00e-3 to 1\.00e\+0/);
    const png = PNG.sync.read(fs.readFileSync(out));
    expect([png.width, png.height]).toEqual([3, 3]);
    expect(pixel(png, 0, 0)).toEqual([253, 231, 37]); // the largest |M|: viridis' top
    expect(pixel(png, 1, 0)).toEqual([253, 231, 37]); // no decay with A = 0
    expect(pixel(png, 2, 0)).toEqual([68, 1, 84]); // 3 decades down: viridis' bottom
    expect(pixel(png, 0, 1)).toEqual(WHITE);
  });

  test('errors: bad flags exit 2 with usage, bad inputs exit 1 with the reason', () => {
    let r = runCli(['matrix', '--sqlen', '10']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown option '--sqlen'/);
    r = runCli(['matrix', '--seqlen', 'ten']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--seqlen takes an integer >= 1/);
    r = runCli(['matrix', '--seqlen', '10', '--seq-starts', '12']);
    expect(r.status).toBe(2);
    r = runCli(['matrix', '--seqlen', '10', '--head', '4', '--out', path.join(tmp, 'x.png')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--head 4 is out of range: the inputs have 4 heads/);
    r = runCli(['matrix', '--seqlen', '10', '--start', '4', '--length', '7', '--out', path.join(tmp, 'x.png')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/options\.length/);
    const file = path.join(tmp, 'bad.json');
    fs.writeFileSync(file, JSON.stringify({ dt: [[[0.5]]], A: [-1], B: [[[[1, 2]]]], C: [[[[1]]]] }));
    r = runCli(['matrix', '--input', file, '--out', path.join(tmp, 'x.png')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/Expected dims \[1, 1, 1, 2\] .* for inputs\.C but received \[1, 1, 1, 1\]/);
    fs.writeFileSync(file, JSON.stringify({ dt: [[[0.5]]], A: [-1], B: [[[[1]]]], C: [[[[1]]]], x: [] }));
    r = runCli(['matrix', '--input', file, '--out', path.join(tmp, 'x.png')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/unknown key 'x'/);
  });

  test("the README's command reproduces docs/matrix.png", () => {
    const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
    const match = /npx ssd-kernels matrix ([^\n`]*--out docs\/matrix\.png)/.exec(readme);
    expect(match).not.toBeNull();
    const out = path.join(tmp, 'docs-matrix.png');
    const r = runCli(['matrix', ...match![1].replace('docs/matrix.png', out).split(/\s+/)]);
    expect(r.status).toBe(0);
    const made = PNG.sync.read(fs.readFileSync(out));
    const committed = PNG.sync.read(fs.readFileSync(path.join(root, 'docs', 'matrix.png')));
    expect([made.width, made.height]).toEqual([committed.width, committed.height]);
    // Pixels, not bytes (zlib's output may change between Node versions); allow a few colours to
    // round the other way should Math.exp or Math.log change in their last bits.
    let differing = 0;
    for (let i = 0; i < made.data.length; i += 4) {
      if (made.data[i] !== committed.data[i] || made.data[i + 1] !== committed.data[i + 1] || made.data[i + 2] !== committed.data[i + 2]) differing++;
    }
    expect(differing).toBeLessThanOrEqual(0.001 * made.width * made.height);
    expect(fs.statSync(path.join(root, 'docs', 'matrix.png')).size).toBeLessThan(100 * 1024);
  });
});
