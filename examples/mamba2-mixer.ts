/**
 * A complete Mamba-2 mixer (the sequence-mixing layer of a Mamba-2 block, as mamba_ssm's `Mamba2`
 * module computes it) in TypeScript around ssd-kernels, float32, with seeded random weights:
 *
 *   in_proj:  u (d_model) → [z (d_inner), xBC (d_inner + 2·ngroups·d_state), dt (nheads)]
 *   conv1d:   causal depthwise convolution of width 4 over xBC's channels, with bias, then SiLU;
 *             xBC → x (nheads, headdim), B and C (ngroups, d_state)
 *   SSD:      y = ssd(x, dt, A, B, C, D, dtBias; dtSoftplus) over a prompt, or ssdStep() per token
 *   norm:     gated RMSNorm per group of d_inner / ngroups channels: rmsnorm(y · silu(z)) · weight
 *   out_proj: d_inner → d_model
 *
 * `forward(u, cache?)` runs a whole sequence (the prompt: "prefill") with one ssd() call and returns
 * the cache a decoder carries: the last (width − 1) inputs of the convolution and the SSM state.
 * `step(u, cache)` runs one token per batch entry with ssdStep() and advances the cache in place.
 * Prefill of k tokens then k' steps gives the output of one forward over the k + k' tokens.
 *
 * Run it: `npm run build:ts && node dist/examples/mamba2-mixer.js`. In your own project import from
 * 'ssd-kernels' instead of '../lib/index'.
 */
import { Tensor, ssd, ssdStep } from '../lib/index';

export interface MixerConfig {
  dModel: number;
  /** d_inner = expand · d_model (default expand 2) */
  expand?: number;
  headdim: number;
  dState: number;
  ngroups: number;
  /** width of the causal convolution (default 4) */
  dConv?: number;
}

/** What a decoder carries from token to token, per batch entry. */
export interface MixerCache {
  /** (batch, dConv − 1, convDim): the convolution's last raw inputs, oldest first */
  conv: Float32Array;
  /** (batch, nheads, headdim, dState) float32: the SSM state, advanced in place by ssdStep() */
  ssm: Tensor;
}

/** A seeded generator (mulberry32) with Box–Muller normals, so the example needs nothing else. */
class Rng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  uniform(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  normal(): number {
    const u = 1 - this.uniform(); // in (0, 1]
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.uniform());
  }

  normals(count: number, scale: number): Float32Array {
    return Float32Array.from({ length: count }, () => scale * this.normal());
  }
}

const silu = (v: number): number => v / (1 + Math.exp(-v));

/** out (rows, outDim) = input (rows, inDim) · weightᵀ with weight (outDim, inDim), float64 sums. */
function linear(input: Float32Array, rows: number, inDim: number, weight: Float32Array, outDim: number): Float32Array {
  const out = new Float32Array(rows * outDim);
  for (let r = 0; r < rows; r++) {
    for (let o = 0; o < outDim; o++) {
      let acc = 0;
      for (let i = 0; i < inDim; i++) acc += input[r * inDim + i] * weight[o * inDim + i];
      out[r * outDim + o] = acc;
    }
  }
  return out;
}

export class Mamba2Mixer {
  readonly dModel: number;
  readonly dInner: number;
  readonly headdim: number;
  readonly nheads: number;
  readonly dState: number;
  readonly ngroups: number;
  readonly dConv: number;
  /** channels of the convolution: x, B and C */
  readonly convDim: number;
  /** outputs of in_proj: z, xBC, dt */
  readonly dInProj: number;
  readonly eps = 1e-5;

  readonly inProj: Float32Array; // (dInProj, dModel)
  readonly convWeight: Float32Array; // (convDim, dConv)
  readonly convBias: Float32Array; // (convDim)
  readonly A: Tensor; // (nheads): −exp(A_log)
  readonly D: Tensor; // (nheads)
  readonly dtBias: Tensor; // (nheads)
  readonly normWeight: Float32Array; // (dInner)
  readonly outProj: Float32Array; // (dModel, dInner)

