/**
 * Tensors of onnxruntime-node (the real package, a devDependency) and plain { type, dims, data }
 * objects in and out of every entry point: results bitwise equal to the same call with Tensors of
 * this package, the ort tensor's own ArrayBuffer read and written (no copy), ssd-kernels' outputs
 * made into ort tensors without a copy, what onnxruntime does with float16 and bfloat16, and the
 * error messages for foreign objects that are not tensors we can take.
 */
import * as ort from 'onnxruntime-node';
import {
  SsdError,
  Tensor,
  ssd,
  ssdBackward,
  ssdBackwardSync,
  ssdMatrix,
  ssdStep,
  ssdStepSync,
  ssdSync,
  ssdWithGrad,
  type FloatType,
  type SsdInputs,
  type SsdOptions,
  type TensorLike,
} from '../lib/index';
import { asTensor } from '../lib/tensor';
import { makeStepExample } from '../lib/reference-step';
import { Random, makeExample } from './reference';

/** ort.Tensor's constructor with the type string as a value (its typings overload on literal types). */
const OrtTensor = ort.Tensor as unknown as new (type: string, data: ArrayBufferView, dims: readonly number[]) => ort.Tensor;

/** A copy of a CPU Tensor's data. */
function copyOf(t: Tensor): Float32Array | Uint16Array | Int32Array {
  return (t.data as Float32Array | Uint16Array | Int32Array).slice();
}

/** An ort tensor holding a copy of `t`'s data (so that the Tensor call and the ort call share nothing). */
function ortCopy(t: Tensor): ort.Tensor {
  return new OrtTensor(t.type, copyOf(t), t.dims);
}

/** A plain { type, dims, data } object holding a copy of `t`'s data. */
function plainCopy(t: Tensor): { type: string; dims: number[]; data: ArrayBufferView } {
  return { type: t.type, dims: [...t.dims], data: copyOf(t) };
}

/** The same record with every tensor replaced by `convert(tensor)`. */
function mapTensors<T>(record: Record<string, Tensor | undefined>, convert: (t: Tensor) => T): Record<string, T> {
  const out: Record<string, T> = {};
  for (const [name, t] of Object.entries(record)) if (t !== undefined) out[name] = convert(t);
  return out;
}

function bytes(data: unknown): Uint8Array {
  const view = data as ArrayBufferView;
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/** Bitwise equality of two tensors' data (of any library). */
function expectSameBits(a: TensorLike, b: TensorLike): void {
  expect(a.type).toBe(b.type);
  expect([...a.dims]).toEqual([...b.dims]);
  expect(Buffer.from(bytes(a.data)).equals(Buffer.from(bytes(b.data)))).toBe(true);
}

function errorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a throw');
}

const config = { batch: 2, seqlen: 40, nheads: 4, headdim: 8, ngroups: 2, dstate: 16 };
/** The scan's options, for the forward and the backward; the forward also returns finalStates. */
const scan: Pick<SsdOptions, 'chunkSize' | 'dtSoftplus' | 'dtLimit'> = { chunkSize: 16, dtSoftplus: true, dtLimit: [0, 0.5] };
const options: SsdOptions = { ...scan, returnFinalStates: true };

function example(dtype: FloatType = 'float32', seed = 7): SsdInputs {
  const { inputs } = makeExample(new Random(seed), config, { dtype, z: true, dtBias: true, initialStates: true, seqStarts: [13] });
  return inputs;
}

