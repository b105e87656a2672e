/**
 * The one typed boundary with the native addon: what it exports and what it takes.
 * Nothing else in lib/ touches the addon's untyped object.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SsdError } from './errors';

/** dtype codes shared with include/ssd_kernels.h (SsdDtype). */
export enum NativeDtype {
  Float32 = 0,
  Bfloat16 = 1,
  Float16 = 2,
}

/** A host array, or a device address (BigInt) on CUDA calls. */
export type NativeBuffer = ArrayBufferView | bigint;

/** Everything one forward call needs, validated and normalised in TypeScript. */
export interface NativeForwardArgs {
  /** [batch, seqlen, nheads, headdim, ngroups, dstate] */
  dims: number[];
  chunkSize: number;
  x: NativeBuffer;
  xType: NativeDtype;
  dt: NativeBuffer;
  dtType: NativeDtype;
  A: Float32Array | bigint;
  B: NativeBuffer;
  BType: NativeDtype;
  C: NativeBuffer;
  CType: NativeDtype;
  D: Float32Array | bigint | null;
  dPerChannel: boolean;
  z: NativeBuffer | null;
  zType: NativeDtype;
  dtBias: Float32Array | bigint | null;
  initialStates: Float32Array | bigint | null;
  seqIdx: Int32Array | bigint | null;
  dtSoftplus: boolean;
  dtMin: number;
  dtMax: number;
  y: NativeBuffer;
  yType: NativeDtype;
  finalStates: Float32Array | bigint | null;
  /** Variable-length sequences (batch 1): (numSeqs + 1) offsets, and each sequence's final state. */
  cuSeqlens?: Int32Array | bigint | null;
  numSeqs?: number;
  varlenStates?: Float32Array | bigint | null;
  /** CPU threads; 0 for the default */
  threads: number;
}

/** Everything one decode step needs (SsdStepParams), validated and normalised in TypeScript. */
export interface NativeStepArgs {
  /** [batch, nheads, headdim, ngroups, dstate] */
  dims: number[];
  /** rows of the state cache (batch without stateIndices) */
  stateRows: number;
  /** (stateRows, nheads, headdim, dstate), float32 or bfloat16; written in place */
  state: Float32Array | Uint16Array | bigint;
  stateType: NativeDtype;
  stateIndices: Int32Array | bigint | null;
  x: NativeBuffer;
  xType: NativeDtype;
  dt: NativeBuffer;
  dtType: NativeDtype;
  A: Float32Array | bigint;
  B: NativeBuffer;
  BType: NativeDtype;
  C: NativeBuffer;
  CType: NativeDtype;
  D: Float32Array | bigint | null;
  dPerChannel: boolean;
  z: NativeBuffer | null;
  zType: NativeDtype;
  dtBias: Float32Array | bigint | null;
  dtSoftplus: boolean;
  dtMin: number;
  dtMax: number;
  y: NativeBuffer;
  yType: NativeDtype;
  /** CPU threads; 0 for the default */
  threads: number;
}

export interface NativeBackends {
  cpu: { isa: string; bestIsa: string; threads: number };
  cuda: { compiled: boolean; available: boolean; reason: string; devices: number };
}

export interface NativeAddon {
  abiVersion: number;
  forwardSync(args: NativeForwardArgs): void;
  forward(args: NativeForwardArgs): Promise<void>;
  backends(): NativeBackends;
  fmaPeakGflops(threads: number, seconds: number): number;
  /** One decode step on the CPU, in place on args.state. */
  stepSync(args: NativeStepArgs): void;
  step(args: NativeStepArgs): Promise<void>;
  /** GB/s (read plus written) of an in-place sweep over `bytes` with `threads` threads, for about `seconds`. */
  rmwBandwidth(threads: number, bytes: number, seconds: number): number;
  /** Device memory from the package's caching allocator. */
  cudaAlloc(device: number, bytes: number): bigint;
  cudaRelease(device: number, ptr: bigint): void;
  /** Queues a copy between `host` and device memory; settles when it is done. */
  cudaCopy(device: number, ptr: bigint, host: ArrayBufferView, toDevice: boolean): Promise<void>;
  /** The forward with device pointers (BigInt) in place of the arrays. */
  cudaForward(args: NativeForwardArgs, device: number): Promise<void>;
  /** Times `iters` forwards (after `warmup`) with CUDA events; the device memory the kernels need beyond inputs and outputs. */
  cudaTimeForward(args: NativeForwardArgs, device: number, warmup: number, iters: number): Promise<{ ms: number[]; workspaceBytes: number }>;
  cudaMemoryStats(device: number): { inUse: number; cached: number; peakInUse: number };
  cudaResetPeak(device: number): void;
  cudaEmptyCache(device: number): void;
}

/** The package's root: the nearest folder above this file with our package.json (lib/ or dist/lib/). */
export function packageRoot(): string {
  let dir = __dirname;
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest)) {
      try {
        if ((JSON.parse(fs.readFileSync(manifest, 'utf8')) as { name?: string }).name === 'ssd-kernels') return dir;
      } catch {
        // not ours; keep looking
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) return path.resolve(__dirname, '..');
    dir = parent;
  }
}

/** Places the addon may be, most specific first. */
function candidates(): string[] {
  const root = packageRoot();
  const list: string[] = [];
  if (process.env.SSD_KERNELS_ADDON) list.push(path.resolve(process.env.SSD_KERNELS_ADDON));
  list.push(path.join(root, 'build-cmake', 'Release', 'ssd_kernels.node'));
  list.push(path.join(root, 'build', 'Release', 'ssd_kernels.node'));
  const prebuildDir = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  if (fs.existsSync(prebuildDir)) {
    for (const file of fs.readdirSync(prebuildDir).sort()) {
      if (file.endsWith('.node')) list.push(path.join(prebuildDir, file));
    }
  }
  return list;
}

let cached: NativeAddon | undefined;

/** Loads the addon once; throws an SsdError (ERR_SSD_NATIVE) that lists every place tried. */
export function native(): NativeAddon {
  if (cached) return cached;
  const tried: string[] = [];
  for (const file of candidates()) {
    if (!fs.existsSync(file)) {
      tried.push(`  ${file}: not found`);
      continue;
    }
    try {
      // A .node file can only be loaded through require().
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      cached = require(file) as NativeAddon;
      return cached;
    } catch (err) {
      tried.push(`  ${file}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  throw new SsdError(
    'ERR_SSD_NATIVE',
    `Could not load the ssd-kernels native addon. Tried:\n${tried.join('\n')}\n` +
      'Build it with `npm run build:native` (cmake-js, CPU and CUDA) or `npm run build:gyp` (node-gyp, CPU only), ' +
      'or set SSD_KERNELS_ADDON to the path of a built ssd_kernels.node.',
  );
}
