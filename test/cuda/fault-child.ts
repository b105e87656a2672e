/**
 * The child process of test/cuda/fault.cuda.test.ts: it arms faults in the CUDA path (the addon's
 * test-only cudaInjectFault, which needs SSD_KERNELS_FAULT_INJECT=1 at start), makes calls, and
 * prints what it saw as one JSON line on stdout. A child, because a sticky error loses the CUDA
 * context of the whole process, and the parent suite still needs its GPU.
 *
 *   SSD_KERNELS_FAULT_INJECT=1 node dist/test/cuda/fault-child.js non-sticky | sticky
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SsdError, Tensor, cudaEmptyCache, cudaMemoryStats, ssd, ssdBackward, ssdStep, ssdSync, type SsdInputs, type SsdOptions } from '../../lib/index';
import { native, packageRoot } from '../../lib/native';
import { makeStepExample } from '../../lib/reference-step';
import { CPU_BOUND, ROUNDING_ALLOWANCE } from '../../lib/tolerances';
import { Random, makeExample, relativeL2, roundingError, ssdReference, withOptions } from '../reference';

/** What one attempt did: resolved, or rejected (or threw) with a code and a message, and how long it took. */
export interface Attempt {
  rejected: boolean;
  code?: string;
  message?: string;
  ssdError?: boolean;
  ms: number;
}

async function attempt(fn: () => unknown): Promise<Attempt> {
  const started = performance.now();
  try {
    await fn();
    return { rejected: false, ms: performance.now() - started };
  } catch (err) {
    const e = err as { code?: string; message?: string };
    return { rejected: true, code: e.code, message: e.message, ssdError: err instanceof SsdError, ms: performance.now() - started };
  }
}

function sameBits(a: ArrayBufferView, b: ArrayBufferView): boolean {
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

const rng = new Random(31337);
const config = { batch: 2, seqlen: 100, nheads: 4, headdim: 32, ngroups: 2, dstate: 32 };
const options: SsdOptions = { dtSoftplus: true, chunkSize: 64, returnFinalStates: true };
const example = makeExample(rng, config, { dtype: 'bfloat16', D: 'head', z: true, dtBias: true });
const dy = Tensor.fromFloat32('bfloat16', rng.normals(config.batch * config.seqlen * config.nheads * config.headdim), [2, 100, 4, 32]);

async function onDevice(inputs: SsdInputs): Promise<SsdInputs> {
  const dev = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, (v as Tensor).toDevice()])) as unknown as SsdInputs;
  await Promise.all(Object.values(dev).map((t) => (t as Tensor).ready));
  return dev;
}

/** The operations a fault can hit; each returns the bytes of its results (on the host) for comparison. */
function operations(devInputs: SsdInputs): Record<string, () => Promise<ArrayBufferView[]>> {
  return {
    'forward, host tensors': async () => {
      const r = await ssd(example.inputs, { ...options, device: 'cuda' });
      return [r.y.data, r.finalStates!.data];
    },
    'forward, device tensors': async () => {
      const r = await ssd(devInputs, options);
      const out = [(await r.y.toHost()).data, (await r.finalStates!.toHost()).data];
      r.y.dispose();
      r.finalStates!.dispose();
      return out;
    },
    'backward, host tensors': async () => {
      const g = await ssdBackward(example.inputs, { dy }, { dtSoftplus: true, chunkSize: 64, device: 'cuda' });
      return [g.dx.data, g.ddt.data, g.dA.data, g.dB.data, g.dC.data];
    },
    'step, host state': async () => {
      const s = makeStepExample(new Random(5), { batch: 3, nheads: 4, headdim: 16, ngroups: 2, dstate: 32 }, { z: true });
      const { y } = await ssdStep(s.state, s.inputs, { dtSoftplus: true, device: 'cuda' });
      return [y.data, s.state.data];
    },
  };
}

/**
 * 'launch' and 'alloc' (not sticky): each operation once clean, once with the fault armed (it must
 * reject), then again (it must give the clean run's bits); device memory in use returns to where it
 * was; a host state stepped in a failed call is left as it was.
 */
