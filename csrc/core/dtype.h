// The dtype table: the element types of SsdDtype (include/ssd_kernels.h) that a float tensor may
// have, one row each, with everything the native code knows of them. Every place in csrc/ and
// bench/cuda/ that depends on a dtype reads this table, so a new dtype takes three files: its SsdDtype
// value in include/ssd_kernels.h, its row here (a line of SSD_FOR_EACH_DTYPE and its DtypeConv
// below), and its row in lib/rules.ts (csrc/README.md, "Where things go").
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "ssd_kernels.h"

// A row's device half (its CUDA type and conversions) exists where CUDA code is compiled: under nvcc,
// and in the CPU emulation of the CUDA kernels (bench/cuda/emu), which defines SSD_EMULATED_CUDA.
#if defined(__CUDACC__) || defined(SSD_EMULATED_CUDA)
#define SSD_DTYPE_DEVICE 1
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#define SSD_DTYPE_FN __host__ __device__ __forceinline__
#define SSD_DTYPE_DEV __device__ __forceinline__
#else
#define SSD_DTYPE_DEVICE 0
// Always inlined: the CPU kernels are compiled once per instruction set, each copy with its own
// flags, and must not call a copy of these that another instruction set's flags built.
#define SSD_DTYPE_FN inline __attribute__((always_inline))
#endif

// The rows, X(code, name, ptx, mma, step):
//   code  the SsdDtype value
//   name  the name, as lib/rules.ts and the messages spell it
//   ptx   the PTX type name: mma.sync's instruction is spelt with it, and it names the CUDA compute
//         paths ("bf16-mma", "f32-fma") and the dtypes in the harnesses' output
//   mma   1 where mma.sync m16n8k16 takes it (a 16-bit type): x, B and C all of this dtype run the
//         CUDA kernels' tensor-core path of it; any other mix runs their fp32 emulation of the mma
//   step  1 where the decode step may keep its state in it (the CUDA step also has a vector path
//         for x, B, C, z and y all of this dtype)
// Order: a dispatch on a dtype (visit_dtype) tests the rows in this order and takes the last one
// untested, so float32, the type the kernels compute in, stays last.
#define SSD_FOR_EACH_DTYPE(X)                \
  X(SSD_BFLOAT16, "bfloat16", "bf16", 1, 1)  \
  X(SSD_FLOAT16, "float16", "f16", 1, 0)     \
  X(SSD_FLOAT32, "float32", "f32", 0, 1)

namespace ssd {

SSD_DTYPE_FN float f32_from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
SSD_DTYPE_FN uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

// A row's conversions (DtypeOf adds the columns above):
//   Bits                     the storage type on the host (CPU kernels, binding)
//   to_float(Bits)           exact
//   from_float(float)        round to nearest even, NaN kept (quiet)
// where CUDA code is compiled, also
//   Device                   the CUDA type (the kernels' template argument)
//   dev_to_float, dev_from_float   the same conversions in CUDA's intrinsics
// and for an mma dtype
//   dev_unpack2(uint32_t) -> float2, dev_pack2(float lo, float hi) -> uint32_t: two elements in one
//                            register, lo in the low half (device code only)
//   kSaturate                the bound that mma operands and the 16-bit kernels' packed stores are
//                            clamped to before rounding (0: none)
template <SsdDtype C>
struct DtypeConv;

#if SSD_DTYPE_DEVICE
// The device half of a 16-bit row in CUDA's names: its type T and pair type T2 (two in a register,
// the first in the low half), their conversions to float (TO_F, TO_F2) and from float (FROM_F,
// FROM_F2, rounding to nearest even), and kSaturate.
#define SSD_DTYPE_DEVICE_16(T, T2, TO_F, FROM_F, TO_F2, FROM_F2, SATURATE) \
  using Device = T;                                                         \
  static constexpr float kSaturate = SATURATE;                              \
  static SSD_DTYPE_FN float dev_to_float(T v) { return TO_F(v); }           \
  static SSD_DTYPE_FN T dev_from_float(float v) { return FROM_F(v); }       \
  static SSD_DTYPE_DEV float2 dev_unpack2(uint32_t u) {                     \
    T2 h = *reinterpret_cast<T2*>(&u);                                      \
    return TO_F2(h);                                                        \
  }                                                                         \
  static SSD_DTYPE_DEV uint32_t dev_pack2(float lo, float hi) {             \
    T2 h = FROM_F2(lo, hi);                                                 \
    return *reinterpret_cast<uint32_t*>(&h);                                \
  }
#endif

template <>
struct DtypeConv<SSD_BFLOAT16> {
  using Bits = uint16_t;
  static SSD_DTYPE_FN float to_float(uint16_t h) { return f32_from_bits((uint32_t)h << 16); }
  static SSD_DTYPE_FN uint16_t from_float(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40u);  // quiet NaN
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
  }
#if SSD_DTYPE_DEVICE
  SSD_DTYPE_DEVICE_16(__nv_bfloat16, __nv_bfloat162, __bfloat162float, __float2bfloat16_rn, __bfloat1622float2,
                      __floats2bfloat162_rn, 0.f)
#endif
};

