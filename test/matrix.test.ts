/**
 * ssdMatrix(): the semiseparable matrix M = L ∘ (C·Bᵀ). M·(d·x) + D·x is the float64 reference's y
 * (before the gate) for several option combinations and seqIdx packs; a window in the middle is the
 * same block of the whole matrix, and with the state entering it (from the reference's prefix run)
 * gives the reference's y on the window; M is lower triangular, zero across sequence boundaries, and
 * an off-diagonal block within one sequence has rank at most dstate. Every compared quantity is
 * checked finite and nonzero, so no test passes on zeros.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { SsdError, Tensor, ssdMatrix, ssdSync, type SsdInputs, type SsdOptions } from '../lib/index';
import { SSD_MATRIX_MAX_LENGTH } from '../lib/matrix';
import { MATRIX_BOUND, MATRIX_ENTRY_DIGITS, MATRIX_RANK } from '../lib/tolerances';
import { Random, allFinite, l2, makeExample, relativeL2, ssdReference, stepSize, withOptions, type ExampleConfig, type ExampleOptions, type RefInputs } from './reference';

const rng = new Random(20261207);

/** The step sizes d (b, L, h) of the reference inputs, as §1 of the spec defines them. */
function stepSizes(ref: RefInputs): Float64Array {
  const { batch: b, seqlen: L, nheads: h } = ref;
  const [lo, hi] = ref.dtLimit ?? [0, Infinity];
  const d = new Float64Array(b * L * h);
  for (let i = 0; i < d.length; i++) d[i] = stepSize(ref.dt[i], ref.dtBias ? ref.dtBias[i % h] : 0, ref.dtSoftplus ?? false, lo, hi);
  return d;
}

/**
 * y on the window [start, start + len) from M (batch, nheads, len, len): Σ_s M[t][s]·d_s·x_s + D·x_t,
 * (b, len, h, p) in float64.
 */
function applyMatrix(M: Tensor, ref: RefInputs, start: number, len: number): Float64Array {
  const { batch: b, seqlen: L, nheads: h, headdim: p } = ref;
  const m = M.data as Float32Array;
  const d = stepSizes(ref);
  const y = new Float64Array(b * len * h * p);
  for (let bi = 0; bi < b; bi++) {
    for (let head = 0; head < h; head++) {
      const plane = (bi * h + head) * len * len;
      for (let i = 0; i < len; i++) {
        for (let c = 0; c < p; c++) {
          let acc = 0;
          for (let s = 0; s < len; s++) {
            const pos = bi * L + start + s;
            acc += m[plane + i * len + s] * d[pos * h + head] * ref.x[(pos * h + head) * p + c];
          }
          const xi = ref.x[((bi * L + start + i) * h + head) * p + c];
          if (ref.D) acc += (ref.dPerChannel ? ref.D[head * p + c] : ref.D[head]) * xi;
          y[((bi * len + i) * h + head) * p + c] = acc;
        }
      }
    }
  }
  return y;
}

/** Positions [from, to) of every per-position array of the reference inputs. */
function sliceRef(ref: RefInputs, from: number, to: number): RefInputs {
  const { batch: b, seqlen: L, nheads: h, headdim: p, ngroups: g, dstate: n } = ref;
  const part = (a: ArrayLike<number>, inner: number): Float64Array => {
    const out = new Float64Array(b * (to - from) * inner);
    for (let bi = 0; bi < b; bi++) {
      for (let i = 0; i < (to - from) * inner; i++) out[bi * (to - from) * inner + i] = a[(bi * L + from) * inner + i];
    }
    return out;
  };
  return {
    ...ref,
    seqlen: to - from,
    x: part(ref.x, h * p),
    dt: part(ref.dt, h),
    B: part(ref.B, g * n),
    C: part(ref.C, g * n),
    z: ref.z && part(ref.z, h * p),
    seqIdx: ref.seqIdx && part(ref.seqIdx, 1),
  };
}