  /** Random weights at the scales of mamba_ssm's initialisation, from `seed`. */
  constructor(config: MixerConfig, seed = 0) {
    this.dModel = config.dModel;
    this.dInner = (config.expand ?? 2) * config.dModel;
    this.headdim = config.headdim;
    if (this.dInner % this.headdim !== 0) throw new RangeError(`headdim ${this.headdim} must divide d_inner ${this.dInner}`);
    this.nheads = this.dInner / this.headdim;
    this.dState = config.dState;
    this.ngroups = config.ngroups;
    if (this.nheads % this.ngroups !== 0) throw new RangeError(`ngroups ${this.ngroups} must divide nheads ${this.nheads}`);
    this.dConv = config.dConv ?? 4;
    this.convDim = this.dInner + 2 * this.ngroups * this.dState;
    this.dInProj = this.dInner + this.convDim + this.nheads;

    const rng = new Rng(seed);
    const h = this.nheads;
    this.inProj = rng.normals(this.dInProj * this.dModel, 1 / Math.sqrt(this.dModel));
    // PyTorch's default for a depthwise conv: U(−1/√width, 1/√width)
    const bound = 1 / Math.sqrt(this.dConv);
    this.convWeight = Float32Array.from({ length: this.convDim * this.dConv }, () => bound * (2 * rng.uniform() - 1));
    this.convBias = Float32Array.from({ length: this.convDim }, () => bound * (2 * rng.uniform() - 1));
    // dt = softplus(raw + dtBias) starts log-uniform in [0.001, 0.1]: dtBias is its inverse softplus
    const dt = Float32Array.from({ length: h }, () => Math.exp(Math.log(0.001) + rng.uniform() * (Math.log(0.1) - Math.log(0.001))));
    this.dtBias = new Tensor('float32', dt.map((v) => v + Math.log(-Math.expm1(-v))), [h]);
    // A_log = log(U(1, 16)), A = −exp(A_log)
    this.A = new Tensor('float32', Float32Array.from({ length: h }, () => -(1 + 15 * rng.uniform())), [h]);
    this.D = new Tensor('float32', new Float32Array(h).fill(1), [h]);
    this.normWeight = Float32Array.from({ length: this.dInner }, () => 1 + 0.1 * rng.normal());
    this.outProj = rng.normals(this.dModel * this.dInner, 1 / Math.sqrt(this.dInner));
  }

  /** A cache for `batch` sequences that have seen nothing yet: zeros. */
  emptyCache(batch: number): MixerCache {
    return {
      conv: new Float32Array(batch * (this.dConv - 1) * this.convDim),
      ssm: new Tensor('float32', new Float32Array(batch * this.nheads * this.headdim * this.dState), [batch, this.nheads, this.headdim, this.dState]),
    };
  }

