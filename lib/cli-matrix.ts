/**
 * `ssd-kernels matrix`: draws M = L ∘ (C·Bᵀ) (ssdMatrix()) of one head as a PNG heatmap, from seeded
 * random inputs at the scales of lib/examples.ts or from a JSON file of arrays. One pixel (or a
 * scale × scale square) per entry; row t is the output position, column s the input position.
 *
 * Colours: 'log' (default) maps log10 |M| over the top `decades` decades below the largest |M| onto
 * viridis (dark blue: small, yellow: large; entries below the range take the darkest colour);
 * 'signed' maps sign(M) · that log scale onto a diverging blue–white–red. Entries that are zero by
 * structure (above the diagonal, across a sequence boundary) are drawn white in 'log' and light
 * grey in 'signed', so they stand apart from entries that decayed to (near) zero.
 */
import * as fs from 'node:fs';
import { PNG } from 'pngjs';
import { ssdMatrix } from './matrix';
import { Random, makeExample } from './examples';
import { Tensor } from './tensor';
import { validate, type SsdInputs } from './validate';
import { UsageError, integer, integers, oneOf, positive, text, type CommandSpec, type ParsedFlags } from './cli-args';

export const MATRIX_COMMAND: CommandSpec = {
  name: 'matrix',
  synopsis: ['matrix [options]'],
  summary: "draw one head's SSD matrix M = L ∘ (C·Bᵀ) as a PNG heatmap (matrix --help)",
  about:
    'Writes a PNG heatmap of the SSD matrix M = L ∘ (C·Bᵀ) of one head: M[t][s] is the weight of\n' +
    'position s in the output at position t (rows t, columns s; y = M·(dt·x) + D·x before the gate).',
  flags: [
    { name: '--out', placeholder: 'FILE', type: text, help: 'the PNG to write (default ssd-matrix.png)' },
    { name: '--head', placeholder: 'H', type: integer(0), help: 'the head to draw (default 0)' },
    { name: '--start', placeholder: 'S', type: integer(0), help: 'first position of the window (default 0)' },
    { name: '--length', placeholder: 'N', type: integer(1), help: 'positions in the window, at most 8192 (default: to the end)' },
    { name: '--colors', placeholder: 'MODE', type: oneOf(['log', 'signed']), help: 'log (default): log10 |M| on viridis; signed: sign(M) · log10 |M| on blue-white-red' },
    { name: '--decades', placeholder: 'D', type: positive(300), help: "the log scale's range below the largest |M| (default 8)" },
    { name: '--scale', placeholder: 'K', type: integer(1), help: 'pixels per entry along each side (default 1)' },
    {
      name: '--seqlen', placeholder: 'L', type: integer(1), help: 'sequence length (default 256)',
      section: "random inputs (seeded, at the scales of 'ssd-kernels check'; dt goes through softplus):",
    },
    { name: '--nheads', placeholder: 'H', type: integer(1), help: 'heads (default 4)' },
    { name: '--dstate', placeholder: 'N', type: integer(1), help: 'state size (default 64)' },
    { name: '--seed', placeholder: 'S', type: integer(0), help: "the generator's seed (default 1)" },
    { name: '--seq-starts', placeholder: 'P,Q', type: integers(1), help: 'pack sequences: new ones start at positions P, Q, ... (seqIdx)' },
    {
      name: '--input', placeholder: 'FILE.json', type: text, section: 'given inputs:',
      help:
        "an object of nested arrays in ssd()'s layouts: dt (batch, seqlen, nheads),\n" +
        'A (nheads), B and C (batch, seqlen, ngroups, dstate), and optionally\n' +
        'dtBias (nheads), seqIdx (batch, seqlen) of integers, dtSoftplus (boolean),\n' +
        'dtLimit ([lo, hi])',
    },
    { name: '--batch-index', placeholder: 'I', type: integer(0), help: 'with --input: the batch entry to draw (default 0)' },
  ],
};

interface MatrixArgs {
  out: string;
  head: number;
  start?: number;
  length?: number;
  colors: 'log' | 'signed';
  decades: number;
  scale: number;
  seqlen: number;
  nheads: number;
  dstate: number;
  seed: number;
  seqStarts: number[];
  input?: string;
  batchIndex: number;
}