/** Positions [from, to) of a (b, L, ...) float64 array with `inner` values per position. */
function slicePositions(a: Float64Array, b: number, L: number, inner: number, from: number, to: number): Float64Array {
  return sliceRef({ batch: b, seqlen: L, nheads: inner, headdim: 1, ngroups: 1, dstate: 1, x: a, dt: [], A: [], B: [], C: [] }, from, to).x as Float64Array;
}

/**
 * What the tokens before `start` (and initialStates) add to y on the window: the reference's state
 * after position start − 1, decayed to t and read by C_t, until the first sequence change:
 * exp(a_start + ... + a_t) · H_{start−1} · C_t. (b, len, h, p).
 */
function enteringTerm(ref: RefInputs, start: number, len: number): Float64Array {
  const { batch: b, seqlen: L, nheads: h, headdim: p, ngroups: g, dstate: n } = ref;
  const H = start > 0 ? ssdReference(sliceRef(ref, 0, start)).finalStates : Float64Array.from(ref.initialStates ?? new Float64Array(b * h * p * n));
  const d = stepSizes(ref);
  const out = new Float64Array(b * len * h * p);
  for (let bi = 0; bi < b; bi++) {
    for (let head = 0; head < h; head++) {
      const group = Math.floor(head / (h / g));
      let previous = start > 0 && ref.seqIdx ? ref.seqIdx[bi * L + start - 1] : 0;
      let decay = 1;
      for (let i = 0; i < len; i++) {
        const pos = bi * L + start + i;
        if (ref.seqIdx && ref.seqIdx[pos] !== previous) decay = 0;
        if (ref.seqIdx) previous = ref.seqIdx[pos];
        decay *= Math.exp(d[pos * h + head] * ref.A[head]);
        for (let c = 0; c < p; c++) {
          let acc = 0;
          for (let k = 0; k < n; k++) acc += H[((bi * h + head) * p + c) * n + k] * ref.C[(pos * g + group) * n + k];
          out[((bi * len + i) * h + head) * p + c] = decay * acc;
        }
      }
    }
  }
  return out;
}

/** The reference's y before the gate. */
function ungatedReference(ref: RefInputs): Float64Array {
  const r = ssdReference(ref);
  return r.yUngated ?? r.y;
}

const CONFIG: ExampleConfig = { batch: 2, seqlen: 45, nheads: 4, headdim: 5, ngroups: 2, dstate: 6 };

const COMBOS: [string, ExampleOptions, SsdOptions][] = [
  ['D per head, softplus', { D: 'head' }, { dtSoftplus: true }],
  ['no D, positive dt, no softplus', { D: 'none', positiveDt: true }, {}],
  ['D per channel, dtBias, softplus, clamp', { D: 'channel', dtBias: true }, { dtSoftplus: true, dtLimit: [0.01, 0.04] }],
  ['z (M is before the gate), seqIdx, softplus', { D: 'head', z: true, seqStarts: [7, 16, 30] }, { dtSoftplus: true }],
  ['seqIdx starting at 3, dtBias, clamp', { D: 'channel', dtBias: true, seqStarts: [1, 44], seqFirst: 3 }, { dtSoftplus: true, dtLimit: [0, 0.05] }],
  ['bfloat16 inputs, seqIdx', { dtype: 'bfloat16', D: 'head', seqStarts: [20] }, { dtSoftplus: true }],
];

