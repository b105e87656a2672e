/**
 * The > 2^31-element pack of test/large.test.ts (CPU) and test/cuda/large.cuda.test.ts (GPU): x holds
 * 2^20 tokens × 33 heads × 64 channels = 2,214,592,512 bfloat16 elements (4.4 GB), and a seqIdx
 * boundary puts the last sequence (8,192 tokens) wholly past element 2^31. Only the last sequence and
 * the LEAD tokens before it hold random values; the rest of x, dt, B and C is zero (x's zero pages
 * are never written, so they cost no memory). The run "alone" is a pack of the same two pieces,
 * [S0 − LEAD, S0) and [S0, L), over views of the same memory: every operation on the last sequence
 * is then the same in both runs.
 */
import { Tensor, type FloatType, type SsdInputs } from '../lib/index';
import { Random } from '../lib/examples';

export const L = 2 ** 20;
export const H = 33;
export const P = 64;
export const HP = H * P;
/** The last sequence starts here: its first element, S0 · h · p = 2,197,291,008, is past 2^31. */
export const S0 = L - 8192;
/** Tokens of the sequence before the last one that hold random values (its state must be dropped). */
export const LEAD = 256;

/** A view of rows [t0, t0 + count) of a (1, L, ...) host tensor, as a tensor of its own (no copy). */
export function rows(t: Tensor, t0: number, count: number, inner: number[]): Tensor {
  const width = inner.reduce((a, b) => a * b, 1);
  const { buffer, byteOffset } = t.data;
  const at = (bytes: number): number => byteOffset + t0 * width * bytes;
  switch (t.type) {
    case 'float32':
      return new Tensor(t.type, new Float32Array(buffer, at(4), count * width), [1, count, ...inner]);
    case 'int32':
      return new Tensor(t.type, new Int32Array(buffer, at(4), count * width), [1, count, ...inner]);
    default:
      return new Tensor(t.type, new Uint16Array(buffer, at(2), count * width), [1, count, ...inner]);
  }
}

export interface LargePack {
  /** the whole pack (host tensors) */
  inputs: SsdInputs;
  /** [S0 − LEAD, L) as a pack of two sequences, views of the same host memory */
  alone: SsdInputs;
}

/** The pack with dstate n (one group); x bfloat16, B and C of type bc, the rest float32. */
export function largePack(n: number, bc: FloatType = 'float32', seed = 2026): LargePack {
  const rng = new Random(seed);
  const t0 = S0 - LEAD, len = L - t0;
  const x = new Tensor('bfloat16', new Uint16Array(L * HP), [1, L, H, P]);
  const tail = Tensor.fromFloat32('bfloat16', rng.normals(len * HP), [len, HP]);
  (x.data as Uint16Array).set(tail.data as Uint16Array, t0 * HP);
  const dt = new Float32Array(L * H);
  dt.set(rng.normals(len * H, 1, -4), t0 * H);
  const B = new Float32Array(L * n);
  B.set(rng.normals(len * n), t0 * n);
  const C = new Float32Array(L * n);
  C.set(rng.normals(len * n), t0 * n);
  const seq = new Int32Array(L);
  seq.fill(1, t0, S0);
  seq.fill(2, S0);
  const inputs: SsdInputs = {
    x,
    dt: new Tensor('float32', dt, [1, L, H]),
    A: new Tensor('float32', Float32Array.from({ length: H }, (_, i) => -(1 + (i % 8)) / 4), [H]),
    B: Tensor.fromFloat32(bc, B, [1, L, 1, n]),
    C: Tensor.fromFloat32(bc, C, [1, L, 1, n]),
    D: new Tensor('float32', Float32Array.from({ length: H }, (_, i) => 0.5 + i / 16), [H]),
    dtBias: new Tensor('float32', rng.normals(H, 0.1), [H]),
    seqIdx: new Tensor('int32', seq, [1, L]),
  };
  const aloneSeq = new Int32Array(len);
  aloneSeq.fill(1, LEAD);
  const alone: SsdInputs = {
    ...inputs,
    x: rows(x, t0, len, [H, P]),
    dt: rows(inputs.dt, t0, len, [H]),
    B: rows(inputs.B, t0, len, [1, n]),
    C: rows(inputs.C, t0, len, [1, n]),
    seqIdx: new Tensor('int32', aloneSeq, [1, len]),
  };
  return { inputs, alone };
}
