/**
 * The C ABI with device memory, on a GPU: the example consumer (test/abi-consumer, built beforehand
 * by `node test/abi-consumer/build.js`; carry its build/Release/abi_consumer.node to the GPU machine)
 * calls forward through the table on device pointers and a stream it names, then waits with
 * cuCtxSynchronize. Results are checked against the float64 reference; host memory passed as device
 * memory is refused by name; back-to-back calls reuse the stream-ordered scratch and give the same bits.
 *
 * Skipped, saying why, without a usable GPU or without the built consumer.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tensor, backends, type SsdOptions } from '../../lib/index';
import { packageRoot } from '../../lib/native';
import { getNativeApi } from '../../lib/native-api';
import { CUDA_FORWARD_BOUND, ROUNDING_ALLOWANCE } from '../../lib/tolerances';
import { Random, makeExample, ssdReference, withOptions, relativeL2, l2, allFinite, roundingError, type Example, type ExampleConfig } from '../reference';
import { sameBits } from '../helpers';

interface Consumer {
  forward(api: unknown, spec: Record<string, unknown>): { status: number; message: string };
  cudaSynchronize(): number;
}

const cuda = backends().cuda;
const consumerFile = path.join(packageRoot(), 'test', 'abi-consumer', 'build', 'Release', 'abi_consumer.node');
const haveConsumer = fs.existsSync(consumerFile);
const run = cuda.available && haveConsumer;
const describeGpu = run ? describe : describe.skip;

test('the C ABI device tests run where a GPU and the built consumer are present', () => {
  if (!cuda.available) console.log(`C ABI device tests skipped: CUDA is unavailable here (${cuda.reason})`);
  else if (!haveConsumer) console.log(`C ABI device tests skipped: ${consumerFile} is missing (build it with node test/abi-consumer/build.js)`);
  expect(typeof run).toBe('boolean');
});

const code = { float32: 0, bfloat16: 1, float16: 2 } as const;
const CUDA_STREAM_PER_THREAD = 2n; // cudaStreamPerThread

describeGpu('forward through the table on device pointers', () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const consumer = (run ? require(consumerFile) : undefined) as Consumer;
  const rng = new Random(99);

  /** Uploads an example, runs it `repeats` times through the table on `stream`, waits, and returns y and the states on the host. */
  async function viaTable(config: ExampleConfig, { inputs, ref }: Example, options: SsdOptions, stream: bigint | null, repeats = 1) {
    const { batch: b, seqlen: L, nheads: h, headdim: p, ngroups: g, dstate: n } = config;
    const up = (t: Tensor | undefined) => (t ? t.toDevice() : undefined);
    const f32 = (t: Tensor | undefined) => (t ? new Tensor('float32', t.toFloat32(), t.dims).toDevice() : undefined);
    const dev = { x: up(inputs.x)!, dt: up(inputs.dt)!, B: up(inputs.B)!, C: up(inputs.C)!, z: up(inputs.z), A: f32(inputs.A)!, D: f32(inputs.D), dtBias: f32(inputs.dtBias), initialStates: f32(inputs.initialStates), seqIdx: up(inputs.seqIdx) };
    const type = inputs.x.type as keyof typeof code;
    const y = Tensor.fromFloat32(type, new Float32Array(b * L * h * p), [b, L, h, p]).toDevice();
    const finalStates = new Tensor('float32', new Float32Array(b * h * p * n), [b, h, p, n]).toDevice();
    const all = [...Object.values(dev), y, finalStates].filter((t): t is Tensor => t !== undefined);
    await Promise.all(all.map((t) => t.ready));
    const ptr = (t: Tensor | undefined) => (t ? t.devicePointer : null);
    const spec = {
      dims: [b, L, h, p, g, n], chunkSize: options.chunkSize ?? 64, memory: 1, stream,
      x: ptr(dev.x), xType: code[type], dt: ptr(dev.dt), dtType: code[inputs.dt.type as keyof typeof code],
      A: ptr(dev.A), B: ptr(dev.B), BType: code[inputs.B.type as keyof typeof code], C: ptr(dev.C), CType: code[inputs.C.type as keyof typeof code],
      D: ptr(dev.D), dPerChannel: inputs.D?.dims.length === 2 ? 1 : 0, z: ptr(dev.z), zType: inputs.z ? code[inputs.z.type as keyof typeof code] : 0,
      dtBias: ptr(dev.dtBias), initialStates: ptr(dev.initialStates), seqIdx: ptr(dev.seqIdx),
      dtSoftplus: options.dtSoftplus ?? false, dtMin: options.dtLimit?.[0] ?? 0, dtMax: options.dtLimit?.[1] ?? Infinity,
      y: ptr(y), yType: code[type], finalStates: ptr(finalStates),
    };
    for (let i = 0; i < repeats; i++) expect(consumer.forward(getNativeApi(), spec)).toEqual({ status: 0, message: '' });
    expect(consumer.cudaSynchronize()).toBe(0);
    const out = { y: await y.toHost(), finalStates: await finalStates.toHost(), expected: ssdReference(withOptions(ref, options)), type };
    for (const t of all) t.dispose();
    return out;
  }

  test.each([
    ['bf16, every option, legacy default stream', 'bfloat16', null],
    ['fp32, every option, per-thread default stream', 'float32', CUDA_STREAM_PER_THREAD],
  ] as const)('%s: matches the float64 reference', async (_name, dtype, stream) => {
    const config = { batch: 2, seqlen: 300, nheads: 4, headdim: 64, ngroups: 2, dstate: 64 };
    const options: SsdOptions = { chunkSize: 64, dtSoftplus: true, dtLimit: [0.001, 0.5], returnFinalStates: true };
    const r = await viaTable(config, makeExample(rng, config, { dtype, D: 'channel', z: true, dtBias: true, initialStates: true, seqStarts: [70, 128] }), options, stream);
    const y = r.y.toFloat32();
    expect(allFinite(y)).toBe(true);
    expect(l2(y)).toBeGreaterThan(0);
    expect(relativeL2(y, r.expected.y)).toBeLessThanOrEqual(CUDA_FORWARD_BOUND[r.type] + ROUNDING_ALLOWANCE * roundingError(r.type, r.expected.y));
    expect(relativeL2(r.finalStates.toFloat32(), r.expected.finalStates)).toBeLessThanOrEqual(CUDA_FORWARD_BOUND[r.type]);
  });

  test('20 calls queued back to back on one stream (scratch reused in stream order) give the bits of one call', async () => {
    const config = { batch: 1, seqlen: 512, nheads: 8, headdim: 64, ngroups: 1, dstate: 128 };
    const options: SsdOptions = { chunkSize: 128, dtSoftplus: true, returnFinalStates: true };
    const example = makeExample(rng, config, { dtype: 'bfloat16' });
    const once = await viaTable(config, example, options, null, 1);
    const many = await viaTable(config, example, options, null, 20);
    expect(l2(once.y.toFloat32())).toBeGreaterThan(0);
    expect(relativeL2(once.y.toFloat32(), once.expected.y)).toBeLessThanOrEqual(CUDA_FORWARD_BOUND.bfloat16 + ROUNDING_ALLOWANCE * roundingError('bfloat16', once.expected.y));
    expect(sameBits(many.y, once.y)).toBe(true);
    expect(sameBits(many.finalStates, once.finalStates)).toBe(true);
  });

  test('host memory passed as device memory is refused, naming the field', () => {
    const x = new Float32Array(64);
    const r = consumer.forward(getNativeApi(), {
      dims: [1, 4, 2, 8, 1, 8], chunkSize: 16, memory: 1,
      x, dt: new Float32Array(8), A: new Float32Array(2), B: new Float32Array(32), C: new Float32Array(32), y: new Float32Array(64),
    });
    expect(r.status).toBe(1);
    expect(r.message).toMatch(/^x: expected device memory of the current CUDA device \(\d+\) but received host memory$/);
  });
});
