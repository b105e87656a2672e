/**
 * The one typed boundary with the native addon: what it exports and what it takes.
 * Nothing else in lib/ touches the addon's untyped object.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SsdError } from './errors';
import type { NativeOptions, OptionName, StepOptionName } from './validate';

/** A dtype's code of include/ssd_kernels.h (SsdDtype): its `code` in the dtype table of lib/rules.ts. */
export type NativeDtype = number;

/** SSD_KERNELS_ABI_VERSION of include/ssd_kernels.h: an addon built from other sources is refused. */
export const EXPECTED_ABI_VERSION = 2;

/** A host array, or a device address (BigInt) on CUDA calls. */
export type NativeBuffer = ArrayBufferView | bigint;

/**
 * An output of a host call: an array to write into (options.out), or `true` for a result in a new
 * ArrayBuffer, which the addon makes and sets in the argument object in its place (to be wrapped in
 * a TypedArray of the caller's realm, see arrayOver): nothing but the caller of the addon reaches it
 * before the call settles, so an asynchronous call writes it in place (csrc/binding/staging.h).
 */
export type NativeOutput = NativeBuffer | true;

/**
 * The arguments the forward and the decode step share: the inputs of the SSD's projection (x, dt,
 * A, B, C, D, z, dtBias), the options of ssdStep() that the addon takes (lib/validate.ts, OPTIONS:
 * dtSoftplus, dtMin, dtMax, threads, ...) and the output y.
 */
export interface NativeCommonArgs extends NativeOptions<StepOptionName> {
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
  y: NativeOutput;
  yType: NativeDtype;
  /**
   * The public name of each array field ({ x: 'inputs.x', y: 'options.out.y', ... }), for the
   * messages of asynchronous calls (ERR_SSD_DETACHED names the array that lost its memory).
   */
  names?: Record<string, string>;
}

/** Everything one forward call needs, validated and normalised in TypeScript; every option of ssd() the addon takes. */
export interface NativeForwardArgs extends NativeCommonArgs, NativeOptions<OptionName> {
  /** [batch, seqlen, nheads, headdim, ngroups, dstate] */
  dims: number[];
  initialStates: Float32Array | bigint | null;
  seqIdx: Int32Array | bigint | null;
  finalStates: Float32Array | bigint | true | null;
  /** Variable-length sequences (batch 1): (numSeqs + 1) offsets, and each sequence's final state. */
  cuSeqlens?: Int32Array | bigint | null;
  numSeqs?: number;
  varlenStates?: Float32Array | bigint | true | null;
  /** Only with z: the output before the gate (y = yUngated · silu(z)), written by the forward and read by the backward. */
  yUngated?: NativeOutput | null;
  yUngatedType?: NativeDtype;
}

/** Everything one decode step needs (SsdStepParams), validated and normalised in TypeScript. */
export interface NativeStepArgs extends NativeCommonArgs {
  /** [batch, nheads, headdim, ngroups, dstate] */
  dims: number[];
  /** rows of the state cache (batch without stateIndices) */
  stateRows: number;
  /** (stateRows, nheads, headdim, dstate), float32 or bfloat16; written in place */
  state: Float32Array | Uint16Array | bigint;
  stateType: NativeDtype;
  stateIndices: Int32Array | bigint | null;
}

/**
 * Everything one backward call needs: the forward's arguments without its outputs, the incoming
 * gradients, and the gradient outputs, each of its input's dtype (dx of x's, ddt of dt's, dB of B's,
 * dC of C's, dz of z's) or float32 (dA, dD, dDtBias, dInitialStates). Host buffers; the CUDA
 * variant below takes device pointers.
 */
export interface NativeBackwardArgs extends Omit<NativeForwardArgs, 'y' | 'yType' | 'finalStates'> {
  dy: ArrayBufferView;
  dyType: NativeDtype;
  dFinalStates: Float32Array | null;
  /** outputs: arrays to write into, or `true` for new arrays (NativeOutput) */
  dx: ArrayBufferView | true;
  ddt: ArrayBufferView | true;
  dA: Float32Array | true;
  dB: ArrayBufferView | true;
  dC: ArrayBufferView | true;
  /** only with D, of D's dims */
  dD: Float32Array | true | null;
  /** only with z */
  dz: ArrayBufferView | true | null;
  dDtBias: Float32Array | true | null;
  dInitialStates: Float32Array | true | null;
}

/** The backward's arguments for a CUDA call: every buffer a BigInt device pointer (null when absent). */
export type NativeDeviceBackwardArgs = {
  [K in keyof NativeBackwardArgs]: NativeBackwardArgs[K] extends ArrayBufferView | true | null
    ? null extends NativeBackwardArgs[K]
      ? bigint | null
      : bigint
    : NativeBackwardArgs[K];
};

/**
 * What cudaSupports() is asked about a call: its dims and options (those of the call's native
 * arguments; an option left out is read as its default) and dtypes; zType null without z, stateType
 * only for the step.
 */
