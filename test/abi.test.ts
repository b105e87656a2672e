/**
 * The C ABI for other native addons: an example consumer (test/abi-consumer, plain C against
 * include/ssd_kernels.h, linking nothing of ours) is built with node-gyp, receives the function
 * table as the type-tagged External of getNativeApi(), and runs the forward through it on host
 * buffers. Results must equal ssdSync() bit for bit (same CPU path) and match the float64 reference;
 * strided views must give the same bits as contiguous tensors; bad blocks fail with a status and a
 * message naming the field.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tensor, backends, ssdSync, type SsdOptions } from '../lib/index';
import { EXPECTED_ABI_VERSION, native } from '../lib/native';
import { addonPath, getNativeApi, includeDir } from '../lib/native-api';
import { Random, makeExample, ssdReference, withOptions, type ExampleConfig, type ExampleOptions } from './reference';
import { expectMatchesReference, sameBits } from './helpers';
import { FP32_CLOSED_FORM_DIGITS } from '../lib/tolerances';

const consumerDir = path.join(__dirname, 'abi-consumer');

/** What consumer.c exports. */
interface Consumer {
  info(api: unknown): { abiVersion: number; structSize: number; version: string; hasForward: boolean; headerVersion: string };
  isTable(value: unknown): boolean;
  untaggedExternal(): object;
  forward(api: unknown, spec: Record<string, unknown>): { status: number; message: string };
  stepAndBackward(api: unknown): Record<'stepStatus' | 'y' | 'state' | 'backwardStatus' | 'dx' | 'ddt' | 'dA' | 'dB' | 'dC', number>;
}

const SSD_OK = 0;
const SSD_ERR_INVALID_ARGUMENT = 1;
const SSD_ERR_UNSUPPORTED = 3;
const dtypeCode = { float32: 0, bfloat16: 1, float16: 2 } as const;

const count = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

let consumer: Consumer;

beforeAll(() => {
  const r = spawnSync(process.execPath, [path.join(consumerDir, 'build.js')], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`building test/abi-consumer failed:\n${r.stdout}${r.stderr}`);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  consumer = require(path.join(consumerDir, 'build', 'Release', 'abi_consumer.node')) as Consumer;
}, 120000);

const header = fs.readFileSync(path.join(__dirname, '..', 'include', 'ssd_kernels.h'), 'utf8');
const packageVersion = (JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }).version;

describe('the table and its handle', () => {
  test('includeDir holds the header; header, addon and table agree on versions', () => {
    expect(fs.existsSync(path.join(includeDir, 'ssd_kernels.h'))).toBe(true);
    expect(header).toContain(`#define SSD_KERNELS_ABI_VERSION ${EXPECTED_ABI_VERSION}`);
    expect(header).toContain(`#define SSD_KERNELS_VERSION "${packageVersion}"`);
    expect(native().abiVersion).toBe(EXPECTED_ABI_VERSION);
    const info = consumer.info(getNativeApi());
    expect(info).toEqual({ abiVersion: EXPECTED_ABI_VERSION, structSize: info.structSize, version: packageVersion, hasForward: true, headerVersion: packageVersion });
    // abi_version and struct_size (4 bytes each), then version, last_error and forward (8 each); later entries append.
    expect(info.structSize).toBeGreaterThanOrEqual(32);
    expect(fs.existsSync(addonPath())).toBe(true);
  });

  test('the step and backward entries: the smallest problem against its closed form', () => {
    const r = consumer.stepAndBackward(getNativeApi());
    expect(r.stepStatus).toBe(SSD_OK);
    expect(r.backwardStatus).toBe(SSD_OK);
    const [state, x, dt, A, B, C, dy] = [0.5, 2, 0.25, -1, 3, -0.5, 1.5];
    const next = Math.exp(dt * A) * state + dt * x * B;
    expect(r.state).toBeCloseTo(next, FP32_CLOSED_FORM_DIGITS);
    expect(r.y).toBeCloseTo(next * C, FP32_CLOSED_FORM_DIGITS);
    expect(r.dx).toBeCloseTo(dy * dt * B * C, FP32_CLOSED_FORM_DIGITS);
    expect(r.ddt).toBeCloseTo(dy * x * B * C, FP32_CLOSED_FORM_DIGITS);
    expect(r.dB).toBeCloseTo(dy * dt * x * C, FP32_CLOSED_FORM_DIGITS);
    expect(r.dC).toBeCloseTo(dy * dt * x * B, FP32_CLOSED_FORM_DIGITS);
    expect(r.dA).toBe(0);
    expect(Math.abs(r.dx) + Math.abs(r.y)).toBeGreaterThan(0);
  });

  test('the External carries the type tag; other values do not pass the check', () => {
    const api = getNativeApi();
    expect(consumer.isTable(api)).toBe(true);
    expect(consumer.isTable(getNativeApi())).toBe(true);
    expect(consumer.isTable(consumer.untaggedExternal())).toBe(false);
    expect(consumer.isTable({})).toBe(false);
    expect(() => consumer.info(consumer.untaggedExternal())).toThrow(/getNativeApi/);
    // Errors thrown by native code come from Node's realm, not jest's: compare names.
    expect(() => consumer.info({})).toThrow(expect.objectContaining({ name: 'TypeError', message: expect.stringMatching(/getNativeApi/) }));
  });
});