describe('ssdMatrix: M·(d·x) + D·x is y', () => {
  test.each(COMBOS)('whole sequence, %s', (_name, example, options) => {
    const { inputs, ref } = makeExample(rng, CONFIG, example);
    const M = ssdMatrix(inputs, { dtSoftplus: options.dtSoftplus, dtLimit: options.dtLimit });
    expect(M.type).toBe('float32');
    expect(M.dims).toEqual([CONFIG.batch, CONFIG.nheads, CONFIG.seqlen, CONFIG.seqlen]);
    expect(allFinite(M.data as Float32Array)).toBe(true);
    expect(l2(M.data as Float32Array)).toBeGreaterThan(0);
    const want = ungatedReference(withOptions(ref, options));
    const got = applyMatrix(M, withOptions(ref, options), 0, CONFIG.seqlen);
    expect(allFinite(got)).toBe(true);
    expect(l2(want)).toBeGreaterThan(0);
    expect(relativeL2(got, want)).toBeLessThan(MATRIX_BOUND);
  });

  test('cuSeqlens gives the matrix of the equivalent seqIdx', () => {
    const { inputs } = makeExample(rng, { ...CONFIG, batch: 1 }, { D: 'head' });
    const cu = Int32Array.from([0, 10, 10, 31, 45]);
    const seq = new Int32Array(45);
    for (let k = 0; k + 1 < cu.length; k++) seq.fill(k, cu[k], cu[k + 1]);
    const packed = ssdMatrix({ ...inputs, cuSeqlens: new Tensor('int32', cu, [5]) }, { dtSoftplus: true });
    const indexed = ssdMatrix({ ...inputs, seqIdx: new Tensor('int32', seq, [1, 45]) }, { dtSoftplus: true });
    expect(l2(packed.data as Float32Array)).toBeGreaterThan(0);
    expect(packed.data).toEqual(indexed.data);
  });
});

describe('ssdMatrix windows: M restricted to the window, plus the state entering it', () => {
  // [name, example, start, length, whether the state entering the window reaches it]
  const cases: [string, ExampleOptions, number, number, boolean][] = [
    ['inside one sequence, initialStates', { D: 'head', initialStates: true, dtBias: true }, 17, 20, true],
    ['a seqIdx boundary inside the window', { D: 'channel', z: true, seqStarts: [12, 25, 30] }, 17, 25, true],
    ['a sequence starting at the window: nothing enters', { D: 'channel', z: true, seqStarts: [12, 17, 30] }, 17, 25, false],
    ['at position 0: initialStates enter, seqIdx from 0', { D: 'head', initialStates: true, seqStarts: [9] }, 0, 30, true],
    ['at position 0: seqIdx from 2 drops initialStates', { D: 'head', initialStates: true, seqStarts: [9], seqFirst: 2 }, 0, 30, false],
    ['to the end (default length)', { D: 'head', initialStates: true }, 31, 14, true],
  ];
  test.each(cases)('%s', (_name, example, start, len, enters) => {
    const { inputs, ref } = makeExample(rng, CONFIG, example);
    const options: SsdOptions = { dtSoftplus: true };
    const r = withOptions(ref, options);
    const windowOptions = start + len === CONFIG.seqlen ? { dtSoftplus: true, start } : { dtSoftplus: true, start, length: len };
    const Mw = ssdMatrix(inputs, windowOptions);
    expect(Mw.dims).toEqual([CONFIG.batch, CONFIG.nheads, len, len]);
    expect(allFinite(Mw.data as Float32Array)).toBe(true);
    expect(l2(Mw.data as Float32Array)).toBeGreaterThan(0);

    // The window is the block [start, start + len)² of the whole matrix.
    const M = ssdMatrix(inputs, { dtSoftplus: true }).data as Float32Array;
    const L = CONFIG.seqlen;
    const block = new Float32Array(Mw.size);
    for (let plane = 0; plane < CONFIG.batch * CONFIG.nheads; plane++) {
      for (let i = 0; i < len; i++) {
        for (let s = 0; s < len; s++) block[(plane * len + i) * len + s] = M[(plane * L + start + i) * L + start + s];
      }
    }
    expect(l2(block)).toBeGreaterThan(0);
    expect(relativeL2(Mw.data as Float32Array, block)).toBeLessThan(MATRIX_BOUND);

    // y on the window = M_w·(d·x)_w + D·x + what enters through the state H_{start−1}.
    const fromWindow = applyMatrix(Mw, r, start, len);
    const entering = enteringTerm(r, start, len);
    const { headdim: p, nheads: h, batch: b } = CONFIG;
    const want = slicePositions(ungatedReference(r), b, L, h * p, start, start + len);
    expect(l2(fromWindow)).toBeGreaterThan(0);
    expect(l2(want)).toBeGreaterThan(0);
    const got = fromWindow.map((v, i) => v + entering[i]);
    expect(relativeL2(got, want)).toBeLessThan(MATRIX_BOUND);
    if (enters) {
      // the window alone misses what the earlier tokens carry in
      expect(l2(entering)).toBeGreaterThan(0);
      expect(relativeL2(fromWindow, want)).toBeGreaterThan(1e-3);
    } else {
      expect(l2(entering)).toBe(0);
    }
  });
});