describe('onnxruntime-node tensors in and out of the forward', () => {
  test.each(['float32', 'float16'] as const)('%s: ort inputs and outputs give the bits of the Tensor call, in the ort tensors’ own memory', async (dtype) => {
    const inputs = example(dtype);
    const expected = ssdSync(inputs, options);
    const ortInputs = mapTensors({ ...inputs }, ortCopy);
    expect(ortInputs.x).toBeInstanceOf(ort.Tensor);
    const y = ssdSync(ortInputs as unknown as SsdInputs<TensorLike>, options);
    expectSameBits(y.y, expected.y);
    expectSameBits(y.finalStates!, expected.finalStates!);
    const asynchronous = await ssd(ortInputs as unknown as SsdInputs<TensorLike>, options);
    expectSameBits(asynchronous.y, expected.y);

    // options.out as ort tensors: the results land in their data
    const outY = new OrtTensor(dtype, dtype === 'float32' ? new Float32Array(expected.y.size) : new Uint16Array(expected.y.size), expected.y.dims);
    const outStates = new OrtTensor('float32', new Float32Array(expected.finalStates!.size), expected.finalStates!.dims);
    const written = ssdSync(ortInputs as unknown as SsdInputs<TensorLike>, { ...options, out: { y: outY, finalStates: outStates } });
    expectSameBits(outY, expected.y);
    expectSameBits(outStates, expected.finalStates!);
    expect(written.y.data.buffer).toBe((outY.data as ArrayBufferView).buffer);

    // and our output becomes an ort tensor without a copy (for float16 ort may view the Uint16Array as a Float16Array)
    const back = new OrtTensor(y.y.type, y.y.data, y.y.dims);
    expect(back.type).toBe(dtype);
    expect((back.data as ArrayBufferView).buffer).toBe(y.y.data.buffer);
    expectSameBits(back, expected.y);
  });

  test('the kernels read the ort tensor’s ArrayBuffer: a change to its data after wrapping is seen', () => {
    const inputs = example();
    const ortInputs = mapTensors({ ...inputs }, ortCopy);
    const x = ortInputs.x;
    const wrapped = asTensor(x, 'inputs.x');
    expect(wrapped.data).toBe(x.data); // the same Float32Array, not a copy
    const before = ssdSync(ortInputs as unknown as SsdInputs<TensorLike>, options);
    (x.data as Float32Array)[5] += 1;
    const after = ssdSync(ortInputs as unknown as SsdInputs<TensorLike>, options);
    const changed = copyOf(inputs.x) as Float32Array;
    changed[5] += 1;
    const expected = ssdSync({ ...inputs, x: new Tensor('float32', changed, inputs.x.dims) }, options);
    expectSameBits(after.y, expected.y);
    expect(Buffer.from(bytes(after.y.data)).equals(Buffer.from(bytes(before.y.data)))).toBe(false);
  });

  test('the same ort tensor passed twice is one tensor: as x and as out.y it is refused', () => {
    const ortInputs = mapTensors({ ...example() }, ortCopy);
    const err = errorOf(() => ssdSync(ortInputs as unknown as SsdInputs<TensorLike>, { ...options, out: { y: ortInputs.x } }));
    expect(err).toBeInstanceOf(SsdError);
    expect((err as SsdError).code).toBe('ERR_SSD_VALUE');
    expect(err.message).toBe('Expected options.out.y to be a tensor apart from the inputs but received one of them');
  });

  test('a plain { type, dims, data } object works, also with location cpu or cpu-pinned', () => {
    const inputs = example();
    const expected = ssdSync(inputs, options);
    const plain = mapTensors({ ...inputs }, plainCopy) as unknown as SsdInputs<TensorLike>;
    expectSameBits(ssdSync(plain, options).y, expected.y);
    const located = { ...plain, x: { ...plainCopy(inputs.x), location: 'cpu' }, B: { ...plainCopy(inputs.B), location: 'cpu-pinned' } };
    expectSameBits(ssdSync(located, options).y, expected.y);
  });
});

describe('bfloat16 and onnxruntime-node', () => {
  test('onnxruntime-node has no bfloat16 tensor type', () => {
    expect(() => new OrtTensor('bfloat16', new Uint16Array(4), [4])).toThrow(/Unsupported tensor type: bfloat16/);
  });

  test('bfloat16 bits in an ort uint16 tensor: refused with the way round, which wraps them without a copy', () => {
    const inputs = example('bfloat16');
    const carrier = new OrtTensor('uint16', copyOf(inputs.x), inputs.x.dims);
    const err = errorOf(() => ssdSync({ ...inputs, x: carrier }, options));
    expect(err).toBeInstanceOf(TypeError);
    expect(err.message).toBe(
      "Expected one of 'float32', 'bfloat16', 'float16', 'int32' for inputs.x.type but received the string \"uint16\"; " +
        "for bfloat16 bit patterns in a 'uint16' tensor, new Tensor('bfloat16', t.data, t.dims) takes them without a copy",
    );
    const x = new Tensor('bfloat16', carrier.data as Uint16Array, carrier.dims);
    expect(x.data).toBe(carrier.data);
    const y = ssdSync({ ...inputs, x }, options).y;
    expectSameBits(y, ssdSync(inputs, options).y);
    // the bfloat16 result goes back as a 'uint16' carrier without a copy, or as float32 values (a copy)
    const out = new OrtTensor('uint16', y.data, y.dims);
    expect(out.data).toBe(y.data);
    const asFloat = new OrtTensor('float32', y.toFloat32(), y.dims);
    expect(asFloat.type).toBe('float32');
  });
});