template <>
struct DtypeConv<SSD_FLOAT16> {
  using Bits = uint16_t;
  static SSD_DTYPE_FN float to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t ex = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
    if (ex == 0) {
      if (man == 0) return f32_from_bits(sign);
      return f32_from_bits(f32_bits((float)man * 5.9604644775390625e-8f) | sign);  // man * 2^-24
    }
    if (ex == 31) return f32_from_bits(sign | 0x7F800000u | (man << 13));
    return f32_from_bits(sign | ((ex + 112u) << 23) | (man << 13));
  }
  static SSD_DTYPE_FN uint16_t from_float(float f) {
    const uint32_t u = f32_bits(f);
    const uint32_t sign = (u >> 16) & 0x8000u;
    const uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return (uint16_t)(sign | 0x7E00u | ((a >> 13) & 0x3FFu));  // NaN
    if (a >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u);  // >= 65520 rounds to inf
    if (a >= 0x38800000u) {                                   // normal half
      const uint32_t r = a + 0xC8000FFFu + ((a >> 13) & 1u);  // rebias exponent, round half even
      return (uint16_t)(sign | (r >> 13));
    }
    // subnormal half (or zero): round a * 2^24 to an integer, ties to even (exact product)
    const float m = f32_from_bits(a) * 16777216.0f;
    uint32_t r = (uint32_t)m;
    const float frac = m - (float)r;
    if (frac > 0.5f || (frac == 0.5f && (r & 1u))) ++r;
    return (uint16_t)(sign | r);
  }
#if SSD_DTYPE_DEVICE
  // saturating at 65504: a scaled operand can exceed the range, and must not become Inf
  SSD_DTYPE_DEVICE_16(__half, __half2, __half2float, __float2half_rn, __half22float2, __floats2half2_rn, 65504.f)
#endif
};

template <>
struct DtypeConv<SSD_FLOAT32> {
  using Bits = float;
  static SSD_DTYPE_FN float to_float(float v) { return v; }
  static SSD_DTYPE_FN float from_float(float v) { return v; }
#if SSD_DTYPE_DEVICE
  using Device = float;
  static SSD_DTYPE_FN float dev_to_float(float v) { return v; }
  static SSD_DTYPE_FN float dev_from_float(float v) { return v; }
#endif
};

// ---- the columns, by code ------------------------------------------------------------------------

// Whether t is a code of the table (a dtype the kernels read and write: x, dt, B, C, z, y and their
// gradients).
constexpr bool is_float_dtype(SsdDtype t) {
#define SSD_DTYPE_ROW(code, name, ptx, mma, step) t == code ||
  return SSD_FOR_EACH_DTYPE(SSD_DTYPE_ROW) false;
#undef SSD_DTYPE_ROW
}

// Bytes per element (0 for an unknown code).
constexpr int64_t dtype_bytes(SsdDtype t) {
#define SSD_DTYPE_ROW(code, name, ptx, mma, step) t == code ? (int64_t)sizeof(DtypeConv<code>::Bits) :
  return SSD_FOR_EACH_DTYPE(SSD_DTYPE_ROW) 0;
#undef SSD_DTYPE_ROW
}

constexpr const char* dtype_name(SsdDtype t) {
#define SSD_DTYPE_ROW(code, name, ptx, mma, step) t == code ? name :
  return SSD_FOR_EACH_DTYPE(SSD_DTYPE_ROW) "unknown";
#undef SSD_DTYPE_ROW
}

// The PTX type name ("bf16", "f16", "f32").
constexpr const char* dtype_ptx(SsdDtype t) {
#define SSD_DTYPE_ROW(code, name, ptx, mma, step) t == code ? ptx :
  return SSD_FOR_EACH_DTYPE(SSD_DTYPE_ROW) "unknown";
#undef SSD_DTYPE_ROW
}

// Whether mma.sync takes it (the mma column).
constexpr bool dtype_mma(SsdDtype t) {
#define SSD_DTYPE_ROW(code, name, ptx, mma, step) t == code ? mma != 0 :
  return SSD_FOR_EACH_DTYPE(SSD_DTYPE_ROW) false;
#undef SSD_DTYPE_ROW
}

