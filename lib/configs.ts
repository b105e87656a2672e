/**
 * The benchmark configurations of `ssd-kernels bench`: the CPU forward's (C1, C2), the CUDA
 * forward's and backward's (G1–G5), and the decode step's sizes and batch sizes. bench/NOTES.md and
 * the README report timings on these shapes.
 *
 * Shapes are (batch b, seqlen L, nheads h, headdim p, ngroups g, dstate n).
 */
import type { ExampleConfig } from './examples';
import type { FloatType } from './tensor';

export interface BenchConfig extends ExampleConfig {
  name: string;
  dtype: FloatType;
  /** the gate z (default true) */
  gate?: boolean;
  /** dtBias as an input (default true; false: dt already includes it) */
  dtBias?: boolean;
  /** sequences packed along seqlen (batch 1, cuSeqlens, varlen final states); their lengths sum to seqlen */
  packed?: readonly number[];
}

/** C1: b 1, L 4096, h 32, p 64, g 1, n 128, float32 (the CPU bench: chunk 256, D per head, dtSoftplus). */
const C1: BenchConfig = { name: 'C1', batch: 1, seqlen: 4096, nheads: 32, headdim: 64, ngroups: 1, dstate: 128, dtype: 'float32' };

/** C2: b 1, L 2048, h 8, p 64, g 1, n 64, float32 (the CPU bench: chunk 256, D per head, dtSoftplus). */
const C2: BenchConfig = { name: 'C2', batch: 1, seqlen: 2048, nheads: 8, headdim: 64, ngroups: 1, dstate: 64, dtype: 'float32' };

/** The CPU forward (and backward) configurations of `bench`, in order. */
export const CPU_BENCH_CONFIGS: BenchConfig[] = [C1, C2];

/** G1: b 4, L 4096, h 32, p 64, g 1, n 128, bfloat16 (x, z, B, C; dt, A, D, dtBias float32; chunk 256). */
const G1: BenchConfig = { name: 'G1', batch: 4, seqlen: 4096, nheads: 32, headdim: 64, ngroups: 1, dstate: 128, dtype: 'bfloat16' };

/** G2: b 1, L 16384, h 32, p 64, g 1, n 128, bfloat16: one long sequence. */
const G2: BenchConfig = { name: 'G2', batch: 1, seqlen: 16384, nheads: 32, headdim: 64, ngroups: 1, dstate: 128, dtype: 'bfloat16' };

/** G3: b 8, L 2048, h 80, p 64, g 1, n 128, bfloat16: many heads. */
const G3: BenchConfig = { name: 'G3', batch: 8, seqlen: 2048, nheads: 80, headdim: 64, ngroups: 1, dstate: 128, dtype: 'bfloat16' };

/** G4: b 2, L 8192, h 24, p 64, g 8, n 64, bfloat16: eight groups of B and C. */
const G4: BenchConfig = { name: 'G4', batch: 2, seqlen: 8192, nheads: 24, headdim: 64, ngroups: 8, dstate: 64, dtype: 'bfloat16' };

/**
 * G5's 48 sequence lengths (serving-style prefill, 53,000 tokens): drawn once as
 * `[random.Random(5).randint(64, 2048) for _ in range(48)]`, as the Triton peer's driver draws them.
 */
const G5_LENGTHS = [
  1339, 587, 1583, 798, 1692, 1478, 1994, 1787, 1579, 1399, 1952, 1149, 123, 1785, 1017, 1653,
  1995, 574, 1393, 170, 1909, 385, 295, 825, 1024, 1842, 568, 843, 1177, 272, 1239, 574,
  90, 1561, 507, 899, 636, 436, 1940, 1840, 1632, 861, 390, 1624, 1696, 211, 348, 1329,
] as const;

/**
 * G5: 48 packed sequences (cuSeqlens, their final states returned), h 32, p 64, g 1, n 128, bfloat16;
 * no gate and no dtBias input (dt already includes it), as in the Triton peer's G5.
 */
const G5: BenchConfig = {
  name: 'G5', batch: 1, seqlen: G5_LENGTHS.reduce((a, b) => a + b, 0), nheads: 32, headdim: 64, ngroups: 1, dstate: 128,
  dtype: 'bfloat16', gate: false, dtBias: false, packed: G5_LENGTHS,
};

/** The offsets of sequences of these lengths packed back to back (cuSeqlens): 0, then each one's end. */
export function packedOffsets(lengths: readonly number[]): Int32Array {
  const cu = new Int32Array(lengths.length + 1);
  lengths.forEach((n, i) => (cu[i + 1] = cu[i] + n));
  return cu;
}

/** The CUDA configurations of `bench --device cuda`, in order. */
export const GPU_BENCH_CONFIGS: BenchConfig[] = [G1, G2, G3, G4, G5];

/**
 * G5u: G5's 53,000 tokens as one unpacked sequence (no cuSeqlens, no final states), the twin a packed
 * call is held to (issue 17: at most 1.1× its time). Timed only when named (`--config G5,G5u`).
 */
const G5U: BenchConfig = { ...G5, name: 'G5u', packed: undefined };

/** CUDA configurations `bench --device cuda --config` takes beyond the default list. */
export const GPU_EXTRA_CONFIGS: BenchConfig[] = [G5U];

/** Every CUDA configuration `bench --device cuda --config` takes, the default list first. */
export const GPU_ALL_CONFIGS: BenchConfig[] = [...GPU_BENCH_CONFIGS, ...GPU_EXTRA_CONFIGS];

/** The decode step's sizes in `bench --step`: h 32, p 64, g 1, n 128 (float32 state and inputs). */
export const STEP_BENCH_SIZES = { nheads: 32, headdim: 64, ngroups: 1, dstate: 128 };

/** The step's default batch sizes in `bench --step` (--batch overrides them). */
export const STEP_BENCH_BATCHES = [1, 16, 64, 256];