describe('ssdMatrix structure', () => {
  test('lower triangular, C_t·B_t on the diagonal, zero exactly across seqIdx boundaries and nonzero within', () => {
    const config = { batch: 2, seqlen: 40, nheads: 4, headdim: 3, ngroups: 2, dstate: 8 };
    const starts = [11, 25];
    const { inputs, ref } = makeExample(rng, config, { D: 'head', seqStarts: starts });
    const M = ssdMatrix(inputs, { dtSoftplus: true }).data as Float32Array;
    const L = config.seqlen;
    const seqOf = (t: number): number => starts.filter((s) => s <= t).length;
    let nonzero = 0;
    for (let b = 0; b < config.batch; b++) {
      for (let head = 0; head < config.nheads; head++) {
        const group = Math.floor(head / 2);
        const plane = (b * config.nheads + head) * L * L;
        for (let t = 0; t < L; t++) {
          for (let s = 0; s < L; s++) {
            const v = M[plane + t * L + s];
            if (s > t || seqOf(s) !== seqOf(t)) {
              expect(v).toBe(0);
            } else {
              expect(v).not.toBe(0);
              expect(Number.isFinite(v)).toBe(true);
              nonzero++;
            }
          }
          let cb = 0;
          for (let k = 0; k < config.dstate; k++) cb += ref.C[((b * L + t) * 2 + group) * 8 + k] * ref.B[((b * L + t) * 2 + group) * 8 + k];
          expect(M[plane + t * L + t] / cb).toBeCloseTo(1, MATRIX_ENTRY_DIGITS);
        }
      }
    }
    expect(nonzero).toBeGreaterThan(0);
  });

  test('decay: |M[t][s]| / |C_t·B_s| is exp(a_{s+1} + ... + a_t), falling away from the diagonal', () => {
    const config = { batch: 1, seqlen: 32, nheads: 2, headdim: 1, ngroups: 1, dstate: 4 };
    const { inputs, ref } = makeExample(rng, config, { D: 'none' });
    const M = ssdMatrix(inputs, { dtSoftplus: true }).data as Float32Array;
    const d = stepSizes(withOptions(ref, { dtSoftplus: true }));
    for (let head = 0; head < 2; head++) {
      const plane = head * 32 * 32;
      for (const [t, s] of [[5, 5], [20, 3], [31, 0], [31, 30]]) {
        let cb = 0;
        for (let k = 0; k < 4; k++) cb += ref.C[t * 4 + k] * ref.B[s * 4 + k];
        let sum = 0;
        for (let r = s + 1; r <= t; r++) sum += d[r * 2 + head] * ref.A[head];
        expect(M[plane + t * 32 + s] / cb / Math.exp(sum)).toBeCloseTo(1, MATRIX_ENTRY_DIGITS);
      }
    }
  });

  test('an off-diagonal block within one sequence has rank dstate (numerically)', () => {
    const dstate = 4;
    const config = { batch: 1, seqlen: 64, nheads: 3, headdim: 2, ngroups: 1, dstate };
    const { inputs } = makeExample(rng, config, { D: 'head', dtBias: true });
    const M = ssdMatrix(inputs, { dtSoftplus: true }).data as Float32Array;
    const L = config.seqlen;
    const Q = 16;
    for (let head = 0; head < config.nheads; head++) {
      // rows from chunk 2 (positions 32..47), columns from chunk 0 (0..15)
      const block: number[][] = [];
      for (let i = 0; i < Q; i++) {
        block.push(Array.from({ length: Q }, (_, j) => M[(head * L + 2 * Q + i) * L + j]));
      }
      const sigma = singularValues(block);
      expect(sigma.every(Number.isFinite)).toBe(true);
      expect(sigma[0]).toBeGreaterThan(0);
      expect(sigma[dstate - 1] / sigma[0]).toBeGreaterThan(MATRIX_RANK.kept); // rank is dstate, not less ...
      expect(sigma[dstate] / sigma[0]).toBeLessThan(MATRIX_RANK.dropped); // ... and not more (float32 rounding of M)
    }
    // The same block of a diagonal chunk (rows and columns 16..31) is full rank: the mask L cuts it.
    const diagonal: number[][] = [];
    for (let i = 0; i < Q; i++) diagonal.push(Array.from({ length: Q }, (_, j) => M[(Q + i) * L + Q + j]));
    const sigma = singularValues(diagonal);
    expect(sigma[dstate] / sigma[0]).toBeGreaterThan(MATRIX_RANK.kept);
  });
});