/** The values of matrix's parsed flags with their defaults, and the checks that span flags. */
function matrixArgs(f: ParsedFlags): MatrixArgs {
  const seqStarts = f.numbers('--seq-starts') ?? [];
  const parsed: MatrixArgs = {
    out: f.string('--out') ?? 'ssd-matrix.png',
    head: f.number('--head') ?? 0,
    start: f.number('--start'),
    length: f.number('--length'),
    colors: (f.string('--colors') ?? 'log') as 'log' | 'signed',
    decades: f.number('--decades') ?? 8,
    scale: f.number('--scale') ?? 1,
    seqlen: f.number('--seqlen') ?? 256,
    nheads: f.number('--nheads') ?? 4,
    dstate: f.number('--dstate') ?? 64,
    seed: f.number('--seed') ?? 1,
    seqStarts,
    input: f.string('--input'),
    batchIndex: f.number('--batch-index') ?? 0,
  };
  if (seqStarts.some((s) => s >= parsed.seqlen)) throw new UsageError(`--seq-starts takes positions below --seqlen ${parsed.seqlen}, not '${seqStarts.join(',')}'`);
  if (parsed.input !== undefined) {
    for (const name of ['--seqlen', '--nheads', '--dstate', '--seed', '--seq-starts']) {
      if (f.has(name)) throw new UsageError(`${name} is for random inputs; --input gives the inputs`);
    }
  } else if (f.has('--batch-index')) {
    throw new UsageError('--batch-index is for --input (random inputs have batch 1)');
  }
  return parsed;
}

/** A rectangular nested array of numbers: its dims and values in row-major order. */
function nested(name: string, value: unknown, rank: number): { dims: number[]; values: number[] } {
  const dims: number[] = [];
  let level: unknown = value;
  for (let r = 0; r < rank; r++) {
    if (!Array.isArray(level) || level.length === 0) throw new Error(`--input: ${name} must be a non-empty ${rank}-level nested array of numbers`);
    dims.push(level.length);
    level = level[0];
  }
  const values: number[] = [];
  const walk = (v: unknown, r: number, where: string): void => {
    if (r === rank) {
      if (typeof v !== 'number') throw new Error(`--input: ${name}${where} must be a number`);
      values.push(v);
      return;
    }
    if (!Array.isArray(v) || v.length !== dims[r]) throw new Error(`--input: ${name}${where} must be an array of ${dims[r]} (the array is not rectangular)`);
    v.forEach((item, i) => walk(item, r + 1, `${where}[${i}]`));
  };
  walk(value, 0, '');
  return { dims, values };
}

const INPUT_KEYS = ['dt', 'A', 'B', 'C', 'dtBias', 'seqIdx', 'dtSoftplus', 'dtLimit'];

/** Inputs from a JSON file, validated in full as ssd() validates them (x is a stand-in of zeros: M does not read it). */
function readInputFile(file: string): { inputs: SsdInputs; dtSoftplus: boolean; dtLimit?: [number, number] } {
  const json = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error('--input: the file must hold a JSON object { dt, A, B, C, ... }');
  const object = json as Record<string, unknown>;
  for (const key of Object.keys(object)) {
    if (!INPUT_KEYS.includes(key)) throw new Error(`--input: unknown key '${key}'; expected ${INPUT_KEYS.join(', ')}`);
  }
  const float = (name: string, rank: number): Tensor => {
    const { dims, values } = nested(name, object[name], rank);
    return new Tensor('float32', Float32Array.from(values), dims);
  };
  const dt = float('dt', 3);
  const [batch, seqlen, nheads] = dt.dims;
  const inputs: SsdInputs = {
    x: new Tensor('float32', new Float32Array(batch * seqlen * nheads), [batch, seqlen, nheads, 1]),
    dt,
    A: float('A', 1),
    B: float('B', 4),
    C: float('C', 4),
  };
  if (object.dtBias !== undefined) inputs.dtBias = float('dtBias', 1);
  if (object.seqIdx !== undefined) {
    const { dims, values } = nested('seqIdx', object.seqIdx, 2);
    if (!values.every((v) => Number.isInteger(v) && Math.abs(v) < 2 ** 31)) throw new Error('--input: seqIdx must hold int32 integers');
    inputs.seqIdx = new Tensor('int32', Int32Array.from(values), dims);
  }
  const dtSoftplus = object.dtSoftplus ?? false;
  if (typeof dtSoftplus !== 'boolean') throw new Error('--input: dtSoftplus must be true or false');
  const limit = object.dtLimit;
  if (limit !== undefined && !(Array.isArray(limit) && limit.length === 2 && limit.every((v) => typeof v === 'number'))) {
    throw new Error('--input: dtLimit must be an array [lo, hi] of two numbers');
  }
  const dtLimit = limit as [number, number] | undefined;
  validate(inputs, dtLimit === undefined ? { dtSoftplus } : { dtSoftplus, dtLimit });
  return { inputs, dtSoftplus, dtLimit };
}