  /**
   * The mixer over whole sequences u (batch, seqlen, dModel): one ssd() call. With a cache, the
   * sequences continue from it (the convolution reads its past inputs, the scan starts from its
   * state); without, they start from zeros. Returns the output (batch, seqlen, dModel) and the
   * cache after the last position (the given cache is left as it was).
   */
  async forward(u: Float32Array, batch: number, seqlen: number, cache?: MixerCache): Promise<{ out: Float32Array; cache: MixerCache }> {
    const { dInner, convDim, nheads: h, headdim: p, ngroups: g, dState: n, dConv: w } = this;
    const past = w - 1;
    const zxbcdt = linear(u, batch * seqlen, this.dModel, this.inProj, this.dInProj);

    // The convolution's input per batch entry: the cache's last raw inputs, then the sequence's.
    const padded = new Float32Array(batch * (past + seqlen) * convDim); // (batch, past + seqlen, convDim)
    for (let b = 0; b < batch; b++) {
      const rowBase = b * (past + seqlen);
      if (cache) padded.set(cache.conv.subarray(b * past * convDim, (b + 1) * past * convDim), rowBase * convDim);
      for (let t = 0; t < seqlen; t++) {
        const src = (b * seqlen + t) * this.dInProj + dInner;
        padded.set(zxbcdt.subarray(src, src + convDim), (rowBase + past + t) * convDim);
      }
    }
    const x = new Float32Array(batch * seqlen * dInner); // (batch, seqlen, nheads, headdim)
    const B = new Float32Array(batch * seqlen * g * n); // (batch, seqlen, ngroups, dState)
    const C = new Float32Array(batch * seqlen * g * n);
    const dt = new Float32Array(batch * seqlen * h); // (batch, seqlen, nheads)
    for (let b = 0; b < batch; b++) {
      for (let t = 0; t < seqlen; t++) {
        const row = b * seqlen + t;
        const window = (b * (past + seqlen) + t) * convDim; // inputs t − past .. t of this entry
        this.convolve(padded.subarray(window, window + w * convDim), x, B, C, row);
        for (let head = 0; head < h; head++) dt[row * h + head] = zxbcdt[row * this.dInProj + dInner + convDim + head];
      }
    }

    const { y, finalStates } = await ssd(
      {
        x: new Tensor('float32', x, [batch, seqlen, h, p]),
        dt: new Tensor('float32', dt, [batch, seqlen, h]),
        A: this.A,
        B: new Tensor('float32', B, [batch, seqlen, g, n]),
        C: new Tensor('float32', C, [batch, seqlen, g, n]),
        D: this.D,
        dtBias: this.dtBias,
        ...(cache ? { initialStates: cache.ssm } : {}),
      },
      { dtSoftplus: true, returnFinalStates: true },
    );
    const out = this.gateNormProject(y.data as Float32Array, zxbcdt, batch * seqlen);

    const conv = new Float32Array(batch * past * convDim);
    for (let b = 0; b < batch; b++) {
      const last = (b * (past + seqlen) + seqlen) * convDim; // the final `past` rows of this entry
      conv.set(padded.subarray(last, last + past * convDim), b * past * convDim);
    }
    return { out, cache: { conv, ssm: finalStates! } };
  }

  /**
   * One token per batch entry, u (batch, dModel): one ssdStep() call. Advances `cache` in place
   * (the convolution's inputs shift by one, the SSM state steps) and returns the output (batch, dModel).
   */
  async step(u: Float32Array, batch: number, cache: MixerCache): Promise<Float32Array> {
    const { dInner, convDim, nheads: h, headdim: p, ngroups: g, dState: n, dConv: w } = this;
    const past = w - 1;
    const zxbcdt = linear(u, batch, this.dModel, this.inProj, this.dInProj);
    const x = new Float32Array(batch * dInner); // (batch, nheads, headdim)
    const B = new Float32Array(batch * g * n); // (batch, ngroups, dState)
    const C = new Float32Array(batch * g * n);
    const dt = new Float32Array(batch * h); // (batch, nheads)
    const window = new Float32Array(w * convDim);
    for (let b = 0; b < batch; b++) {
      const state = cache.conv.subarray(b * past * convDim, (b + 1) * past * convDim);
      window.set(state, 0);
      window.set(zxbcdt.subarray(b * this.dInProj + dInner, b * this.dInProj + dInner + convDim), past * convDim);
      this.convolve(window, x, B, C, b);
      state.set(window.subarray(convDim)); // drop the oldest input, keep the newest `past`
      for (let head = 0; head < h; head++) dt[b * h + head] = zxbcdt[b * this.dInProj + dInner + convDim + head];
    }
    const { y } = await ssdStep(
      cache.ssm,
      {
        x: new Tensor('float32', x, [batch, h, p]),
        dt: new Tensor('float32', dt, [batch, h]),
        A: this.A,
        B: new Tensor('float32', B, [batch, g, n]),
        C: new Tensor('float32', C, [batch, g, n]),
        D: this.D,
        dtBias: this.dtBias,
      },
      { dtSoftplus: true },
    );
    return this.gateNormProject(y.data as Float32Array, zxbcdt, batch);
  }

