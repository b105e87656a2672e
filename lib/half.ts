/**
 * Conversions between float32 values and the 16-bit bit patterns of bfloat16 and IEEE float16,
 * rounding to nearest, ties to even. NaN stays NaN (quiet), infinities stay infinite, values too
 * large for the 16-bit format round to infinity as IEEE rounding says.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The bfloat16 bit pattern nearest to `value`. */
export function bfloat16Bits(value: number): number {
  f32[0] = value;
  const bits = u32[0];
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) {
    return ((bits >>> 16) | 0x0040) & 0xffff; // quiet NaN, sign kept
  }
  const roundingBias = 0x7fff + ((bits >>> 16) & 1);
  return ((bits + roundingBias) >>> 16) & 0xffff;
}

/** The float32 value of a bfloat16 bit pattern (exact). */
export function bfloat16Value(bits: number): number {
  u32[0] = (bits & 0xffff) << 16;
  return f32[0];
}

/** The IEEE float16 bit pattern nearest to `value`. */
export function float16Bits(value: number): number {
  f32[0] = value;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  let mantissa = bits & 0x007fffff;

  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x0200 : 0); // Inf or NaN
  const e = exponent - 127 + 15; // rebiased exponent
  if (e >= 0x1f) return sign | 0x7c00; // overflow
  if (e <= 0) {
    // Subnormal float16 (or zero): shift the mantissa with its implicit bit into place.
    if (e < -10) return sign; // rounds to zero
    mantissa |= 0x00800000;
    const shift = 14 - e; // 13 bits of float32 extra precision + (1 - e)
    const half = 1 << (shift - 1);
    const rest = mantissa & ((1 << shift) - 1);
    let result = mantissa >>> shift;
    if (rest > half || (rest === half && (result & 1) === 1)) result += 1;
    return sign | result;
  }
  const rest = mantissa & 0x1fff;
  let result = (e << 10) | (mantissa >>> 13);
  if (rest > 0x1000 || (rest === 0x1000 && (result & 1) === 1)) result += 1; // may carry into exponent: still right
  return sign | result;
}

/** The float32 value of a float16 bit pattern (exact). */
export function float16Value(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa !== 0 ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** Float32 values to bfloat16 bit patterns, rounding to nearest even. */
export function float32ToBfloat16(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = bfloat16Bits(values[i]);
  return out;
}

/** Bfloat16 bit patterns to float32 values. */
export function bfloat16ToFloat32(bits: ArrayLike<number>): Float32Array {
  const out = new Float32Array(bits.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) outBits[i] = (bits[i] & 0xffff) << 16;
  return out;
}

/** Float32 values to IEEE float16 bit patterns, rounding to nearest even. */
export function float32ToFloat16(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = float16Bits(values[i]);
  return out;
}

/** IEEE float16 bit patterns to float32 values. */
export function float16ToFloat32(bits: ArrayLike<number>): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = float16Value(bits[i]);
  return out;
}