/**
 * Singular values of a square matrix, largest first, by one-sided Jacobi: rotate pairs of columns
 * until they are orthogonal; the singular values are then the column norms.
 */
function singularValues(matrix: number[][]): number[] {
  const a = matrix.map((row) => [...row]);
  const m = a.length;
  const n = a[0].length;
  for (let sweep = 0; sweep < 60; sweep++) {
    let off = 0;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        let alpha = 0;
        let beta = 0;
        let gamma = 0;
        for (let i = 0; i < m; i++) {
          alpha += a[i][p] * a[i][p];
          beta += a[i][q] * a[i][q];
          gamma += a[i][p] * a[i][q];
        }
        if (gamma === 0 || Math.abs(gamma) <= 1e-300) continue;
        off = Math.max(off, Math.abs(gamma) / Math.sqrt(alpha * beta));
        const zeta = (beta - alpha) / (2 * gamma);
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        for (let i = 0; i < m; i++) {
          const ap = a[i][p];
          const aq = a[i][q];
          a[i][p] = c * ap - s * aq;
          a[i][q] = s * ap + c * aq;
        }
      }
    }
    if (off < 1e-15) break;
  }
  const norms = Array.from({ length: n }, (_, j) => Math.sqrt(a.reduce((acc, row) => acc + row[j] * row[j], 0)));
  return norms.sort((x, y) => y - x);
}