/** One batch entry and one head of validated inputs (the head's group of B and C), so M is computed for that head only. */
function oneHead(t: SsdInputs, b: number, head: number): SsdInputs {
  const [batch, seqlen, nheads] = t.dt.dims;
  const [, , ngroups, dstate] = t.B.dims;
  if (b >= batch) throw new Error(`--batch-index ${b} is out of range: the inputs have batch ${batch}`);
  if (head >= nheads) throw new Error(`--head ${head} is out of range: the inputs have ${nheads} heads`);
  const group = Math.floor(head / (nheads / ngroups));
  const dt = t.dt.toFloat32();
  const B = t.B.toFloat32();
  const C = t.C.toFloat32();
  const dtHead = new Float32Array(seqlen);
  const bHead = new Float32Array(seqlen * dstate);
  const cHead = new Float32Array(seqlen * dstate);
  for (let i = 0; i < seqlen; i++) {
    dtHead[i] = dt[(b * seqlen + i) * nheads + head];
    const src = ((b * seqlen + i) * ngroups + group) * dstate;
    bHead.set(B.subarray(src, src + dstate), i * dstate);
    cHead.set(C.subarray(src, src + dstate), i * dstate);
  }
  const scalar = (v: number): Tensor => new Tensor('float32', Float32Array.from([v]), [1]);
  const out: SsdInputs = {
    x: new Tensor('float32', new Float32Array(seqlen), [1, seqlen, 1, 1]),
    dt: new Tensor('float32', dtHead, [1, seqlen, 1]),
    A: scalar(t.A.toFloat32()[head]),
    B: new Tensor('float32', bHead, [1, seqlen, 1, dstate]),
    C: new Tensor('float32', cHead, [1, seqlen, 1, dstate]),
  };
  if (t.dtBias !== undefined) out.dtBias = scalar(t.dtBias.toFloat32()[head]);
  if (t.seqIdx !== undefined) {
    out.seqIdx = new Tensor('int32', (t.seqIdx.data as Int32Array).slice(b * seqlen, (b + 1) * seqlen), [1, seqlen]);
  }
  return out;
}

type Rgb = [number, number, number];

/** viridis at 0, 1/8, ..., 1 */
const VIRIDIS: Rgb[] = [
  [68, 1, 84], [72, 40, 120], [62, 73, 137], [49, 104, 142], [38, 130, 142],
  [31, 158, 137], [53, 183, 121], [110, 206, 88], [253, 231, 37],
];
/** a blue–white–red diverging map at −1, −1/2, 0, 1/2, 1 */
const DIVERGING: Rgb[] = [[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]];
const STRUCTURAL_ZERO: Record<'log' | 'signed', Rgb> = { log: [255, 255, 255], signed: [200, 200, 200] };

/** Linear interpolation in a list of equally spaced colours, u in [0, 1]. */
function lookup(stops: Rgb[], u: number): Rgb {
  const x = Math.min(Math.max(u, 0), 1) * (stops.length - 1);
  const i = Math.min(Math.floor(x), stops.length - 2);
  const f = x - i;
  return [0, 1, 2].map((c) => Math.round(stops[i][c] + f * (stops[i + 1][c] - stops[i][c]))) as Rgb;
}

export interface Heatmap {
  png: Buffer;
  /** the largest |M| and the smallest nonzero |M| of the picture */
  maxAbs: number;
  minAbs: number;
}

/**
 * The PNG of one (length × length) plane of M. `sequence[i]` is the sequence id of window position
 * i: entries above the diagonal or across ids are zero by structure and get their own colour.
 */
