/**
 * The C ABI fuzz with device memory, on a GPU (blocks and malformations in test/abi-fuzz-blocks.ts;
 * the host-memory fuzz is test/abi-fuzz.test.ts). A block of random sizes, dtypes, options and
 * strided views is built over host buffers, every buffer is copied to the device and the block is
 * pointed at the copies (SSD_MEMORY_CUDA, the legacy default stream, cuCtxSynchronize after):
 *
 *   - valid blocks run and match the same block run on the host (the CPU path), within
 *     CUDA_VS_CPU_FACTOR times the GPU suites' bounds; the gaps of strided outputs stay as they were;
 *   - every malformation of the catalogue (those the entries check on the host, without reading
 *     device memory) and every pointer that is not device memory of the current device (a host
 *     buffer, an address nothing is mapped at) is refused with SSD_ERR_INVALID_ARGUMENT and a message,
 *     nothing is written, nothing crashes.
 *
 * Needs the example consumer built (node test/abi-consumer/build.js, as test/cuda/abi.cuda.test.ts).
 * Without a usable GPU or the consumer every test here is skipped, and the suite says why.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { Tensor, backends, type FloatType, type TensorType } from '../../lib/index';
import { packageRoot } from '../../lib/native';
import { getNativeApi } from '../../lib/native-api';
import { CUDA_BACKWARD_BF16_BOUND, CUDA_BACKWARD_FP32_BOUND, CUDA_FORWARD_BOUND, CUDA_STEP_FP32_BOUND, CUDA_VS_CPU_FACTOR, CUDA_ZERO_GRADIENT_L2, ROUNDING_ALLOWANCE } from '../../lib/tolerances';
import {
  SSD_ERR_INVALID_ARGUMENT,
  SSD_OK,
  abiCase,
  buildScanBlock,
  buildStepBlock,
  gapsIntact,
  gather,
  mutationsOf,
  sameElements,
  type AbiCase,
  type Built,
  type Elements,
  type Entry,
  type Layouts,
  type Mutation,
  type RawConsumer,
} from '../abi-fuzz-blocks';
import { fuzzTimeout, runProperty } from '../fuzz-cases';
import { allFinite, distanceL2, l2, relativeL2, roundingError } from '../reference';
import { ssdReferenceBackward, type RefAbsSums } from '../../lib/reference-backward';

const FILE = 'dist/test/cuda/abi-fuzz.cuda.test.js -c jest.gpu.config.js';
const cuda = backends().cuda;
const consumerFile = path.join(packageRoot(), 'test', 'abi-consumer', 'build', 'Release', 'abi_consumer.node');
const haveConsumer = fs.existsSync(consumerFile);
const run = cuda.available && haveConsumer;
const describeGpu = run ? describe : describe.skip;

test('the C ABI device fuzz runs where a GPU and the built consumer are present', () => {
  if (!cuda.available) console.log(`C ABI device fuzz skipped: CUDA is unavailable here (${cuda.reason})`);
  else if (!haveConsumer) console.log(`C ABI device fuzz skipped: ${consumerFile} is missing (build it with node test/abi-consumer/build.js)`);
  expect(typeof run).toBe('boolean');
});

/** The raw elements' tensor type (16-bit bits travel as bfloat16: only their bytes matter here). */
function rawType(data: Elements): TensorType {
  return data instanceof Float32Array ? 'float32' : data instanceof Int32Array ? 'int32' : 'bfloat16';
}

/** A block pointed at device copies of its buffers, and what reads its outputs back. */
interface DeviceBlock {
  built: Built;
  tensors: Tensor[];
  /** each output's device copy, by name, with its contents before the call */
  outputs: { name: string; tensor: Tensor; before: Elements }[];
}

async function toDeviceBlock(built: Built): Promise<DeviceBlock> {
  const tensors: Tensor[] = [];
  const outputs: DeviceBlock['outputs'] = [];
  const upload = (name: string, data: Elements, owner: { set(field: string, value: bigint): unknown }): void => {
    const t = new Tensor(rawType(data) as 'float32', data as Float32Array, [data.length]).toDevice();
    tensors.push(t);
    owner.set(name, t.devicePointer);
    const out = built.outputs.find((o) => o.name === name);
    if (out) outputs.push({ name, tensor: t, before: out.before });
  };
  for (const bv of Object.values(built.views)) upload(bv.field, bv.view.data, bv.owner);
  for (const [field, data] of Object.entries(built.plain)) upload(field, data, built.plainOwner[field]);
  await Promise.all(tensors.map((t) => t.ready));
  return { built, tensors, outputs };
}