describe('ssdMatrix validation', () => {
  const small = (): SsdInputs => makeExample(new Random(1), { batch: 1, seqlen: 10, nheads: 2, headdim: 2, ngroups: 1, dstate: 3 }).inputs;

  test('the Jacobi routine finds known singular values', () => {
    const s = singularValues([
      [3, 0, 0],
      [0, -5, 0],
      [0, 0, 0],
    ]);
    expect(s[0]).toBeCloseTo(5, 12);
    expect(s[1]).toBeCloseTo(3, 12);
    expect(s[2]).toBe(0);
    const r = singularValues([
      [1, 2],
      [2, 4],
    ]); // rank 1, σ = 5
    expect(r[0]).toBeCloseTo(5, 12);
    expect(r[1]).toBeLessThan(1e-12);
  });

  test('inputs are checked with the messages of ssd()', () => {
    const inputs = small();
    const bad: SsdInputs[] = [
      { ...inputs, dt: new Tensor('float32', new Float32Array(10), [1, 10, 1]) },
      { ...inputs, seqIdx: new Tensor('int32', Int32Array.from([0, 0, 1, 0, 1, 1, 1, 1, 1, 1]), [1, 10]) },
      { ...inputs, A: new Tensor('float32', Float32Array.from([NaN, -1]), [2]) },
      { ...inputs, B: new Tensor('float32', new Float32Array(10 * 2 * 3), [1, 10, 2, 3]) },
      { ...inputs, unknown: inputs.x } as unknown as SsdInputs,
    ];
    for (const b of bad) {
      let expected: unknown;
      try {
        ssdSync(b);
      } catch (err) {
        expected = err;
      }
      expect(expected).toBeInstanceOf(Error);
      expect(() => ssdMatrix(b)).toThrow((expected as Error).message);
      expect(() => ssdMatrix(b)).toThrow((expected as Error).constructor as new () => Error);
    }
    expect(() => ssdMatrix(inputs, { dtLimit: [1, 0] })).toThrow(RangeError);
    expect(() => ssdMatrix(inputs, { dtSoftplus: 1 as unknown as boolean })).toThrow(TypeError);
  });

  test('options: unknown names, and the window', () => {
    const inputs = small();
    expect(() => ssdMatrix(inputs, { chunkSize: 64 } as never)).toThrow(SsdError);
    expect(() => ssdMatrix(inputs, { lenght: 3 } as never)).toThrow(/did you mean 'length'/);
    expect(() => ssdMatrix(inputs, { start: '1' as unknown as number })).toThrow(TypeError);
    expect(() => ssdMatrix(inputs, { start: -1 })).toThrow(RangeError);
    expect(() => ssdMatrix(inputs, { start: 10 })).toThrow(/options\.start .*received 10/);
    expect(() => ssdMatrix(inputs, { start: 1.5 })).toThrow(RangeError);
    expect(() => ssdMatrix(inputs, { length: 0 })).toThrow(RangeError);
    expect(() => ssdMatrix(inputs, { start: 4, length: 7 })).toThrow(/from 1 to 6 \(seqlen 10 − start 4\).*received 7/);
    expect(ssdMatrix(inputs, { start: 4, length: 6 }).dims).toEqual([1, 2, 6, 6]);
    expect(ssdMatrix(inputs, { start: 9 }).dims).toEqual([1, 2, 1, 1]);
  });

  test(`sequences longer than ${SSD_MATRIX_MAX_LENGTH} need a window`, () => {
    const L = SSD_MATRIX_MAX_LENGTH + 100;
    const t = (dims: number[]): Tensor => new Tensor('float32', new Float32Array(dims.reduce((a, b) => a * b)).fill(0.5), dims);
    const A = new Tensor('float32', Float32Array.from([-0.5]), [1]);
    const inputs: SsdInputs = { x: t([1, L, 1, 1]), dt: t([1, L, 1]), A, B: t([1, L, 1, 1]), C: t([1, L, 1, 1]) };
    expect(() => ssdMatrix(inputs)).toThrow(RangeError);
    expect(() => ssdMatrix(inputs)).toThrow(/8292 positions .* exceed the limit of 8192/);
    expect(() => ssdMatrix(inputs, { length: 8193 })).toThrow(/from 1 to 8192 \(the limit of 8192\)/);
    const M = ssdMatrix(inputs, { start: L - 50 });
    expect(M.dims).toEqual([1, 1, 50, 50]);
    // M[49][0] = C·B · exp(49 · d·A) with d = 0.5, A = −0.5, B = C = 0.5
    expect((M.data as Float32Array)[49 * 50] / (0.25 * Math.exp(-0.25 * 49))).toBeCloseTo(1, MATRIX_ENTRY_DIGITS);
  });
});

test('ssdMatrix is exported to ES modules too (dist/lib/index.mjs, written by scripts/write-esm.js)', () => {
  const script = `
    import { ssdMatrix, Tensor } from 'ssd-kernels';
    const t = (v, d) => new Tensor('float32', Float32Array.from(v), d);
    const M = ssdMatrix({ x: t([1, 1], [1, 2, 1, 1]), dt: t([0.5, 0.5], [1, 2, 1]), A: t([-2], [1]), B: t([2, 2], [1, 2, 1, 1]), C: t([3, 3], [1, 2, 1, 1]) });
    console.log(JSON.stringify({ dims: M.dims, data: Array.from(M.data) }));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: path.join(__dirname, '..'), encoding: 'utf8' });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  const out = JSON.parse(r.stdout) as { dims: number[]; data: number[] };
  expect(out.dims).toEqual([1, 1, 2, 2]);
  // C·B = 6 on and below the diagonal, decayed by exp(d·A) = exp(−1) one step down
  expect(out.data[0]).toBe(6);
  expect(out.data[1]).toBe(0);
  expect(out.data[2]).toBeCloseTo(6 * Math.exp(-1), 6);
  expect(out.data[3]).toBe(6);
});