export function heatmap(plane: Float32Array, length: number, sequence: ArrayLike<number>, colors: 'log' | 'signed', decades: number, scale: number): Heatmap {
  let maxAbs = 0;
  let minAbs = Infinity;
  for (const v of plane) {
    const a = Math.abs(v);
    if (a > maxAbs) maxAbs = a;
    if (a > 0 && a < minAbs) minAbs = a;
  }
  const top = maxAbs > 0 ? Math.log10(maxAbs) : 0;
  const size = length * scale;
  const png = new PNG({ width: size, height: size, colorType: 2 });
  for (let t = 0; t < length; t++) {
    for (let s = 0; s < length; s++) {
      const v = plane[t * length + s];
      let rgb: Rgb;
      if (s > t || sequence[s] !== sequence[t]) {
        rgb = STRUCTURAL_ZERO[colors];
      } else {
        const u = v === 0 ? 0 : 1 + (Math.log10(Math.abs(v)) - top) / decades; // 1 at the largest |M|, 0 `decades` below
        rgb = colors === 'log' ? lookup(VIRIDIS, u) : lookup(DIVERGING, 0.5 + 0.5 * Math.sign(v) * Math.max(u, 0));
      }
      for (let dy = 0; dy < scale; dy++) {
        for (let dx = 0; dx < scale; dx++) {
          const o = ((t * scale + dy) * size + s * scale + dx) * 4;
          png.data[o] = rgb[0];
          png.data[o + 1] = rgb[1];
          png.data[o + 2] = rgb[2];
          png.data[o + 3] = 255;
        }
      }
    }
  }
  return { png: PNG.sync.write(png, { colorType: 2, deflateLevel: 9 }), maxAbs, minAbs: minAbs === Infinity ? 0 : minAbs };
}

/** `ssd-kernels matrix [options]` on its parsed flags: returns the exit code (a UsageError for flags that do not go together). */
export function matrixCommand(flags: ParsedFlags): number {
  const a = matrixArgs(flags);
  let full: SsdInputs;
  let dtSoftplus = true;
  let dtLimit: [number, number] | undefined;
  let source: string;
  if (a.input !== undefined) {
    ({ inputs: full, dtSoftplus, dtLimit } = readInputFile(a.input));
    source = a.input;
  } else {
    const config = { batch: 1, seqlen: a.seqlen, nheads: a.nheads, headdim: 1, ngroups: 1, dstate: a.dstate };
    const example = makeExample(new Random(a.seed), config, { D: 'none', seqStarts: a.seqStarts.length > 0 ? a.seqStarts : undefined });
    full = example.inputs;
    source = `random inputs (seed ${a.seed}, seqlen ${a.seqlen}, ${a.nheads} heads, dstate ${a.dstate}${a.seqStarts.length > 0 ? `, sequences starting at ${a.seqStarts.join(', ')}` : ''}; dtSoftplus)`;
  }
  const inputs = oneHead(full, a.batchIndex, a.head);
  const M = ssdMatrix(inputs, { start: a.start, length: a.length, dtSoftplus, dtLimit });
  const length = M.dims[2];
  const start = a.start ?? 0;
  const seqlen = inputs.dt.dims[1];
  const sequence = inputs.seqIdx ? (inputs.seqIdx.data as Int32Array).subarray(start, start + length) : new Int32Array(length);
  const { png, maxAbs, minAbs } = heatmap(M.data as Float32Array, length, sequence, a.colors, a.decades, a.scale);
  fs.writeFileSync(a.out, png);
  const A = inputs.A.toFloat32()[0];
  console.log(`wrote ${a.out} (${length * a.scale}×${length * a.scale} pixels, ${png.length} bytes): M of head ${a.head} (A = ${A.toPrecision(4)}), positions ${start}..${start + length - 1} of ${seqlen}, from ${source}`);
  console.log(`|M| from ${minAbs.toExponential(2)} to ${maxAbs.toExponential(2)}; colours: ${a.colors === 'log' ? 'log10 |M| on viridis' : 'sign(M) · log10 |M| on blue-white-red'} over ${a.decades} decades below the largest; ${a.colors === 'log' ? 'white' : 'grey'}: zero by structure (above the diagonal, across sequences)`);
  return 0;
}
