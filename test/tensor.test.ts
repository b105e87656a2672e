/**
 * The Tensor class (construction, dims, dispose, conversions) and the float32 <-> bfloat16 /
 * float16 conversions, which must round to nearest, ties to even: checked on known bit patterns,
 * on every 16-bit pattern, and against a slow exact implementation written here in float64.
 */
import {
  SsdError,
  Tensor,
  bfloat16Bits,
  bfloat16ToFloat32,
  bfloat16Value,
  float16Bits,
  float16ToFloat32,
  float16Value,
  float32ToBfloat16,
  float32ToFloat16,
  type FloatType,
  type TensorData,
  type TensorType,
} from '../lib/index';
import { Random } from '../lib/examples';

/** The error a function throws (fails the test when it does not throw). */
function thrownBy(fn: () => unknown): Error {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(Error);
  return thrown as Error;
}

function expectTypeError(fn: () => unknown, ...parts: string[]): void {
  const err = thrownBy(fn);
  expect(err).toBeInstanceOf(TypeError);
  expect(err).not.toBeInstanceOf(SsdError);
  expect(err.message).toMatch(/^Expected .+ for .+ but received .+$/);
  for (const part of parts) expect(err.message).toContain(part);
}

function expectRangeError(fn: () => unknown, ...parts: string[]): void {
  const err = thrownBy(fn);
  expect(err).toBeInstanceOf(RangeError);
  expect(err).not.toBeInstanceOf(SsdError);
  expect(err.message).toMatch(/^Expected .+ for .+ but received .+$/);
  for (const part of parts) expect(err.message).toContain(part);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
/** The float32 value with this bit pattern. */
function fromBits(bits: number): number {
  u32[0] = bits >>> 0;
  return f32[0];
}
/** The bit pattern of Math.fround(value). */
function bitsOf(value: number): number {
  f32[0] = value;
  return u32[0];
}

// ---------------------------------------------------------------------------------------------
// Construction
// ---------------------------------------------------------------------------------------------

describe('Tensor constructor', () => {
  const cases: [TensorType, TensorData][] = [
    ['float32', Float32Array.from([1, 2, 3, 4, 5, 6])],
    ['int32', Int32Array.from([1, -2, 3, 4, 5, 6])],
    ['bfloat16', Uint16Array.from([0x3f80, 0x4000, 0, 0x8000, 0xbf80, 0x7f80])],
    ['float16', Uint16Array.from([0x3c00, 0x4000, 0, 0x8000, 0xbc00, 0x7c00])],
  ];

  it.each(cases)('accepts type %s with its TypedArray, keeping the data without a copy', (type, data) => {
    const t = new Tensor(type, data, [2, 3]);
    expect(t.type).toBe(type);
    expect(t.dims).toEqual([2, 3]);
    expect(t.size).toBe(6);
    expect(t.location).toBe('cpu');
    expect(t.disposed).toBe(false);
    expect(t.data).toBe(data);
  });

  it.each(cases)('type %s: dims default to [data.length]', (type, data) => {
    const t = new Tensor(type, data);
    expect(t.dims).toEqual([6]);
    expect(t.size).toBe(6);
  });

  it('an empty array gives dims [0]; dims [] hold one element (a scalar)', () => {
    const empty = new Tensor('float32', new Float32Array(0));
    expect(empty.dims).toEqual([0]);
    expect(empty.size).toBe(0);
    const scalar = new Tensor('float32', Float32Array.of(7), []);
    expect(scalar.dims).toEqual([]);
    expect(scalar.size).toBe(1);
    const zeroDim = new Tensor('int32', new Int32Array(0), [3, 0, 2]);
    expect(zeroDim.size).toBe(0);
    expectRangeError(() => new Tensor('float32', new Float32Array(0), []), 'Expected 1 elements for dims [] for data', 'received a Float32Array of length 0');
  });

  it.each([
    ['float32', new Float64Array(3), 'a Float32Array', 'a Float64Array of length 3'],
    ['float32', new Int32Array(3), 'a Float32Array', 'a Int32Array of length 3'],
    ['float32', new Uint16Array(3), 'a Float32Array', 'a Uint16Array of length 3'],
    ['float32', [1, 2, 3], 'a Float32Array', 'an array of length 3'],
    ['int32', new Float32Array(3), 'an Int32Array', 'a Float32Array of length 3'],
    ['int32', new Uint32Array(3), 'an Int32Array', 'a Uint32Array of length 3'],
    ['bfloat16', new Float32Array(3), 'a Uint16Array of bfloat16 bit patterns', 'a Float32Array of length 3'],
    ['bfloat16', new Int16Array(3), 'a Uint16Array of bfloat16 bit patterns', 'a Int16Array of length 3'],
    ['float16', new Float32Array(3), 'a Uint16Array of float16 bit patterns', 'a Float32Array of length 3'],
    ['float16', new Int16Array(3), 'a Uint16Array of float16 bit patterns', 'a Int16Array of length 3'],
    ['float16', new DataView(new ArrayBuffer(6)), 'a Uint16Array of float16 bit patterns', 'a DataView'],
    ['float32', null, 'a Float32Array', 'null'],
    ['float32', undefined, 'a Float32Array', 'undefined'],
  ] as [TensorType, unknown, string, string][])('type %s rejects data %p with a TypeError naming data', (type, data, expected, received) => {
    expectTypeError(() => new Tensor(type, data as TensorData), `Expected ${expected}`, `for type '${type}' for data`, `but received ${received}`);
  });

  it('bfloat16 rejects a Float32Array (values must be converted first)', () => {
    expectTypeError(
      () => new Tensor('bfloat16', Float32Array.of(1, 2)),
      "Expected a Uint16Array of bfloat16 bit patterns for type 'bfloat16' for data but received a Float32Array of length 2",
    );
  });

  it('float16 accepts a Uint16Array of bit patterns', () => {
    const t = new Tensor('float16', Uint16Array.of(0x3c00, 0xc000, 0x3800));
    expect(Array.from(t.toFloat32())).toEqual([1, -2, 0.5]);
  });

  const F16 = (globalThis as { Float16Array?: new (values: number[]) => ArrayBufferView }).Float16Array;
  if (F16 !== undefined) {
    it('globalThis.Float16Array EXISTS in this runtime: float16 accepts one; bfloat16 and float32 do not', () => {
      const data = new F16([1, -2.5, 0.5, 65504]);
      const t = new Tensor('float16', data as TensorData, [2, 2]);
      expect(t.data).toBe(data);
      expect(Array.from(t.toFloat32())).toEqual([1, -2.5, 0.5, 65504]);
      expectTypeError(() => new Tensor('bfloat16', data as TensorData), 'for data', 'a Float16Array of length 4');
      expectTypeError(() => new Tensor('float32', data as TensorData), 'for data', 'a Float16Array of length 4');
      expectTypeError(() => new Tensor('float16', new Float32Array(1)), 'a Uint16Array of float16 bit patterns or a Float16Array');
    });
  } else {
    it(`globalThis.Float16Array does NOT exist in this runtime (Node ${process.version}): float16 asks for a Uint16Array only`, () => {
      expect((globalThis as { Float16Array?: unknown }).Float16Array).toBeUndefined();
      const err = thrownBy(() => new Tensor('float16', new Float32Array(1)));
      expect(err).toBeInstanceOf(TypeError);
      expect(err.message).toBe("Expected a Uint16Array of float16 bit patterns for type 'float16' for data but received a Float32Array of length 1");
      expect(err.message).not.toContain('Float16Array');
    });
  }

  it.each([
    [[2, 4], 6, 'Expected 8 elements for dims [2, 4] for data but received a Float32Array of length 6'],
    [[7], 6, 'Expected 7 elements for dims [7] for data but received a Float32Array of length 6'],
    [[2, 3, 0], 6, 'Expected 0 elements for dims [2, 3, 0] for data but received a Float32Array of length 6'],
    [[1, 1, 1, 5], 6, 'Expected 5 elements for dims [1, 1, 1, 5] for data but received a Float32Array of length 6'],
  ])('dims %j with %d elements of data is a RangeError naming data', (dims, length, message) => {
    const err = thrownBy(() => new Tensor('float32', new Float32Array(length), dims));
    expect(err).toBeInstanceOf(RangeError);
    expect(err.message).toBe(message);
  });

  it.each([
    [[2, -3], 'dims[1]', '-3'],
    [[-1], 'dims[0]', '-1'],
    [[1.5, 4], 'dims[0]', '1.5'],
    [[6, NaN], 'dims[1]', 'NaN'],
    [[Infinity], 'dims[0]', 'Infinity'],
  ])('dims %p are a RangeError naming %s', (dims, name, received) => {
    expectRangeError(() => new Tensor('float32', new Float32Array(6), dims), `Expected a non-negative integer for ${name} but received ${received}`);
  });

  it.each([
    [6, 'number 6'],
    ['6', 'the string "6"'],
    [{ length: 1, 0: 6 }, 'an object'],
    [Int32Array.of(6), 'a Int32Array of length 1'],
    [null, 'null'],
  ])('dims %p (not an array) are a TypeError naming dims', (dims, received) => {
    expectTypeError(
      () => new Tensor('float32', new Float32Array(6), dims as unknown as number[]),
      `Expected an array of non-negative integers for dims but received ${received}`,
    );
  });

  it('a dim that is not a number is a TypeError naming that dim', () => {
    expectTypeError(
      () => new Tensor('float32', new Float32Array(6), [2, '3'] as unknown as number[]),
      'Expected a non-negative integer for dims[1] but received the string "3"',
    );
  });

  it('more than 2^32 - 1 elements is a RangeError naming dims', () => {
    expectRangeError(
      () => new Tensor('float32', new Float32Array(0), [65536, 65536, 2]),
      'Expected at most 4294967295 elements for dims but received dims [65536, 65536, 2] (8589934592 elements)',
    );
  });

  it.each([
    ['float64', 'the string "float64"'],
    ['int8', 'the string "int8"'],
    ['Float32', 'the string "Float32"'],
    [undefined, 'undefined'],
    [1, 'number 1'],
  ])('unknown type %p is a TypeError naming type', (type, received) => {
    expectTypeError(
      () => new Tensor(type as TensorType, new Float32Array(1)),
      `Expected one of 'float32', 'bfloat16', 'float16', 'int32' for type but received ${received}`,
    );
  });

  it('dims are a frozen copy: mutation throws (strict mode) and changes nothing', () => {
    const dims = [2, 3];
    const t = new Tensor('float32', new Float32Array(6), dims);
    expect(Object.isFrozen(t.dims)).toBe(true);
    expect(t.dims).not.toBe(dims);
    expect(() => {
      (t.dims as number[])[0] = 6;
    }).toThrow(TypeError);
    expect(() => (t.dims as number[]).push(1)).toThrow(TypeError);
    expect(() => (t.dims as number[]).reverse()).toThrow(TypeError);
    dims[0] = 1; // the caller's array is not the tensor's
    dims.push(6);
    expect(t.dims).toEqual([2, 3]);
    expect(t.size).toBe(6);
  });
});

describe('dispose', () => {
  it.each(['float32', 'bfloat16', 'float16', 'int32'] as const)('%s: after dispose(), data throws ERR_SSD_DISPOSED', (type) => {
    const data = type === 'float32' ? new Float32Array(4) : type === 'int32' ? new Int32Array(4) : new Uint16Array(4);
    const t = new Tensor(type, data, [2, 2]);
    expect(t.disposed).toBe(false);
    expect(t.data).toBe(data);
    t.dispose();
    expect(t.disposed).toBe(true);
    for (const use of [() => t.data, () => t.toFloat32()]) {
      const err = thrownBy(use);
      expect(err).toBeInstanceOf(SsdError);
      expect(err.name).toBe('SsdError');
      expect((err as SsdError).code).toBe('ERR_SSD_DISPOSED');
      expect(err.message).toMatch(/disposed/);
    }
    // The description of the tensor survives; disposing twice is harmless.
    expect(t.type).toBe(type);
    expect(t.dims).toEqual([2, 2]);
    expect(() => t.dispose()).not.toThrow();
    expect(t.disposed).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// Known bit patterns
// ---------------------------------------------------------------------------------------------

describe('known bit patterns', () => {
  it.each([
    [1, 0x3f80, 0x3c00],
    [-2, 0xc000, 0xc000],
    [0.5, 0x3f00, 0x3800],
    [0, 0x0000, 0x0000],
    [Infinity, 0x7f80, 0x7c00],
    [-Infinity, 0xff80, 0xfc00],
    [65504, 0x4780, 0x7bff], // f16 max; in bf16 65504 rounds to 65536 (0x4780)
    [0.1, 0x3dcd, 0x2e66],
    [1 / 3, 0x3eab, 0x3555],
  ])('%p -> bfloat16 %#x, float16 %#x', (value, bf, fp) => {
    expect(bfloat16Bits(value)).toBe(bf);
    expect(float16Bits(value)).toBe(fp);
  });

  it('float16: 65504 is the largest finite; 65520 (a tie at the top) rounds to Infinity; 65519 does not', () => {
    expect(float16Bits(65504)).toBe(0x7bff);
    expect(float16Value(0x7bff)).toBe(65504);
    expect(float16Bits(65519)).toBe(0x7bff);
    expect(float16Bits(65520)).toBe(0x7c00);
    expect(float16Bits(-65520)).toBe(0xfc00);
    expect(float16Bits(1e6)).toBe(0x7c00);
    expect(float16Bits(3.4e38)).toBe(0x7c00);
  });

  it('float16 subnormals: 2^-24 -> 0x0001, 2^-25 -> 0 (tie to even), 3*2^-25 -> 0x0002', () => {
    expect(float16Bits(2 ** -24)).toBe(0x0001);
    expect(float16Bits(2 ** -25)).toBe(0x0000);
    expect(float16Bits(-(2 ** -25))).toBe(0x8000);
    expect(float16Bits(3 * 2 ** -25)).toBe(0x0002);
    expect(float16Bits(5 * 2 ** -25)).toBe(0x0002); // 2.5 quanta: tie to even 2
    expect(float16Bits(2 ** -25 + 2 ** -40)).toBe(0x0001); // just above the tie
    expect(float16Bits(2 ** -26)).toBe(0x0000);
    expect(float16Bits(2 ** -14)).toBe(0x0400); // smallest normal
    expect(float16Bits(1023 * 2 ** -24)).toBe(0x03ff); // largest subnormal
    expect(float16Bits(2 ** -14 - 2 ** -25)).toBe(0x0400); // tie between 0x03ff and 0x0400: even
    expect(float16Value(0x0001)).toBe(2 ** -24);
    expect(float16Value(0x03ff)).toBe(1023 * 2 ** -24);
  });

  it('bfloat16 ties: 1 + 2^-8 -> 0x3f80 (even), 1 + 3*2^-8 -> 0x3f82 (up to even)', () => {
    expect(bfloat16Bits(1 + 2 ** -8)).toBe(0x3f80);
    expect(bfloat16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(bfloat16Bits(1 + 2 ** -8 + 2 ** -20)).toBe(0x3f81); // above the tie
    expect(bfloat16Bits(1 + 2 ** -8 - 2 ** -20)).toBe(0x3f80); // below the tie
    expect(bfloat16Bits(fromBits(0x7f7fffff))).toBe(0x7f80); // float32 max overflows to Infinity
    expect(bfloat16Bits(fromBits(0x7f7f7fff))).toBe(0x7f7f); // just below the top tie
  });

  it('float16 ties in the normal range', () => {
    expect(float16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie: even
    expect(float16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie: up to even
    expect(float16Bits(2047)).toBe(0x67ff); // exact
    expect(float16Bits(2049)).toBe(0x6800); // tie between 2048 and 2050: 2048
    expect(float16Bits(2051)).toBe(0x6802); // tie between 2050 and 2052: 2052
  });

  it('NaN stays NaN (quiet), with either sign', () => {
    for (const nan of [NaN, fromBits(0x7fc00000), fromBits(0xffc00000), fromBits(0x7f800001), fromBits(0x7fbfffff)]) {
      const bf = bfloat16Bits(nan);
      expect(bf & 0x7f80).toBe(0x7f80);
      expect(bf & 0x007f).not.toBe(0);
      expect(bfloat16Value(bf)).toBeNaN();
      const fp = float16Bits(nan);
      expect(fp & 0x7c00).toBe(0x7c00);
      expect(fp & 0x03ff).not.toBe(0);
      expect(float16Value(fp)).toBeNaN();
    }
    // A payload whose top 16 bits would read as Infinity still gives a NaN.
    expect(bfloat16Value(bfloat16Bits(fromBits(0x7f800001)))).toBeNaN();
  });

  it('-0 keeps its sign, both ways', () => {
    expect(bfloat16Bits(-0)).toBe(0x8000);
    expect(float16Bits(-0)).toBe(0x8000);
    expect(Object.is(bfloat16Value(0x8000), -0)).toBe(true);
    expect(Object.is(float16Value(0x8000), -0)).toBe(true);
    expect(Object.is(bfloat16Value(0x0000), 0)).toBe(true);
    expect(Object.is(float16Value(0x0000), 0)).toBe(true);
    // A negative value too small for float16 rounds to -0.
    expect(float16Bits(-(2 ** -30))).toBe(0x8000);
  });

  it('values of known bit patterns', () => {
    expect(bfloat16Value(0x3f80)).toBe(1);
    expect(bfloat16Value(0xc000)).toBe(-2);
    expect(bfloat16Value(0x7f80)).toBe(Infinity);
    expect(bfloat16Value(0xff80)).toBe(-Infinity);
    expect(bfloat16Value(0x0001)).toBe(2 ** -133);
    expect(float16Value(0x3c00)).toBe(1);
    expect(float16Value(0xc000)).toBe(-2);
    expect(float16Value(0x7c00)).toBe(Infinity);
    expect(float16Value(0xfc00)).toBe(-Infinity);
    expect(float16Value(0x3555)).toBe(0.333251953125);
  });
});

// ---------------------------------------------------------------------------------------------
// Every 16-bit pattern
// ---------------------------------------------------------------------------------------------

describe('all 65536 bit patterns', () => {
  const formats = [
    { name: 'bfloat16', bits: bfloat16Bits, value: bfloat16Value, toFloat32: bfloat16ToFloat32, nanCount: 2 * 127, inf: 0x7f80 },
    { name: 'float16', bits: float16Bits, value: float16Value, toFloat32: float16ToFloat32, nanCount: 2 * 1023, inf: 0x7c00 },
  ];

  it.each(formats)('$name: value -> bits is the identity except NaNs, which stay NaN', ({ bits, value, nanCount }) => {
    let nans = 0;
    let mismatches = 0;
    for (let b = 0; b < 65536; b++) {
      const v = value(b);
      if (Number.isNaN(v)) {
        nans++;
        if (!Number.isNaN(value(bits(v)))) mismatches++;
      } else if (bits(v) !== b) {
        mismatches++;
      }
    }
    expect(nans).toBe(nanCount);
    expect(mismatches).toBe(0);
  });

  it.each(formats)('$name: values increase strictly with the bit pattern (positive half), and negate with the sign bit', ({ value, inf }) => {
    let previous = -Infinity;
    let bad = 0;
    for (let b = 0; b <= inf; b++) {
      const v = value(b);
      if (!(v > previous)) bad++;
      previous = v;
      if (!Object.is(value(b | 0x8000), -v)) bad++;
    }
    expect(previous).toBe(Infinity);
    expect(bad).toBe(0);
  });

  it.each(formats)('$name: the array conversion agrees with the scalar one on every pattern', ({ value, toFloat32 }) => {
    const all = new Uint16Array(65536);
    for (let b = 0; b < 65536; b++) all[b] = b;
    const out = toFloat32(all);
    expect(out).toBeInstanceOf(Float32Array);
    expect(out.length).toBe(65536);
    let bad = 0;
    for (let b = 0; b < 65536; b++) {
      const expected = value(b);
      if (Number.isNaN(expected) ? !Number.isNaN(out[b]) : !Object.is(out[b], expected)) bad++;
    }
    expect(bad).toBe(0);
  });

  it('bfloat16 values are the top half of the float32 pattern', () => {
    let bad = 0;
    for (let b = 0; b < 65536; b++) {
      const v = bfloat16Value(b);
      if (!Number.isNaN(v) && bitsOf(v) !== (b << 16) >>> 0) bad++;
    }
    expect(bad).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Array conversions and Tensor.fromFloat32 / toFloat32
// ---------------------------------------------------------------------------------------------

describe('array conversions', () => {
  const values = [1, -2, 0.1, 1 / 3, 65504, 65520, 2 ** -24, -0, Infinity, -Infinity, 1e-10, 3e38];

  it('float32ToBfloat16 / bfloat16ToFloat32', () => {
    const bits = float32ToBfloat16(values);
    expect(bits).toBeInstanceOf(Uint16Array);
    expect(Array.from(bits)).toEqual(values.map(bfloat16Bits));
    expect(Array.from(bits.slice(0, 2))).toEqual([0x3f80, 0xc000]);
    const back = bfloat16ToFloat32(bits);
    expect(back).toBeInstanceOf(Float32Array);
    expect(Array.from(back)).toEqual(values.map((v) => bfloat16Value(bfloat16Bits(v))));
    expect(Object.is(back[7], -0)).toBe(true);
    expect(float32ToBfloat16(Float32Array.from(values))).toEqual(bits);
    expect(float32ToBfloat16([]).length).toBe(0);
    expect(bfloat16ToFloat32(Uint16Array.of(0x7fc0))[0]).toBeNaN();
  });

  it('float32ToFloat16 / float16ToFloat32', () => {
    const bits = float32ToFloat16(values);
    expect(bits).toBeInstanceOf(Uint16Array);
    expect(Array.from(bits)).toEqual(values.map(float16Bits));
    expect(Array.from(bits.slice(0, 7))).toEqual([0x3c00, 0xc000, 0x2e66, 0x3555, 0x7bff, 0x7c00, 0x0001]);
    const back = float16ToFloat32(bits);
    expect(back).toBeInstanceOf(Float32Array);
    expect(Array.from(back)).toEqual(values.map((v) => float16Value(float16Bits(v))));
    expect(back[10]).toBe(0); // 1e-10 underflows
    expect(back[11]).toBe(Infinity); // 3e38 overflows
    expect(float16ToFloat32(Uint16Array.of(0x7e00))[0]).toBeNaN();
  });
});

describe('Tensor.fromFloat32 and toFloat32', () => {
  const values = [1, -2, 0.1, 1 / 3, 1000.5, -0, 65504, 1e-6];

  it.each(['float32', 'bfloat16', 'float16'] as FloatType[])('%s: holds the rounded values and gives them back', (type) => {
    const t = Tensor.fromFloat32(type, values, [2, 4]);
    expect(t.type).toBe(type);
    expect(t.dims).toEqual([2, 4]);
    const back = t.toFloat32();
    expect(back).toBeInstanceOf(Float32Array);
    const round = type === 'float32' ? Math.fround : type === 'bfloat16' ? (v: number) => bfloat16Value(bfloat16Bits(v)) : (v: number) => float16Value(float16Bits(v));
    expect(Array.from(back)).toEqual(values.map(round));
    expect(Object.is(back[5], -0)).toBe(true);
    if (type === 'float32') {
      expect(t.data).toBeInstanceOf(Float32Array);
    } else {
      expect(t.data).toBeInstanceOf(Uint16Array);
      expect(Array.from(t.data as Uint16Array)).toEqual(values.map(type === 'bfloat16' ? bfloat16Bits : float16Bits));
      expect(back).not.toBe(t.data);
    }
  });

  it('rounding differs by type as expected', () => {
    expect(Tensor.fromFloat32('bfloat16', [1000.5]).toFloat32()[0]).toBe(1000); // 8 significant bits
    expect(Tensor.fromFloat32('float16', [1000.5]).toFloat32()[0]).toBe(1000.5); // 11 significant bits
    expect(Tensor.fromFloat32('float16', [65536]).toFloat32()[0]).toBe(Infinity);
    expect(Tensor.fromFloat32('bfloat16', [65536]).toFloat32()[0]).toBe(65536);
  });

  it('float32 from a Float32Array keeps that array; from a number[] makes one; toFloat32 returns the data itself', () => {
    const data = Float32Array.of(1, 2, 3);
    const t = Tensor.fromFloat32('float32', data);
    expect(t.data).toBe(data);
    expect(t.toFloat32()).toBe(data);
    const u = Tensor.fromFloat32('float32', [0.1, 2]);
    expect(u.data).toBeInstanceOf(Float32Array);
    expect(Array.from(u.toFloat32())).toEqual([Math.fround(0.1), 2]);
    expect(u.dims).toEqual([2]);
  });

  it('fromFloat32 checks dims against the values', () => {
    expectRangeError(() => Tensor.fromFloat32('bfloat16', [1, 2, 3], [2, 2]), 'Expected 4 elements for dims [2, 2] for data', 'a Uint16Array of length 3');
  });

  it("fromFloat32 with 'int32' (not a float type) is a TypeError naming type", () => {
    expectTypeError(() => Tensor.fromFloat32('int32' as FloatType, [1]), "Expected 'float32', 'bfloat16' or 'float16' for type but received the string \"int32\"");
  });

  it('int32 toFloat32 converts the integers', () => {
    const t = new Tensor('int32', Int32Array.of(-3, 0, 16777217), [3]);
    expect(Array.from(t.toFloat32())).toEqual([-3, 0, 16777216]);
  });

  it('a 16-bit tensor on a view with a byte offset converts the viewed elements only', () => {
    const buffer = new Uint16Array([0xffff, 0x3c00, 0x4000, 0x4200, 0xffff]);
    const bf = new Tensor('bfloat16', Uint16Array.from([0x7fc0, 0x3f80, 0x4000, 0x4040, 0x7fc0]).subarray(1, 4));
    expect(Array.from(bf.toFloat32())).toEqual([1, 2, 3]);
    const fp = new Tensor('float16', buffer.subarray(1, 4));
    expect(Array.from(fp.toFloat32())).toEqual([1, 2, 3]);
  });
});

// ---------------------------------------------------------------------------------------------
// Rounding against a slow exact implementation
// ---------------------------------------------------------------------------------------------

interface Format {
  name: 'bfloat16' | 'float16';
  /** explicit mantissa bits */
  mantissa: number;
  /** smallest normal exponent */
  emin: number;
  /** largest exponent */
  emax: number;
  bits: (v: number) => number;
}

const BF16: Format = { name: 'bfloat16', mantissa: 7, emin: -126, emax: 127, bits: bfloat16Bits };
const FP16: Format = { name: 'float16', mantissa: 10, emin: -14, emax: 15, bits: float16Bits };

/** floor(log2(a)) for a finite a > 0, exactly. */
function exponentOf(a: number): number {
  let e = Math.floor(Math.log2(a));
  while (2 ** e > a) e--;
  while (2 ** (e + 1) <= a) e++;
  return e;
}

/**
 * The bit pattern nearest to the finite float32 value v, ties to even, computed from first
 * principles in float64 (every step below is exact: v has 24 significant bits).
 */
function exactBits(f: Format, v: number): number {
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  const bias = f.emax; // 127 for bfloat16, 15 for float16
  if (a === 0) return sign;
  // The spacing of representable values around a (subnormals share the smallest normal's).
  const e = Math.max(exponentOf(a), f.emin);
  const quantum = 2 ** (e - f.mantissa);
  const k = Math.floor(a / quantum); // a lies in [k, k + 1) quanta
  const lower = k * quantum;
  const upper = (k + 1) * quantum;
  let r: number;
  if (a - lower < upper - a) r = lower;
  else if (a - lower > upper - a) r = upper;
  else r = k % 2 === 0 ? lower : upper;
  const maxFinite = 2 ** f.emax * (2 - 2 ** -f.mantissa);
  if (r > maxFinite) return sign | (((2 * f.emax + 1) << f.mantissa) & 0x7fff); // Infinity: exponent all ones
  if (r < 2 ** f.emin) return sign | (r / 2 ** (f.emin - f.mantissa)); // subnormal (or zero)
  const re = exponentOf(r);
  const m = r / 2 ** (re - f.mantissa) - 2 ** f.mantissa;
  return sign | ((re + bias) << f.mantissa) | m;
}

describe('rounding against an exact implementation', () => {
  it('the exact implementation itself gets the known cases right', () => {
    expect(exactBits(BF16, 1)).toBe(0x3f80);
    expect(exactBits(FP16, 1)).toBe(0x3c00);
    expect(exactBits(BF16, 1 + 2 ** -8)).toBe(0x3f80);
    expect(exactBits(BF16, 1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(exactBits(FP16, 65504)).toBe(0x7bff);
    expect(exactBits(FP16, 65520)).toBe(0x7c00);
    expect(exactBits(BF16, fromBits(0x7f7fffff))).toBe(0x7f80);
    expect(exactBits(FP16, 2 ** -24)).toBe(0x0001);
    expect(exactBits(FP16, 2 ** -25)).toBe(0x0000);
    expect(exactBits(FP16, 3 * 2 ** -25)).toBe(0x0002);
    expect(exactBits(FP16, -(2 ** -14))).toBe(0x8400);
    expect(exactBits(BF16, -0)).toBe(0x8000);
    expect(exactBits(BF16, fromBits(0x00000001))).toBe(0x0000); // float32's smallest subnormal
    expect(exactBits(BF16, fromBits(0x00008000))).toBe(0x0000); // tie to even (0)
    expect(exactBits(BF16, fromBits(0x00018000))).toBe(0x0002); // tie to even (2)
  });

  it('10,000 random float32 values round to the exact answer in both formats', () => {
    const rng = new Random(0x5eed);
    const randomBits = (): number => Math.floor(rng.uniform() * 2 ** 32) >>> 0;
    const values: number[] = [];
    // 3,000 uniformly random bit patterns: every exponent, subnormals, infinities and NaNs.
    for (let i = 0; i < 3000; i++) values.push(fromBits(randomBits()));
    // 4,000 around float16's range, exponents -27..16 (its subnormals, normals and overflow).
    for (let i = 0; i < 4000; i++) {
      const exponent = -27 + Math.floor(rng.uniform() * 44);
      const bits = ((randomBits() & 0x807fffff) | ((exponent + 127) << 23)) >>> 0;
      values.push(fromBits(bits));
    }
    // 1,500 exact ties (and their neighbours one float32 ulp away), alternating formats.
    for (let i = 0; i < 1500; i++) {
      const f = i % 2 === 0 ? BF16 : FP16;
      const drop = 23 - f.mantissa; // float32 mantissa bits below the format's last one
      const exponent = f === BF16 ? -133 + Math.floor(rng.uniform() * 260) : -24 + Math.floor(rng.uniform() * 40);
      // A float32 normal with the low `drop` bits exactly 100...0: a tie for normals of the format.
      let bits = (randomBits() & 0x807fffff & ~((1 << drop) - 1)) | (1 << (drop - 1));
      bits = (bits & ~0x7f800000) | ((Math.max(1, Math.min(254, exponent + 127)) & 0xff) << 23);
      const tie = fromBits(bits >>> 0);
      values.push(i % 3 === 0 ? fromBits((bits + 1) >>> 0) : i % 3 === 1 ? fromBits((bits - 1) >>> 0) : tie);
    }
    // 1,500 float16 subnormal ties, k + 1/2 quanta of 2^-24.
    for (let i = values.length; i < 10000; i++) {
      const k = Math.floor(rng.uniform() * 1024);
      values.push((rng.uniform() < 0.5 ? -1 : 1) * (k + 0.5) * 2 ** -24);
    }
    expect(values.length).toBe(10000);

    const stats = { nan: 0, infinite: 0, checked: 0, bf16Ties: 0, fp16Ties: 0, fp16Subnormal: 0, fp16Overflow: 0 };
    const failures: string[] = [];
    for (const v of values) {
      expect(Math.fround(v)).toBe(v); // every test value is a float32
      if (Number.isNaN(v)) {
        stats.nan++;
        expect(bfloat16Value(bfloat16Bits(v))).toBeNaN();
        expect(float16Value(float16Bits(v))).toBeNaN();
        continue;
      }
      if (!Number.isFinite(v)) stats.infinite++;
      for (const f of [BF16, FP16]) {
        const expected = Number.isFinite(v) ? exactBits(f, v) : (v > 0 ? 0 : 0x8000) | (f === BF16 ? 0x7f80 : 0x7c00);
        const got = f.bits(v);
        stats.checked++;
        if (got !== expected && failures.length < 10) {
          failures.push(`${f.name}(${v}, float32 bits 0x${bitsOf(v).toString(16)}): got 0x${got.toString(16)}, expected 0x${expected.toString(16)}`);
        }
      }
      const a = Math.abs(v);
      if (Number.isFinite(v) && a > 0) {
        const bq = 2 ** (Math.max(exponentOf(a), BF16.emin) - BF16.mantissa);
        if ((a / bq) % 1 === 0.5) stats.bf16Ties++;
        const fq = 2 ** (Math.max(exponentOf(a), FP16.emin) - FP16.mantissa);
        if ((a / fq) % 1 === 0.5) stats.fp16Ties++;
        if (a < 2 ** -14) stats.fp16Subnormal++;
        if (a > 65504) stats.fp16Overflow++;
      }
    }
    expect(failures).toEqual([]);
    // The sample really exercises what it claims to.
    expect(stats.checked).toBeGreaterThan(19000);
    expect(stats.nan).toBeGreaterThan(0);
    expect(stats.bf16Ties).toBeGreaterThan(300);
    expect(stats.fp16Ties).toBeGreaterThan(500);
    expect(stats.fp16Subnormal).toBeGreaterThan(500);
    expect(stats.fp16Overflow).toBeGreaterThan(500);
  });
});