/** The consumer's spec for a host call on an example's tensors. */
function hostSpec(config: ExampleConfig, inputs: ReturnType<typeof makeExample>['inputs'], options: SsdOptions, y: Tensor, finalStates: Tensor | null): Record<string, unknown> {
  const f32 = (t: Tensor | undefined): Float32Array | null => (t ? t.toFloat32() : null);
  return {
    dims: [config.batch, config.seqlen, config.nheads, config.headdim, config.ngroups, config.dstate],
    chunkSize: options.chunkSize ?? 64,
    x: inputs.x.data,
    xType: dtypeCode[inputs.x.type as keyof typeof dtypeCode],
    dt: inputs.dt.data,
    dtType: dtypeCode[inputs.dt.type as keyof typeof dtypeCode],
    A: f32(inputs.A),
    B: inputs.B.data,
    BType: dtypeCode[inputs.B.type as keyof typeof dtypeCode],
    C: inputs.C.data,
    CType: dtypeCode[inputs.C.type as keyof typeof dtypeCode],
    D: f32(inputs.D),
    dPerChannel: inputs.D !== undefined && inputs.D.dims.length === 2 ? 1 : 0,
    z: inputs.z ? inputs.z.data : null,
    zType: inputs.z ? dtypeCode[inputs.z.type as keyof typeof dtypeCode] : 0,
    dtBias: f32(inputs.dtBias),
    initialStates: f32(inputs.initialStates),
    seqIdx: inputs.seqIdx ? inputs.seqIdx.data : null,
    dtSoftplus: options.dtSoftplus ?? false,
    dtMin: options.dtLimit ? options.dtLimit[0] : 0,
    dtMax: options.dtLimit ? options.dtLimit[1] : Infinity,
    y: y.data,
    yType: dtypeCode[y.type as keyof typeof dtypeCode],
    finalStates: finalStates ? finalStates.data : null,
  };
}