describe('onnxruntime-node tensors in the backward', () => {
  test('ssdBackward(Sync) with ort inputs, grads and options.out: the bits of the Tensor call', async () => {
    const inputs = example();
    const { y, finalStates } = ssdSync(inputs, options);
    const rng = new Random(11);
    const dy = new Tensor('float32', rng.normals(y.size), y.dims);
    const dFinalStates = new Tensor('float32', rng.normals(finalStates!.size), finalStates!.dims);
    const expected = ssdBackwardSync(inputs, { dy, dFinalStates }, scan);

    const ortInputs = mapTensors({ ...inputs }, ortCopy) as unknown as SsdInputs<TensorLike>;
    const ortGrads = { dy: ortCopy(dy), dFinalStates: ortCopy(dFinalStates) };
    const got = ssdBackwardSync(ortInputs, ortGrads, scan);
    for (const [name, g] of Object.entries(expected)) expectSameBits((got as unknown as Record<string, Tensor>)[name], g as Tensor);
    const gotAsync = await ssdBackward(ortInputs, ortGrads, scan);
    expectSameBits(gotAsync.dx, expected.dx);

    const outDx = new OrtTensor('float32', new Float32Array(expected.dx.size), expected.dx.dims);
    const outDA = new OrtTensor('float32', new Float32Array(expected.dA.size), expected.dA.dims);
    const written = ssdBackwardSync(ortInputs, ortGrads, { ...scan, out: { dx: outDx, dA: outDA } });
    expectSameBits(outDx, expected.dx);
    expectSameBits(outDA, expected.dA);
    expect(written.dx.data).toBe(outDx.data);
  });

  test('ssdWithGrad with ort inputs, and its backward with an ort dy', async () => {
    const inputs = example('float16');
    const forwardOptions: SsdOptions = { chunkSize: 16, dtSoftplus: true };
    const expectedForward = ssdSync(inputs, forwardOptions);
    const dy = Tensor.fromFloat32('float16', new Random(3).normals(expectedForward.y.size), expectedForward.y.dims);
    const expected = ssdBackwardSync(inputs, { dy }, { chunkSize: 16, dtSoftplus: true });

    const ortInputs = mapTensors({ ...inputs }, ortCopy) as unknown as SsdInputs<TensorLike>;
    const { y, backward } = await ssdWithGrad(ortInputs, forwardOptions);
    expectSameBits(y, expectedForward.y);
    const grads = await backward({ dy: ortCopy(dy) });
    for (const [name, g] of Object.entries(expected)) expectSameBits((grads as unknown as Record<string, Tensor>)[name], g as Tensor);
  });
});

describe('onnxruntime-node tensors in the step and the matrix', () => {
  const stepConfig = { batch: 2, nheads: 4, headdim: 8, ngroups: 2, dstate: 16, stateRows: 3 };

  test('ssdStep(Sync): an ort state advances in place, y as the Tensor call gives it', async () => {
    for (const sync of [true, false]) {
      const ex = makeStepExample(new Random(5), stepConfig, { z: true, dtBias: true, stateIndices: [2, 0] });
      const ortState = ortCopy(ex.state);
      const ortInputs = mapTensors({ ...ex.inputs }, ortCopy) as unknown as Parameters<typeof ssdStepSync>[1];
      const outY = new OrtTensor('float32', new Float32Array(2 * 4 * 8), [2, 4, 8]);
      const stepOptions = { dtSoftplus: true, out: { y: outY } };
      const got = sync ? ssdStepSync(ortState, ortInputs, stepOptions) : await ssdStep(ortState, ortInputs, stepOptions);
      const expected = ssdStepSync(ex.state, ex.inputs, { dtSoftplus: true });
      expectSameBits(ortState, ex.state); // the state of both calls, each advanced in its own memory
      expectSameBits(outY, expected.y);
      expect(got.y.data).toBe(outY.data);
    }
  });

  test('ssdMatrix with ort inputs gives the matrix of the Tensor call', () => {
    const inputs = example();
    const expected = ssdMatrix(inputs, { dtSoftplus: true, start: 4, length: 20 });
    const got = ssdMatrix(mapTensors({ ...inputs }, ortCopy) as unknown as SsdInputs<TensorLike>, { dtSoftplus: true, start: 4, length: 20 });
    expectSameBits(got, expected);
  });
});