export interface CudaQuery extends Partial<NativeOptions<OptionName>> {
  dims: number[];
  xType: NativeDtype;
  BType: NativeDtype;
  CType: NativeDtype;
  dtType: NativeDtype;
  zType?: NativeDtype | null;
  stateType?: NativeDtype;
}

export interface NativeBackends {
  cpu: { isa: string; bestIsa: string; threads: number };
  cuda: { compiled: boolean; available: boolean; reason: string; devices: number };
}

export interface NativeAddon {
  abiVersion: number;
  forwardSync(args: NativeForwardArgs): void;
  forward(args: NativeForwardArgs): Promise<void>;
  /** The CPU backward on the calling thread. */
  backwardSync(args: NativeBackwardArgs): void;
  /** The CPU backward on a worker thread. */
  backward(args: NativeBackwardArgs): Promise<void>;
  backends(): NativeBackends;
  /**
   * Whether the CUDA path implements a call of these sizes and dtypes (ok), and if not, why
   * (reason; '' when ok). Asked only where backends().cuda.available.
   */
  cudaSupports(op: 'forward' | 'backward' | 'step', query: CudaQuery): { ok: boolean; reason: string };
  fmaPeakGflops(threads: number, seconds: number): number;
  /** One decode step on the CPU, in place on args.state. */
  stepSync(args: NativeStepArgs): void;
  step(args: NativeStepArgs): Promise<void>;
  /** GB/s (read plus written) of an in-place sweep over `bytes` with `threads` threads, for about `seconds`. */
  rmwBandwidth(threads: number, bytes: number, seconds: number): number;
  /** Device memory from the package's caching allocator. */
  cudaAlloc(device: number, bytes: number): bigint;
  cudaRelease(device: number, ptr: bigint): void;
  /**
   * Queues a copy between `host` and device memory; settles when it is done. The host side is staged
   * (csrc/binding/staging.h): a download into an array that was detached meanwhile rejects with
   * ERR_SSD_DETACHED naming `name`.
   */
  cudaCopy(device: number, ptr: bigint, host: ArrayBufferView, toDevice: boolean, name?: string): Promise<void>;
  /** A copy of `bytes` of device memory at `ptr` in a new ArrayBuffer, made by the addon (no staging). */
  cudaDownload(device: number, ptr: bigint, bytes: number): Promise<ArrayBuffer>;
  /** The forward with device pointers (BigInt) in place of the arrays. */
  cudaForward(args: NativeForwardArgs, device: number): Promise<void>;
  cudaStep(args: NativeStepArgs, device: number): Promise<void>;
  cudaBackward(args: NativeDeviceBackwardArgs, device: number): Promise<void>;
  cudaTimeBackward(args: NativeDeviceBackwardArgs, device: number, warmup: number, iters: number): Promise<{ ms: number[]; workspaceBytes: number }>;
  cudaTimeStep(args: NativeStepArgs, device: number, warmup: number, iters: number): Promise<{ ms: number[] }>;
  /** Times `iters` forwards (after `warmup`) with CUDA events; the device memory the kernels need beyond inputs and outputs. */
  cudaTimeForward(args: NativeForwardArgs, device: number, warmup: number, iters: number): Promise<{ ms: number[]; workspaceBytes: number }>;
  cudaMemoryStats(device: number): { inUse: number; cached: number; peakInUse: number };
  cudaResetPeak(device: number): void;
  cudaEmptyCache(device: number): void;
  /**
   * Tests only: makes the next CUDA operation fail ('trap': a kernel that executes __trap(), a sticky
   * error that loses the CUDA context; 'launch': an invalid launch, cudaErrorInvalidConfiguration;
   * 'alloc': a cudaMalloc beyond the device, cudaErrorMemoryAllocation). Throws unless the process
   * started with SSD_KERNELS_FAULT_INJECT=1 (csrc/device/device.h, "Fault injection").
   */
  cudaInjectFault(kind: 'trap' | 'launch' | 'alloc'): void;
  /**
   * Checks only: forces the CUDA kernels of one direction ('sm80', 'sm90'), as SSD_KERNELS_FORWARD_PATH /
   * SSD_KERNELS_BACKWARD_PATH would at start-up, or leaves them to that variable again (null).
   */
  cudaSetPath(direction: 'forward' | 'backward', path: 'sm80' | 'sm90' | null): void;
  /** A napi External holding the C function table (include/ssd_kernels.h), type-tagged. */
  getNativeApi(): object;
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

/** One place the addon may be, and what kind of build it is (for messages). */
export interface AddonCandidate {
  file: string;
  kind: string;
}

/**
 * Places the addon may be, in the order they are tried:
 *   SSD_KERNELS_ADDON  an explicit file: the only candidate when set;
 *   build-cmake/Release  a local cmake-js build (`npm run build:native`, CPU and CUDA): only made on purpose;
 *   prebuilds/<platform>-<arch>/  the prebuilt binary shipped in the package (CPU and CUDA);
 *   build/Release  the node-gyp build (CPU only) that installing makes when no prebuilt binary loads.
 */
export function addonCandidates(root: string = packageRoot(), env: NodeJS.ProcessEnv = process.env): AddonCandidate[] {
  if (env.SSD_KERNELS_ADDON) return [{ file: path.resolve(env.SSD_KERNELS_ADDON), kind: 'SSD_KERNELS_ADDON' }];
  const list: AddonCandidate[] = [{ file: path.join(root, 'build-cmake', 'Release', 'ssd_kernels.node'), kind: 'local cmake-js build' }];
  const tuple = `${process.platform}-${process.arch}`;
  const prebuildDir = path.join(root, 'prebuilds', tuple);
  const prebuilt = fs.existsSync(prebuildDir) ? fs.readdirSync(prebuildDir).filter((f) => f.endsWith('.node')).sort() : [];
  if (prebuilt.length === 0) {
    list.push({ file: path.join(prebuildDir, 'ssd-kernels.node'), kind: `prebuilt binary for ${tuple}` });
  }
  for (const file of prebuilt) list.push({ file: path.join(prebuildDir, file), kind: `prebuilt binary for ${tuple}` });
  list.push({ file: path.join(root, 'build', 'Release', 'ssd_kernels.node'), kind: 'local node-gyp build (CPU only)' });
  return list;
}

/** What happened at each place tried: loaded, or why not. */
export interface LoadAttempt extends AddonCandidate {
  error?: string;
}

/** The message of a failed load: every place tried, why each failed, and what to do. */
export function loadFailureMessage(attempts: LoadAttempt[], root: string): string {
  const lines = attempts.map((a) => `  ${a.file} (${a.kind}): ${a.error ?? 'loaded'}`);
  const prebuilds = path.join(root, 'prebuilds');
  const shipped = fs.existsSync(prebuilds) ? fs.readdirSync(prebuilds).filter((d) => !d.startsWith('.')) : [];
  const tuple = `${process.platform}-${process.arch}`;
  const advice: string[] = [];
  if (attempts.length === 1 && attempts[0].kind === 'SSD_KERNELS_ADDON') {
    advice.push('SSD_KERNELS_ADDON is set, so no other place was tried: point it at a built ssd_kernels.node, or unset it.');
  } else {
    if (!shipped.includes(tuple)) {
      advice.push(`This package has no prebuilt binary for ${tuple} (${shipped.length > 0 ? `it has: ${shipped.join(', ')}` : 'none shipped'}).`);
    } else if (attempts.some((a) => a.kind.startsWith('prebuilt') && a.error && a.error !== 'not found')) {
      advice.push('The prebuilt binary needs x86-64 Linux with glibc 2.28 or newer (see README, Install).');
    }
    advice.push(
      'Build from source: `npm rebuild ssd-kernels --build-from-source` (node-gyp, CPU only; needs a C++17 compiler, make and python3),',
      'or, in the package folder, `npx cmake-js compile --out build-cmake` (CPU and CUDA; needs cmake, and nvcc for CUDA),',
      'or set SSD_KERNELS_ADDON to the path of a built ssd_kernels.node.',
    );
  }
  return `Could not load the ssd-kernels native addon. Tried:\n${lines.join('\n')}\n${advice.join('\n')}`;
}

/**
 * Loads the addon from the first candidate under `root` that loads; throws an SsdError
 * (ERR_SSD_NATIVE) that lists every place tried, why each failed, and what to do.
 */
export function loadAddon(root: string, env: NodeJS.ProcessEnv = process.env): { addon: NativeAddon; file: string } {
  const attempts: LoadAttempt[] = [];
  for (const candidate of addonCandidates(root, env)) {
    if (!fs.existsSync(candidate.file)) {
      attempts.push({ ...candidate, error: 'not found' });
      continue;
    }
    try {
      // A .node file can only be loaded through require().
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const addon = require(candidate.file) as NativeAddon;
      if (addon.abiVersion !== EXPECTED_ABI_VERSION) {
        attempts.push({ ...candidate, error: `ABI version ${String(addon.abiVersion)}, this package needs ${EXPECTED_ABI_VERSION} (a stale build: rebuild it)` });
        continue;
      }
      return { addon, file: candidate.file };
    } catch (err) {
      attempts.push({ ...candidate, error: (err as Error).message.split('\n')[0] });
    }
  }
  throw new SsdError('ERR_SSD_NATIVE', loadFailureMessage(attempts, root));
}

let loaded: { addon: NativeAddon; file: string } | undefined;

/** The addon, loaded once (see loadAddon). */
export function native(): NativeAddon {
  loaded ??= loadAddon(packageRoot());
  return loaded.addon;
}

/** The file the addon was loaded from (loads it if needed). */
export function nativePath(): string {
  native();
  return (loaded as { file: string }).file;
}