describe('forward through the table, host memory', () => {
  const rng = new Random(20240611);
  const cases: [string, ExampleConfig, ExampleOptions, SsdOptions][] = [
    ['fp32, D per head, final states', { batch: 2, seqlen: 37, nheads: 4, headdim: 8, ngroups: 2, dstate: 16 }, { D: 'head' }, { chunkSize: 16, dtSoftplus: true, returnFinalStates: true }],
    ['fp32, every option', { batch: 2, seqlen: 33, nheads: 4, headdim: 5, ngroups: 1, dstate: 7 }, { D: 'channel', z: true, dtBias: true, initialStates: true, seqStarts: [5, 16] }, { chunkSize: 16, dtSoftplus: true, dtLimit: [0.01, 0.04], returnFinalStates: true }],
    ['bf16 inputs, z, no D', { batch: 1, seqlen: 64, nheads: 2, headdim: 16, ngroups: 2, dstate: 32 }, { dtype: 'bfloat16', D: 'none', z: true }, { chunkSize: 32, dtSoftplus: true, returnFinalStates: true }],
    ['f16 inputs, seqlen 1, no final states', { batch: 3, seqlen: 1, nheads: 2, headdim: 3, ngroups: 1, dstate: 4 }, { dtype: 'float16', positiveDt: true }, { chunkSize: 16 }],
  ];

  test.each(cases)('%s: same bits as ssdSync, matches the float64 reference', (_name, config, example, options) => {
    const { inputs, ref } = makeExample(rng, config, example);
    const expected = ssdSync(inputs, options);
    const y = Tensor.fromFloat32(inputs.x.type as 'float32', new Float32Array(count(expected.y.dims)), expected.y.dims);
    const finalStates = options.returnFinalStates ? new Tensor('float32', new Float32Array(count(expected.finalStates!.dims)), expected.finalStates!.dims) : null;
    const r = consumer.forward(getNativeApi(), hostSpec(config, inputs, options, y, finalStates));
    expect(r).toEqual({ status: SSD_OK, message: '' });
    expect(sameBits(y, expected.y)).toBe(true);
    if (finalStates) expect(sameBits(finalStates, expected.finalStates!)).toBe(true);
    expectMatchesReference(y, ssdReference(withOptions(ref, options)), finalStates ?? undefined);
  });

  test('strided views (padded rows, a slice of a packed projection, a transposed output) give the same bits', () => {
    const config = { batch: 2, seqlen: 21, nheads: 4, headdim: 6, ngroups: 2, dstate: 8 };
    const { batch: b, seqlen: L, nheads: h, headdim: p, ngroups: g, dstate: n } = config;
    const options: SsdOptions = { chunkSize: 16, dtSoftplus: true, returnFinalStates: true };
    const { inputs } = makeExample(rng, config, { D: 'head', z: true });
    const expected = ssdSync(inputs, options);

    // x, B and C packed per token as [x | B | C] (the layout of mamba's xBC projection), z with a padded row.
    const row = h * p + 2 * g * n;
    const packed = new Float32Array(b * L * row);
    const zPad = 3;
    const zRow = h * p + zPad;
    const zPadded = new Float32Array(b * L * zRow);
    const xs = inputs.x.data as Float32Array, Bs = inputs.B.data as Float32Array, Cs = inputs.C.data as Float32Array, zs = inputs.z!.data as Float32Array;
    for (let t = 0; t < b * L; t++) {
      packed.set(xs.subarray(t * h * p, (t + 1) * h * p), t * row);
      packed.set(Bs.subarray(t * g * n, (t + 1) * g * n), t * row + h * p);
      packed.set(Cs.subarray(t * g * n, (t + 1) * g * n), t * row + h * p + g * n);
      zPadded.set(zs.subarray(t * h * p, (t + 1) * h * p), t * zRow);
    }
    // dt with a padded row; y stored as (b, h, L, p), filled with a sentinel that must survive in the gaps.
    const dtRow = h + 1;
    const dtPadded = new Float32Array(b * L * dtRow);
    for (let t = 0; t < b * L; t++) dtPadded.set((inputs.dt.data as Float32Array).subarray(t * h, (t + 1) * h), t * dtRow);
    const yPad = 2;
    const yT = new Float32Array(b * h * L * (p + yPad)).fill(12345);
    const finalStates = new Float32Array(b * h * p * n);

    const spec = hostSpec(config, inputs, options, new Tensor('float32', new Float32Array(1), [1]), null);
    Object.assign(spec, {
      x: packed,
      B: packed.subarray(h * p),
      C: packed.subarray(h * p + g * n),
      z: zPadded,
      dt: dtPadded,
      y: yT,
      finalStates,
      strides: {
        x: [L * row, row, p],
        B: [L * row, row, n],
        C: [L * row, row, n],
        z: [L * zRow, zRow, p],
        dt: [L * dtRow, dtRow],
        y: [h * L * (p + yPad), p + yPad, L * (p + yPad)],
      },
    });
    expect(consumer.forward(getNativeApi(), spec)).toEqual({ status: SSD_OK, message: '' });

    const want = expected.y.data as Float32Array;
    let gapsIntact = true;
    let same = true;
    for (let bi = 0; bi < b; bi++) {
      for (let t = 0; t < L; t++) {
        for (let hh = 0; hh < h; hh++) {
          const at = bi * h * L * (p + yPad) + hh * L * (p + yPad) + t * (p + yPad);
          for (let i = 0; i < p; i++) {
            if (!Object.is(yT[at + i], want[((bi * L + t) * h + hh) * p + i])) same = false;
          }
          for (let i = p; i < p + yPad; i++) if (yT[at + i] !== 12345) gapsIntact = false;
        }
      }
    }
    expect(same).toBe(true);
    expect(gapsIntact).toBe(true);
    expect(sameBits(new Tensor('float32', finalStates, expected.finalStates!.dims), expected.finalStates!)).toBe(true);
  });
});