describe('foreign objects that are not tensors we take', () => {
  const inputs = example();
  const withX = (x: unknown): SsdInputs<TensorLike> => ({ ...inputs, x }) as SsdInputs<TensorLike>;
  const layout = '(batch, seqlen, nheads, headdim)';
  const rule = "(a Tensor of ssd-kernels or an object with type, dims and data; onnxruntime-node's Tensor works)";

  test.each([
    ['without dims', { type: 'float32', data: inputs.x.data }, 'an object without dims'],
    ['without type and data', { dims: inputs.x.dims }, 'an object without type and data'],
    ['with nothing of a tensor', new Map(), 'an instance of Map without type, dims and data'],
  ])('a missing field (%s) is named', (_title, x, received) => {
    const err = errorOf(() => ssdSync(withX(x), options));
    expect(err).toBeInstanceOf(TypeError);
    expect(err.message).toBe(`Expected a Tensor ${layout} for inputs.x ${rule} but received ${received}`);
  });

  test('a data array of the wrong type for its type', () => {
    const err = errorOf(() => ssdSync(withX({ type: 'float32', dims: inputs.x.dims, data: new Float64Array(inputs.x.size) }), options));
    expect(err).toBeInstanceOf(TypeError);
    expect(err.message).toBe(`Expected a Float32Array for type 'float32' for inputs.x.data but received a Float64Array of length ${inputs.x.size}`);
    const half = errorOf(() => ssdSync(withX({ type: 'float16', dims: inputs.x.dims, data: new Float32Array(inputs.x.size) }), options));
    expect(half.message).toMatch(/^Expected a Uint16Array of float16 bit patterns.* for type 'float16' for inputs.x.data but received a Float32Array/);
  });

  test('dims that do not match the data, and dims that are not dims', () => {
    const err = errorOf(() => ssdSync(withX({ type: 'float32', dims: [2, 40, 4, 9], data: inputs.x.data }), options));
    expect(err).toBeInstanceOf(RangeError);
    expect(err.message).toBe(`Expected 2880 elements for dims [2, 40, 4, 9] for inputs.x.data but received a Float32Array of length ${inputs.x.size}`);
    const bad = errorOf(() => ssdSync(withX({ type: 'float32', dims: [2, -40, 4, 8], data: inputs.x.data }), options));
    expect(bad).toBeInstanceOf(RangeError);
    expect(bad.message).toBe('Expected a non-negative integer for inputs.x.dims[1] but received -40');
  });

  test('a tensor not in CPU memory (an onnxruntime GPU tensor) is refused, saying how to get a CPU one', () => {
    const gpu = ort.Tensor.fromGpuBuffer({ size: 4 * inputs.x.size } as unknown as Parameters<typeof ort.Tensor.fromGpuBuffer>[0], {
      dataType: 'float32',
      dims: inputs.x.dims,
    });
    expect(gpu.location).toBe('gpu-buffer');
    const err = errorOf(() => ssdSync(withX(gpu), options));
    expect(err).toBeInstanceOf(TypeError);
    expect(err.message).toBe(
      `Expected a Tensor ${layout} in CPU memory for inputs.x (tensors of other libraries are taken on the CPU only: ` +
        "for onnxruntime-node's Tensor, `new ort.Tensor(t.type, await t.getData(), t.dims)` makes a CPU copy, " +
        "or ask the session for outputs on the CPU) but received a tensor with location 'gpu-buffer'",
    );
    const cuda = errorOf(() => ssdSync(withX({ ...plainCopy(inputs.x), location: 'cuda' }), options));
    expect(cuda.message).toMatch(/received a tensor with location 'cuda'$/);
  });

  test('a disposed ort tensor is ERR_SSD_DISPOSED, as a disposed Tensor is', () => {
    const x = ortCopy(inputs.x);
    x.dispose();
    const err = errorOf(() => ssdSync(withX(x), options));
    expect(err).toBeInstanceOf(SsdError);
    expect((err as SsdError).code).toBe('ERR_SSD_DISPOSED');
    expect(err.message).toBe('inputs.x was disposed before the call');
  });

  test('a type string we do not have', () => {
    const err = errorOf(() => ssdSync(withX(new OrtTensor('float64', new Float64Array(inputs.x.size), inputs.x.dims)), options));
    expect(err).toBeInstanceOf(TypeError);
    expect(err.message).toBe("Expected one of 'float32', 'bfloat16', 'float16', 'int32' for inputs.x.type but received the string \"float64\"");
  });

  test('an ort tensor of a type the argument does not take is named by its type, never as "an instance of Tensor"', () => {
    const seqIdx = new OrtTensor('float32', new Float32Array(80), [2, 40]);
    const err = errorOf(() => ssdSync({ ...inputs, seqIdx } as SsdInputs<TensorLike>, options));
    expect(err.message).toBe("Expected a Tensor of type 'int32' for inputs.seqIdx but received a Tensor of type 'float32'");
    const dy = errorOf(() => ssdBackwardSync(inputs, { dy: new OrtTensor('int32', new Int32Array(2560), [2, 40, 4, 8]) }, scan));
    expect(dy.message).toBe("Expected a Tensor of type 'float32' (the type of y, which is x's) for grads.dy but received a Tensor of type 'int32'");
    expect(err.message + dy.message).not.toMatch(/instance of Tensor/);
  });

  test('the state and step inputs go through the same rule', () => {
    const ex = makeStepExample(new Random(5), { batch: 2, nheads: 4, headdim: 8, ngroups: 2, dstate: 16 });
    const err = errorOf(() => ssdStepSync({ type: 'float32', data: ex.state.data } as unknown as TensorLike, ex.inputs));
    expect(err.message).toBe(`Expected a Tensor (rows, nheads, headdim, dstate) for state ${rule} but received an object without dims`);
  });
});