async function nonSticky(): Promise<unknown> {
  const devInputs = await onDevice(example.inputs);
  const ops = operations(devInputs);
  const rows: unknown[] = [];
  for (const kind of ['launch', 'alloc'] as const) {
    for (const [name, op] of Object.entries(ops)) {
      const clean = await op();
      const inUse = cudaMemoryStats().inUse;
      native().cudaInjectFault(kind);
      const failed = await attempt(op);
      const again = await op();
      rows.push({ kind, op: name, failed, sameBitsAfter: again.every((v, i) => sameBits(v, clean[i])), inUseBefore: inUse, inUseAfter: cudaMemoryStats().inUse });
    }
    // a step of a host state whose upload fails: the state must not be overwritten by the download of the failed call
    const s = makeStepExample(new Random(6), { batch: 2, nheads: 2, headdim: 8, ngroups: 1, dstate: 16 }, {});
    const before = (s.state.data as Float32Array).slice();
    native().cudaInjectFault(kind);
    const failed = await attempt(() => ssdStep(s.state, s.inputs, { device: 'cuda' }));
    rows.push({ kind, op: 'step, host state left as it was', failed, stateUntouched: sameBits(s.state.data, before) });
    // toDevice allocates on the calling thread: an allocation failure throws there
    if (kind === 'alloc') {
      native().cudaInjectFault('alloc');
      rows.push({ kind, op: 'toDevice', failed: await attempt(() => example.inputs.x.toDevice()) });
    }
  }
  for (const t of Object.values(devInputs)) (t as Tensor).dispose();
  return { rows };
}

/**
 * 'trap' (sticky): the call that meets it rejects naming the CUDA error and saying the context is
 * lost; every later CUDA call (forward, backward, step, 'auto' on host tensors, toDevice, toHost,
 * cudaEmptyCache, the C ABI on device memory) is refused at once with a message saying to restart;
 * the CPU path still gives its results; the process exits normally.
 */
async function sticky(): Promise<unknown> {
  const devInputs = await onDevice(example.inputs);
  const ops = operations(devInputs);
  const before = await ssd(devInputs, options);
  const keptDevice = before.y;
  const cpuBefore = ssdSync(example.inputs, { ...options, device: 'cpu' });
  native().cudaInjectFault('trap');
  const trapped = await attempt(ops['forward, device tensors']);
  const later: Record<string, Attempt> = {};
  for (const [name, op] of Object.entries(ops)) later[name] = await attempt(op);
  later["forward, device 'auto', host tensors"] = await attempt(() => ssd(example.inputs, options));
  later.toDevice = await attempt(() => example.inputs.x.toDevice());
  later.toHost = await attempt(() => keptDevice.toHost());
  later.cudaEmptyCache = await attempt(() => cudaEmptyCache());
  const disposed = await attempt(() => {
    for (const t of [...Object.values(devInputs), keptDevice, before.finalStates!]) (t as Tensor).dispose();
  });

  // the C ABI on device memory (when the example consumer is built): refused with SSD_ERR_CUDA
  let abi: { status: number; message: string } | null = null;
  const consumerFile = path.join(packageRoot(), 'test', 'abi-consumer', 'build', 'Release', 'abi_consumer.node');
  if (fs.existsSync(consumerFile)) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const consumer = require(consumerFile) as { forward(api: unknown, spec: Record<string, unknown>): { status: number; message: string } };
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { getNativeApi } = require('../../lib/native-api') as { getNativeApi(): unknown };
    const fake = 0x7f0000000000n; // never dereferenced: the lost device is refused before any pointer is looked at
    abi = consumer.forward(getNativeApi(), { dims: [1, 1, 1, 1, 1, 1], chunkSize: 16, memory: 1, x: fake, dt: fake, A: fake, B: fake, C: fake, y: fake });
  }

  const cpuAfterSync = ssdSync(example.inputs, { ...options, device: 'cpu' });
  const cpuAfterAsync = await ssd(example.inputs, { ...options, device: 'cpu' });
  const expected = ssdReference(withOptions(example.ref, options));
  return {
    trapped,
    later,
    disposed,
    abi,
    cpu: {
      sameBitsSync: sameBits(cpuAfterSync.y.data, cpuBefore.y.data),
      sameBitsAsync: sameBits(cpuAfterAsync.y.data, cpuBefore.y.data),
      error: relativeL2(cpuAfterAsync.y.toFloat32(), expected.y),
      bound: CPU_BOUND + ROUNDING_ALLOWANCE * roundingError('bfloat16', expected.y),
    },
  };
}

async function main(): Promise<void> {
  const scenario = process.argv[2];
  const result = scenario === 'sticky' ? await sticky() : scenario === 'non-sticky' ? await nonSticky() : undefined;
  if (result === undefined) throw new Error(`unknown scenario '${scenario}'`);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