describe('bad parameter blocks fail with a status and a message, and nothing is written', () => {
  const config = { batch: 1, seqlen: 8, nheads: 2, headdim: 4, ngroups: 1, dstate: 4 };
  const rng = new Random(7);
  const { inputs } = makeExample(rng, config, { D: 'head' });
  const good = (): { spec: Record<string, unknown>; y: Float32Array } => {
    const y = new Float32Array(config.seqlen * config.nheads * config.headdim).fill(7);
    const spec = hostSpec(config, inputs, { chunkSize: 16 }, new Tensor('float32', y, [1, 8, 2, 4]), null);
    return { spec, y };
  };

  test('the good block runs (the cases below differ from it in one field)', () => {
    const { spec, y } = good();
    expect(consumer.forward(getNativeApi(), spec)).toEqual({ status: SSD_OK, message: '' });
    expect(y.some((v) => v !== 7)).toBe(true);
  });

  const bad: [string, (spec: Record<string, unknown>) => void, number, RegExp][] = [
    ['memory kind 2', (s) => (s.memory = 2), SSD_ERR_INVALID_ARGUMENT, /^memory: expected SSD_MEMORY_HOST \(0\) or SSD_MEMORY_CUDA \(1\) but received 2$/],
    ['ngroups not dividing nheads', (s) => (s.dims = [1, 8, 2, 4, 3, 4]), SSD_ERR_INVALID_ARGUMENT, /ngroups \(3\) must divide nheads \(2\)/],
    ['chunk size 48', (s) => (s.chunkSize = 48), SSD_ERR_INVALID_ARGUMENT, /chunk_size must be a power of two in \[16, 256\], got 48/],
    ['seqlen 0', (s) => (s.dims = [1, 0, 2, 4, 1, 4]), SSD_ERR_INVALID_ARGUMENT, /seqlen must be in \[1, 2\^31-1\], got 0/],
    ['A missing', (s) => (s.A = null), SSD_ERR_INVALID_ARGUMENT, /x, dt, A, B, C and y are required/],
    ['unknown dtype code', (s) => (s.xType = 7), SSD_ERR_INVALID_ARGUMENT, /unknown dtype code 7/],
    ['dt_min above dt_max', (s) => Object.assign(s, { dtMin: 0.5, dtMax: 0.1 }), SSD_ERR_INVALID_ARGUMENT, /dt_min must not exceed dt_max/],
    ['D_per_channel 2', (s) => (s.dPerChannel = 2), SSD_ERR_INVALID_ARGUMENT, /^D_per_channel: expected 0 .* or 1 .* but received 2$/],
    ['a negative stride', (s) => (s.strides = { B: [32, -4, 4] }), SSD_ERR_INVALID_ARGUMENT, /^B: expected a stride >= 0 for dimension L but received -4$/],
    ['y heads overlapping', (s) => (s.strides = { y: [64, 8, 2] }), SSD_ERR_INVALID_ARGUMENT, /^y: strides overlap \(dimension h has stride 2/],
    ['y tokens on one row', (s) => (s.strides = { y: [64, 0, 4] }), SSD_ERR_INVALID_ARGUMENT, /^y: strides overlap \(dimension L has stride 0/],
    ['strides past 64-bit offsets', (s) => (s.strides = { x: [64, 2 ** 62, 4] }), SSD_ERR_INVALID_ARGUMENT, /^x: strides reach past 64-bit offsets$/],
    [
      'a misaligned float32 pointer',
      (s) => (s.x = new Uint8Array((s.x as Float32Array).buffer, 1, 60)),
      SSD_ERR_INVALID_ARGUMENT,
      /^x: expected a pointer aligned to its 4-byte elements$/,
    ],
  ];

  test.each(bad)('%s', (_name, change, status, message) => {
    const { spec, y } = good();
    change(spec);
    const r = consumer.forward(getNativeApi(), spec);
    expect(r.status).toBe(status);
    expect(r.message).toMatch(message);
    expect(y.every((v) => v === 7)).toBe(true);
  });

  test('the message is per thread and cleared by the next successful call', () => {
    const { spec } = good();
    expect(consumer.forward(getNativeApi(), { ...spec, chunkSize: 48 }).message).not.toBe('');
    expect(consumer.forward(getNativeApi(), spec)).toEqual({ status: SSD_OK, message: '' });
  });

  test('device memory where CUDA cannot run: SSD_ERR_UNSUPPORTED with the reason', () => {
    const cuda = backends().cuda;
    if (cuda.available) {
      console.log('CUDA is available here: the device path is tested in test/cuda');
      return;
    }
    const { spec, y } = good();
    const r = consumer.forward(getNativeApi(), { ...spec, memory: 1 });
    expect(r.status).toBe(SSD_ERR_UNSUPPORTED);
    expect(r.message).toBe(`CUDA is unavailable: ${cuda.reason}`);
    expect(y.every((v) => v === 7)).toBe(true);
  });
});