async function readOutputs(d: DeviceBlock): Promise<Record<string, Elements>> {
  const out: Record<string, Elements> = {};
  for (const o of d.outputs) out[o.name] = (await o.tensor.toHost()).data as Elements;
  return out;
}

function dispose(d: DeviceBlock): void {
  for (const t of d.tensors) t.dispose();
}

describeGpu('the C ABI on device memory', () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const consumer = (run ? require(consumerFile) : undefined) as RawConsumer;
  const layouts: Layouts = run ? consumer.layout() : ({} as Layouts);

  /** A case the CUDA entries take: the backward wants each gradient in its input's layout, and reads y_ungated (left out). */
  function forCuda(c: AbiCase, entry: Entry): AbiCase {
    if (entry !== 'backward') return c;
    const plain = (name: string) => ({ ...c.layouts[name], broadcast: -1 });
    const layouts = { ...c.layouts, x: plain('x'), dt: plain('dt'), B: plain('B'), C: plain('C'), z: plain('z') };
    Object.assign(layouts, { dy: layouts.x, dx: layouts.x, dz: layouts.z, ddt: layouts.dt, dB: layouts.B, dC: layouts.C });
    return { ...c, yUngated: false, layouts };
  }

  function build(c: AbiCase, entry: Entry): Built {
    return entry === 'step' ? buildStepBlock(consumer, layouts, c) : buildScanBlock(consumer, layouts, c, entry);
  }

  function call(built: Built, memory: number): { status: number; message: string } {
    return consumer.callRaw(getNativeApi(), built.entry, built.block.bytes, memory, null);
  }

  /** The bound of an output of `entry` against the CPU path. */
  function bound(entry: Entry, name: string, dtype: FloatType, type: TensorType, cpu: Float32Array): number | null {
    let b: number;
    if (entry === 'forward') b = CUDA_FORWARD_BOUND[dtype];
    else if (entry === 'step') b = CUDA_STEP_FP32_BOUND;
    else if (dtype === 'float32') b = CUDA_BACKWARD_FP32_BOUND;
    else if (['dA', 'dD', 'd_dt_bias'].includes(name)) return null; // 16-bit sums of terms that cancel: held to the reference in fuzz.cuda
    else b = CUDA_BACKWARD_BF16_BOUND;
    return CUDA_VS_CPU_FACTOR * (b + ROUNDING_ALLOWANCE * roundingError(type as FloatType, Float64Array.from(cpu)));
  }

  /** The L2 norm of Σ|term| of each ddt entry (the float64 reference), the scale ddt's 16-bit error is measured at. */
  function ddtTermScale(host: Built): number {
    const abs: RefAbsSums = {};
    ssdReferenceBackward(host.ref!, host.dy!.toFloat32(), host.dFinalStates?.toFloat32(), abs);
    return l2(abs.ddt!);
  }

  function values(type: TensorType, data: Elements): Float32Array {
    return new Tensor(type as 'float32', data as Float32Array, [data.length]).toFloat32();
  }

  test.each(['forward', 'backward', 'step'] as const)(
    '%s: valid strided blocks match the same block on the host',
    async (entry) => {
      await runProperty(
        `abi cuda valid ${entry}`,
        FILE,
        abiCase,
        async (raw) => {
          const c = forCuda(raw, entry);
          const host = build(c, entry);
          const r = call(host, 0);
          if (r.status !== SSD_OK) throw new Error(`the host block failed: ${r.message}`);
          const d = await toDeviceBlock(build(c, entry));
          try {
            const g = call(d.built, 1);
            fc.pre(g.status !== 3); // SSD_ERR_UNSUPPORTED: a size or layout the CUDA kernels do not take
            if (g.status !== SSD_OK) throw new Error(`status ${g.status}: ${g.message}`);
            if (consumer.cudaSynchronize() !== 0) throw new Error('cuCtxSynchronize failed');
            const got = await readOutputs(d);
            for (const o of host.outputs) {
              const bv = host.views[o.name];
              const type: TensorType = bv ? bv.type : o.name === 'state' && c.stateType === 'bfloat16' ? 'bfloat16' : 'float32';
              if (bv && !gapsIntact({ ...bv, view: { ...bv.view, data: got[o.name] } }, o.before)) throw new Error(`${o.name}: a gap of the strided output was written`);
              const cpu = values(type, bv ? gather(bv.view) : o.data);
              const gpu = values(type, bv ? gather({ ...bv.view, data: got[o.name] }) : got[o.name]);
              if (!allFinite(gpu)) throw new Error(`${o.name}: not finite`);
              const b = bound(entry, o.name, c.dtype, type, cpu);
              if (b === null) continue;
              if (l2(cpu) === 0) {
                if (!(l2(gpu) <= CUDA_ZERO_GRADIENT_L2)) throw new Error(`${o.name}: the CPU result is zero, the GPU's L2 norm ${l2(gpu)}`);
                continue;
              }
              const scale = o.name === 'ddt' && c.dtype !== 'float32' ? ddtTermScale(host) : undefined;
              if (scale !== undefined) {
                // ddt per position is a sum of headdim · dstate products: where they cancel, its 16-bit
                // rounding is at the scale of Σ|term| (a 2-position case with 70× cancellation, S12-1)
                const e = distanceL2(gpu, cpu) / scale;
                if (!(e <= b)) throw new Error(`ddt: distance to the CPU path ${e.toExponential(3)} of Σ|term|'s norm, above ${b.toExponential(3)}`);
                continue;
              }
              const e = relativeL2(gpu, cpu);
              if (!(e <= b)) throw new Error(`${o.name}: relative L2 distance to the CPU path ${e.toExponential(3)} above ${b.toExponential(3)}`);
            }
          } finally {
            dispose(d);
          }
        },
        100,
      );
    },
    fuzzTimeout(300000),
  );

  /** Pointers that are not device memory of the current device, for every pointer field of a device block. */
  function pointerMutations(d: DeviceBlock): Mutation[] {
    const out: Mutation[] = [];
    const host = new Float32Array(64);
    const fields: [string, { set(f: string, v: bigint | ArrayBufferView): unknown }][] = [
      ...Object.values(d.built.views).map((bv): [string, typeof bv.owner] => [bv.field, bv.owner]),
      ...Object.keys(d.built.plain).map((f): [string, (typeof d.built.plainOwner)[string]] => [f, d.built.plainOwner[f]]),
    ];
    for (const [field, owner] of fields) {
      const message = new RegExp(`^${field}: (expected device memory of the current CUDA device \\(\\d+\\) but received|cannot tell where the pointer lives)`);
      out.push({ name: `${field} = a host buffer`, apply: () => owner.set(field, host), status: SSD_ERR_INVALID_ARGUMENT, message });
      out.push({ name: `${field} = 0x10000`, apply: () => owner.set(field, 0x10000n), status: SSD_ERR_INVALID_ARGUMENT, message });
    }
    return out;
  }

  test.each(['forward', 'backward', 'step'] as const)(
    '%s: malformed device blocks are refused, nothing is written',
    async (entry) => {
      const arbitrary = fc.tuple(abiCase, fc.nat(), fc.boolean());
      await runProperty(
        `abi cuda malformed ${entry}`,
        FILE,
        arbitrary,
        async ([c, pick, pointer]) => {
          const d = await toDeviceBlock(build(forCuda(c, entry), entry));
          try {
            const all = pointer ? pointerMutations(d) : mutationsOf(d.built, true);
            const mu = all[pick % all.length];
            mu.apply();
            const r = call(d.built, 1);
            if (r.status !== mu.status || !mu.message.test(r.message)) {
              throw new Error(`${entry} with ${mu.name}: status ${r.status} '${r.message}', expected ${mu.status} and ${mu.message}`);
            }
            if (consumer.cudaSynchronize() !== 0) throw new Error('cuCtxSynchronize failed');
            const got = await readOutputs(d);
            for (const o of d.outputs) if (!sameElements(got[o.name], o.before)) throw new Error(`${entry} with ${mu.name}: refused, but ${o.name} was written`);
          } finally {
            dispose(d);
          }
        },
        300,
      );
    },
    fuzzTimeout(300000),
  );
});