  /**
   * The convolution at one position: `window` holds its dConv raw inputs (dConv, convDim), oldest
   * first; SiLU of the result is split into x, B and C at `row` (a position of their layouts).
   */
  private convolve(window: Float32Array, x: Float32Array, B: Float32Array, C: Float32Array, row: number): void {
    const { dInner, convDim, dConv: w } = this;
    const gn = this.ngroups * this.dState;
    for (let c = 0; c < convDim; c++) {
      let acc = this.convBias[c];
      for (let k = 0; k < w; k++) acc += this.convWeight[c * w + k] * window[k * convDim + c];
      const v = silu(acc);
      if (c < dInner) x[row * dInner + c] = v;
      else if (c < dInner + gn) B[row * gn + c - dInner] = v;
      else C[row * gn + c - dInner - gn] = v;
    }
  }

  /** Gated RMSNorm of y (rows, dInner) with z from in_proj's output, then out_proj: (rows, dModel). */
  private gateNormProject(y: Float32Array, zxbcdt: Float32Array, rows: number): Float32Array {
    const { dInner } = this;
    const groupSize = dInner / this.ngroups;
    const normed = new Float32Array(rows * dInner);
    const gated = new Float64Array(groupSize);
    for (let r = 0; r < rows; r++) {
      for (let group = 0; group < this.ngroups; group++) {
        let squares = 0;
        for (let i = 0; i < groupSize; i++) {
          const c = group * groupSize + i;
          gated[i] = y[r * dInner + c] * silu(zxbcdt[r * this.dInProj + c]);
          squares += gated[i] * gated[i];
        }
        const scale = 1 / Math.sqrt(squares / groupSize + this.eps);
        for (let i = 0; i < groupSize; i++) {
          const c = group * groupSize + i;
          normed[r * dInner + c] = gated[i] * scale * this.normWeight[c];
        }
      }
    }
    return linear(normed, rows, dInner, this.outProj, this.dModel);
  }
}

/** Prefill a random prompt, decode a few tokens, and compare with one forward over everything. */
async function main(): Promise<void> {
  const mixer = new Mamba2Mixer({ dModel: 64, headdim: 16, dState: 32, ngroups: 2 }, 7);
  const [batch, prompt, generated] = [2, 24, 8];
  const total = prompt + generated;
  const rng = new Rng(11);
  const u = rng.normals(batch * total * mixer.dModel, 1); // (batch, total, dModel)

  const tokens = (from: number, to: number): Float32Array => {
    const out = new Float32Array(batch * (to - from) * mixer.dModel);
    for (let b = 0; b < batch; b++) out.set(u.subarray((b * total + from) * mixer.dModel, (b * total + to) * mixer.dModel), b * (to - from) * mixer.dModel);
    return out;
  };
  const { cache } = await mixer.forward(tokens(0, prompt), batch, prompt);
  let worst = 0;
  const whole = (await mixer.forward(u, batch, total)).out;
  for (let t = prompt; t < total; t++) {
    const out = await mixer.step(tokens(t, t + 1), batch, cache);
    for (let b = 0; b < batch; b++) {
      for (let i = 0; i < mixer.dModel; i++) {
        worst = Math.max(worst, Math.abs(out[b * mixer.dModel + i] - whole[(b * total + t) * mixer.dModel + i]));
      }
    }
  }
  console.log(`Mamba-2 mixer: d_model ${mixer.dModel}, d_inner ${mixer.dInner}, ${mixer.nheads} heads of ${mixer.headdim}, d_state ${mixer.dState}, ${mixer.ngroups} groups, conv width ${mixer.dConv}`);
  console.log(`batch ${batch}: prefill ${prompt} tokens with ssd(), decode ${generated} with ssdStep()`);
  console.log(`largest |decoded − one forward over all ${total} tokens| = ${worst.toExponential(2)}`);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
