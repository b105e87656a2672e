/**
 * The SSD scan as a matrix: the semiseparable token-to-token weights M = L ∘ (C·Bᵀ) of the paper
 * (Dao & Gu 2024, §3), per (batch, head), for inspection:
 *
 *   const M = ssdMatrix(inputs, { dtSoftplus: true, start: 0, length: 256 }); // (batch, nheads, length, length) float32
 *
 * With d_t = clamp(sp(dt_t + dtBias), lo, hi) and a_t = d_t·A as in ssd():
 *
 *   M[t][s] = (C_t · B_s) · exp(a_{s+1} + ... + a_t)   for s <= t in the same sequence (seqIdx / cuSeqlens)
 *   M[t][s] = 0                                       above the diagonal and across a sequence boundary
 *
 * so that, for a call without initialStates, ssd()'s output before the gate is
 *   y[t, p] = Σ_s M[t][s] · d_s · x[s, p] + D·x[t, p]     (every channel p of a head shares M)
 * and with z the gate multiplies it afterwards, entry by entry: y ← y · silu(z). The gate scales
 * each output row by a per-channel factor; it mixes no tokens, so M does not contain it.
 *
 * A window { start, length } is M restricted to the rows and columns start .. start + length − 1:
 * the same entries as the whole matrix has there. It covers what the tokens inside the window
 * contribute; the tokens before `start` (and initialStates) reach the window only through the state
 * entering it, H_{start−1}, which the window does not show:
 *   y[t] = Σ_{s in window} M[t][s]·d_s·x[s] + D·x[t] + exp(a_start + ... + a_t) · H_{start−1} · C_t
 * (the last term is zero from the first sequence boundary inside the window on).
 *
 * Computed in float64 in TypeScript (an inspection tool, not a kernel): O(batch · nheads · length² ·
 * dstate) for C·Bᵀ, which is formed once per group and row, and one exp per entry from cumulative
 * sums of a_t per head.
 */
import { SsdError, rangeError, typeError } from './errors';
import { stepSize } from './reference';
import { MAX_ELEMENTS } from './rules';
import { Tensor, type TensorLike } from './tensor';
import { optionsObject, validate, type SsdInputs, type SsdOptions } from './validate';

/** The longest window ssdMatrix() computes: a (length × length) matrix per head. */
export const SSD_MATRIX_MAX_LENGTH = 8192;

export interface SsdMatrixOptions extends Pick<SsdOptions, 'dtSoftplus' | 'dtLimit'> {
  /** First position of the window (default 0). */
  start?: number;
  /** Positions in the window, 1 to 8192 (default: from start to the end, if that is at most 8192). */
  length?: number;
}

const MATRIX_OPTION_NAMES = ['start', 'length', 'dtSoftplus', 'dtLimit'] as const;

function readWindow(options: Record<string, unknown>, seqlen: number): { start: number; length: number } {
  let start = 0;
  if (options.start !== undefined) {
    const s = options.start;
    if (typeof s !== 'number') throw typeError('options.start', 'an integer position', s);
    if (!Number.isInteger(s) || s < 0 || s >= seqlen) {
      throw rangeError('options.start', `an integer from 0 to seqlen − 1 = ${seqlen - 1}`, String(s));
    }
    start = s;
  }
  const rest = seqlen - start;
  if (options.length === undefined) {
    if (rest > SSD_MATRIX_MAX_LENGTH) {
      throw rangeError(
        'options.length',
        `a window length (the ${rest} positions from options.start ${start} to the end of seqlen ${seqlen} exceed the limit of ${SSD_MATRIX_MAX_LENGTH})`,
        'undefined',
      );
    }
    return { start, length: rest };
  }
  const l = options.length;
  if (typeof l !== 'number') throw typeError('options.length', 'an integer window length', l);
  const most = Math.min(SSD_MATRIX_MAX_LENGTH, rest);
  if (!Number.isInteger(l) || l < 1 || l > most) {
    const why = most === rest ? `seqlen ${seqlen} − start ${start}` : `the limit of ${SSD_MATRIX_MAX_LENGTH}`;
    throw rangeError('options.length', `an integer from 1 to ${most} (${why})`, String(l));
  }
  return { start, length: l };
}

/**
 * The sequence each position of one batch row belongs to: seqIdx's values, or the index of the
 * cuSeqlens segment, or 0 everywhere without packing.
 */
function sequenceIds(t: SsdInputs, b: number, seqlen: number): Int32Array {
  if (t.seqIdx !== undefined) return (t.seqIdx.data as Int32Array).subarray(b * seqlen, (b + 1) * seqlen);
  const ids = new Int32Array(seqlen);
  if (t.cuSeqlens !== undefined) {
    const offsets = t.cuSeqlens.data as Int32Array;
    for (let k = 0; k + 1 < offsets.length; k++) ids.fill(k, offsets[k], offsets[k + 1]);
  }
  return ids;
}