// Whether the step may keep its state in it (the step column).
constexpr bool dtype_step(SsdDtype t) {
#define SSD_DTYPE_ROW(code, name, ptx, mma, step) t == code ? step != 0 :
  return SSD_FOR_EACH_DTYPE(SSD_DTYPE_ROW) false;
#undef SSD_DTYPE_ROW
}

// The name of the CUDA compute path of dtype t's kernels: "<ptx>-mma" for an mma dtype, else
// "<ptx>-fma" (float32's: "f32-fma", the fp32 emulation of the mma).
constexpr const char* dtype_path_name(SsdDtype t) {
#define SSD_DTYPE_ROW(code, name, ptx, mma, step) t == code ? (mma ? ptx "-mma" : ptx "-fma") :
  return SSD_FOR_EACH_DTYPE(SSD_DTYPE_ROW) "unknown";
#undef SSD_DTYPE_ROW
}

// The codes, in table order.
constexpr SsdDtype kDtypes[] = {
#define SSD_DTYPE_ROW(code, name, ptx, mma, step) code,
    SSD_FOR_EACH_DTYPE(SSD_DTYPE_ROW)
#undef SSD_DTYPE_ROW
};
constexpr int kDtypeCount = int(sizeof(kDtypes) / sizeof(kDtypes[0]));

// The names of the dtypes that `keep` takes, in SsdDtype order, for messages: "float32 or bfloat16".
inline std::string dtype_names(bool (*keep)(SsdDtype)) {
  std::string out, last;
  for (int code = 0, n = 0; n < kDtypeCount; ++code) {
    if (!is_float_dtype(SsdDtype(code))) continue;
    ++n;
    if (!keep(SsdDtype(code))) continue;
    if (!last.empty()) out += out.empty() ? last : ", " + last;
    last = dtype_name(SsdDtype(code));
  }
  return out.empty() ? last : out + " or " + last;
}

// ---- the rows as types ---------------------------------------------------------------------------

// Row C: its conversions and its columns.
template <SsdDtype C>
struct DtypeOf : DtypeConv<C> {
  static constexpr SsdDtype kCode = C;
  static constexpr int kBytes = int(sizeof(typename DtypeConv<C>::Bits));
  static constexpr bool kMma = dtype_mma(C);
  static constexpr bool kStep = dtype_step(C);
};

// Predicates on a row, for visit_dtype: every row, the 2-byte rows, the rows of the step column.
template <class D>
struct AnyDtype : std::true_type {};
template <class D>
struct Dtype16 : std::bool_constant<D::kBytes == 2> {};
template <class D>
struct StepDtype : std::bool_constant<D::kStep> {};

// The index of the first row from the I-th on that Keep takes (kDtypeCount if none).
template <template <class> class Keep, int I = 0, bool kEnd = I == kDtypeCount>
struct FirstDtype
    : std::integral_constant<int, Keep<DtypeOf<kDtypes[I]>>::value ? I : FirstDtype<Keep, I + 1>::value> {};
template <template <class> class Keep, int I>
struct FirstDtype<Keep, I, true> : std::integral_constant<int, I> {};

// f(DtypeOf<t>()) for the row of t among those that Keep: they are tested in table order and the
// last one is taken untested, so t must be one of them (the parameter check sees to it; float32 is
// the last row of all). f is a host or a device function (nvcc's execution-space check is off for
// this template: it runs where its caller runs).
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <template <class> class Keep = AnyDtype, int I = 0, class F>
SSD_DTYPE_FN decltype(auto) visit_dtype(SsdDtype t, F&& f) {
  using D = DtypeOf<kDtypes[I]>;
  if constexpr (!Keep<D>::value) {
    return visit_dtype<Keep, I + 1>(t, static_cast<F&&>(f));
  } else if constexpr (FirstDtype<Keep, I + 1>::value == kDtypeCount) {
    return f(D());
  } else {
    if (t == D::kCode) return f(D());
    return visit_dtype<Keep, I + 1>(t, static_cast<F&&>(f));
  }
}

// f(DtypeOf<c>()) for every row c, in table order (host code).
template <int I = 0, class F>
inline void for_each_dtype(F&& f) {
  if constexpr (I < kDtypeCount) {
    f(DtypeOf<kDtypes[I]>());
    for_each_dtype<I + 1>(static_cast<F&&>(f));
  }
}

#if SSD_DTYPE_DEVICE
// The row whose CUDA type is T.
template <class T, int I = 0>
struct DtypeOfDevice
    : std::conditional_t<std::is_same<typename DtypeConv<kDtypes[I]>::Device, T>::value, DtypeOf<kDtypes[I]>,
                         DtypeOfDevice<T, I + 1>> {};
#endif

}  // namespace ssd