/**
 * M = L ∘ (C·Bᵀ) per (batch, head) over a window of positions: a float32 Tensor (batch, nheads,
 * length, length) with M[b, h, i, j] the weight of position start + j in the output at position
 * start + i (see the file's header for the definition and what a window leaves out).
 *
 * `inputs` are those of ssd() and are validated exactly as ssd() validates them; M reads dt, A, B,
 * C, dtBias and seqIdx or cuSeqlens. x fixes nheads (and is checked) but is not read; D, z and
 * initialStates are not part of M. Options: dtSoftplus and dtLimit as for ssd(), and the window
 * { start, length }. Host tensors only. Throws TypeError, RangeError or SsdError.
 */
export function ssdMatrix(inputs: SsdInputs<TensorLike>, options?: SsdMatrixOptions): Tensor {
  const o = optionsObject(options, MATRIX_OPTION_NAMES);
  const forwardOptions: Record<string, unknown> = {};
  if (o.dtSoftplus !== undefined) forwardOptions.dtSoftplus = o.dtSoftplus;
  if (o.dtLimit !== undefined) forwardOptions.dtLimit = o.dtLimit;
  const { inputs: t, plan } = validate(inputs, forwardOptions);
  for (const [name, tensor] of Object.entries(t) as [string, Tensor][]) {
    if (tensor.location !== 'cpu') {
      throw new SsdError('ERR_SSD_DEVICE', `ssdMatrix() reads host tensors but inputs.${name} is on 'cuda:${tensor.device}'; use \`await tensor.toHost()\``);
    }
  }
  const { start, length } = readWindow(o, plan.seqlen);
  const { batch, seqlen, nheads: h, ngroups: g, dstate: n } = plan;
  const elements = batch * h * length * length;
  if (elements > MAX_ELEMENTS) {
    throw rangeError('the matrix', `at most ${MAX_ELEMENTS} elements (batch · nheads · length²)`, `${batch} · ${h} · ${length}² = ${elements}; ask for a shorter window`);
  }
  let out: Float32Array;
  try {
    out = new Float32Array(elements);
  } catch (err) {
    throw new SsdError('ERR_SSD_OUT_OF_MEMORY', `Could not allocate the matrix (${elements} float32 values): ${(err as Error).message}`);
  }

  const dt = t.dt.toFloat32();
  const A = t.A.toFloat32();
  const B = t.B.toFloat32();
  const C = t.C.toFloat32();
  const bias = t.dtBias?.toFloat32();
  const headsPerGroup = h / g;
  const Bw = new Float64Array(length * n); // (length, n): the window's B of one group
  const Cw = new Float64Array(length * n); // (length, n)
  const cum = new Float64Array(headsPerGroup * length); // (heads of the group, length): inclusive sums of a_t
  const row = new Float64Array(length); // C_t · B_s for s <= t in t's sequence
  const plane = length * length;

  for (let b = 0; b < batch; b++) {
    const ids = sequenceIds(t, b, seqlen);
    // first[i]: the first window position of the sequence that window position i belongs to
    const first = new Int32Array(length);
    for (let i = 1; i < length; i++) first[i] = ids[start + i] === ids[start + i - 1] ? first[i - 1] : i;
    for (let group = 0; group < g; group++) {
      for (let i = 0; i < length; i++) {
        const src = ((b * seqlen + start + i) * g + group) * n;
        for (let k = 0; k < n; k++) {
          Bw[i * n + k] = B[src + k];
          Cw[i * n + k] = C[src + k];
        }
      }
      // cum[j][i] = a_start + ... + a_{start+i} for head j of the group; M's decay from s to t is
      // exp(cum[t] − cum[s]) = exp(a_{s+1} + ... + a_t), whose exponent is <= 0 when A <= 0.
      for (let j = 0; j < headsPerGroup; j++) {
        const head = group * headsPerGroup + j;
        let sum = 0;
        for (let i = 0; i < length; i++) {
          const d = stepSize(dt[(b * seqlen + start + i) * h + head], bias ? bias[head] : 0, plan.dtSoftplus, plan.dtMin, plan.dtMax);
          sum += d * A[head];
          cum[j * length + i] = sum;
        }
      }
      for (let i = 0; i < length; i++) {
        const lo = first[i];
        for (let s = lo; s <= i; s++) {
          let dot = 0;
          for (let k = 0; k < n; k++) dot += Cw[i * n + k] * Bw[s * n + k];
          row[s] = dot;
        }
        for (let j = 0; j < headsPerGroup; j++) {
          const head = group * headsPerGroup + j;
          const base = (b * h + head) * plane + i * length;
          const cumRow = j * length;
          const ci = cum[cumRow + i];
          for (let s = lo; s <= i; s++) out[base + s] = row[s] * Math.exp(ci - cum[cumRow + s]);
        }
      }
    }
  }
  return new Tensor('float32', out, [batch, h, length, length]);
}
