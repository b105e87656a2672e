#pragma once
// Warp-level tile helpers of the CUDA forward: fragments of mma.sync m16n8k16 (fp32 accumulate),
// loaded from shared memory with ldmatrix, plus an fp32 emulation with the same accumulator
// layout (plain FMA, used when the inputs are float32).
//
// Notation: lane = threadIdx.x % 32, g = lane / 4, t = lane % 4.
//  A fragment (16x16, m x k), 16-bit types: 4 registers of 2 elements each,
//     reg r, half e -> row g + 8*(r & 1), col 2t + e + 8*(r >> 1)     (low half = e = 0)
//  B fragment (16x8, k x n), 16-bit types: 2 registers,
//     reg r, half e -> k 2t + e + 8*r, n g
//  C / accumulator (16x8 fp32): c[q] -> row g + 8*(q >> 1), col 2t + (q & 1)
//  float "fragments" (emulation): A.v[i] -> row g + 8*(i >> 4), col i & 15 (rows g and g+8, all k)
//                                 B.v[i] -> n 2t + (i >> 4), k i & 15    (cols 2t and 2t+1, all k)
//  so that the emulated product fills exactly the accumulator layout above.
//
// Shared-memory layouts (ld = row pitch in elements; rows must start 16-byte aligned for ldmatrix):
//  A: kMK -> A[m][k] at m*ld + k        kKM -> A[m][k] at k*ld + m
//  B: kNK -> B[k][n] at n*ld + k        kKN -> B[k][n] at k*ld + n
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include <type_traits>

#include "core/dtype.h"

namespace ssd { namespace cuda { namespace mma {

using bf16 = __nv_bfloat16;
using f16 = __half;

enum ALayout { kMK = 0, kKM = 1 };
enum BLayout { kNK = 0, kKN = 1 };

template <class T> struct FragA { uint32_t r[4]; };
template <> struct FragA<float> { float v[32]; };
template <class T> struct FragB { uint32_t r[2]; };
template <> struct FragB<float> { float v[32]; };

__device__ __forceinline__ int lane_id() { return threadIdx.x & 31; }

// ---- conversions ---------------------------------------------------------------------------
// T's row of the dtype table (core/dtype.h) converts; values that become operands, and the packed
// 16-bit stores, are first clamped to the row's kSaturate where it has one (float16: a scaled
// operand can exceed its range, and saturates instead of producing Inf). A NaN stays NaN: it fails
// the comparison (fminf/fmaxf would have replaced it by the bound).
template <class T>
__device__ __forceinline__ float saturate(float v) {
  constexpr float kMax = DtypeOfDevice<T>::kSaturate;
  if constexpr (kMax > 0.f) return fabsf(v) > kMax ? copysignf(kMax, v) : v;
  else return v;
}
template <class T>
__device__ __forceinline__ T from_float(float v) {
  if constexpr (std::is_same<T, float>::value) return v;
  else return DtypeOfDevice<T>::dev_from_float(saturate<T>(v));
}
template <class T>
__device__ __forceinline__ float to_float(T v) { return DtypeOfDevice<T>::dev_to_float(v); }

// Two floats -> one register of two 16-bit values, lo in the low half.
template <class T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  return DtypeOfDevice<T>::dev_pack2(saturate<T>(lo), saturate<T>(hi));
}
template <class T>
__device__ __forceinline__ float2 unpack2(uint32_t u) { return DtypeOfDevice<T>::dev_unpack2(u); }

// ---- ldmatrix ----------------------------------------------------------------------------
__device__ __forceinline__ void ldsm_x4(uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3,
                                       const void* p) {
  uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(a));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3,
                                         const void* p) {
  uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(a));
}

// stmatrix (sm_90 and later): the inverse of ldsm_x4, four 8x8 matrices of 16-bit values to shared
// memory; lane 8m + i addresses row i of matrix m, and register m of lane L holds row L/4, columns
// 2(L%4), +1 of matrix m.
__device__ __forceinline__ void stsm_x4(void* p, uint32_t r0, uint32_t r1, uint32_t r2, uint32_t r3) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1,%2,%3,%4};\n" ::"r"(a), "r"(r0), "r"(r1), "r"(r2), "r"(r3)
               : "memory");
#elif defined(__CUDA_ARCH__)
  __trap();
#endif
}

// Load the 16x16 A tile whose element (0,0) is logical A[m0][k0].
template <class T, int L>
__device__ __forceinline__ void ldA(FragA<T>& a, const T* s, int ld, int m0, int k0) {
  const int lane = lane_id();
  if constexpr (sizeof(T) == 2) {
    const int q = lane >> 3, rr = lane & 7;
    // ldmatrix matrices: 0 = (m 0-7, k 0-7), 1 = (m 8-15, k 0-7), 2 = (m 0-7, k 8-15), 3 = (m 8-15, k 8-15)
    if constexpr (L == kMK) {
      const T* p = s + (m0 + rr + 8 * (q & 1)) * ld + k0 + 8 * (q >> 1);
      ldsm_x4(a.r[0], a.r[1], a.r[2], a.r[3], p);
    } else {
      const T* p = s + (k0 + rr + 8 * (q >> 1)) * ld + m0 + 8 * (q & 1);
      ldsm_x4_t(a.r[0], a.r[1], a.r[2], a.r[3], p);
    }
  } else {
    const int g = lane >> 2;
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const int m = m0 + g + 8 * (i >> 4), k = k0 + (i & 15);
      a.v[i] = (L == kMK) ? s[m * ld + k] : s[k * ld + m];
    }
  }
}

// Load two adjacent 16x8 B tiles: b0 = B[k0..k0+15][n0..n0+7], b1 = B[k0..][n0+8..n0+15].
template <class T, int L>
__device__ __forceinline__ void ldB2(FragB<T>& b0, FragB<T>& b1, const T* s, int ld, int k0, int n0) {
  const int lane = lane_id();
  if constexpr (sizeof(T) == 2) {
    const int q = lane >> 3, rr = lane & 7;
    // matrices: 0 = (tile 0, k 0-7), 1 = (tile 0, k 8-15), 2 = (tile 1, k 0-7), 3 = (tile 1, k 8-15)
    if constexpr (L == kNK) {
      const T* p = s + (n0 + rr + 8 * (q >> 1)) * ld + k0 + 8 * (q & 1);
      ldsm_x4(b0.r[0], b0.r[1], b1.r[0], b1.r[1], p);
    } else {
      const T* p = s + (k0 + rr + 8 * (q & 1)) * ld + n0 + 8 * (q >> 1);
      ldsm_x4_t(b0.r[0], b0.r[1], b1.r[0], b1.r[1], p);
    }
  } else {
    const int t = lane & 3;
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const int n = n0 + 2 * t + (i >> 4), k = k0 + (i & 15);
      b0.v[i] = (L == kNK) ? s[n * ld + k] : s[k * ld + n];
      b1.v[i] = (L == kNK) ? s[(n + 8) * ld + k] : s[k * ld + n + 8];
    }
  }
}

// Build an A fragment from a function f(row, col) -> float2 giving logical elements
// (row, col) and (row, col + 1) of the 16x16 tile; col is always even.
template <class T, class F>
__device__ __forceinline__ void buildA(FragA<T>& a, F&& f) {
  const int lane = lane_id();
  const int g = lane >> 2, t = lane & 3;
  if constexpr (sizeof(T) == 2) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const float2 v = f(g + 8 * (r & 1), 2 * t + 8 * (r >> 1));
      a.r[r] = pack2<T>(v.x, v.y);
    }
  } else {
#pragma unroll
    for (int i = 0; i < 32; i += 2) {
      const float2 v = f(g + 8 * (i >> 4), i & 15);
      a.v[i] = v.x;
      a.v[i + 1] = v.y;
    }
  }
}

// c += a * b (16x8x16), fp32 accumulate: one mma.sync for each dtype of the table with mma 1,
// spelt with its PTX type name.
#define SSD_MMA_16BIT(code, name, ptx, mma_, step) SSD_MMA_16BIT_##mma_(code, ptx)
#define SSD_MMA_16BIT_0(code, ptx)
#define SSD_MMA_16BIT_1(code, ptx)                                                          \
  __device__ __forceinline__ void mma(float c[4], const FragA<typename DtypeOf<code>::Device>& a, \
                                      const FragB<typename DtypeOf<code>::Device>& b) {     \
    asm("mma.sync.aligned.m16n8k16.row.col.f32." ptx "." ptx ".f32 "                        \
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"                           \
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                                    \
        : "r"(a.r[0]), "r"(a.r[1]), "r"(a.r[2]), "r"(a.r[3]), "r"(b.r[0]), "r"(b.r[1]));    \
  }
SSD_FOR_EACH_DTYPE(SSD_MMA_16BIT)
#undef SSD_MMA_16BIT_0
#undef SSD_MMA_16BIT_1
#undef SSD_MMA_16BIT
// The fp32 path: the same product in fp32 FMAs.
__device__ __forceinline__ void mma(float c[4], const FragA<float>& a, const FragB<float>& b) {
#pragma unroll
  for (int k = 0; k < 16; ++k) {
    c[0] = fmaf(a.v[k], b.v[k], c[0]);
    c[1] = fmaf(a.v[k], b.v[16 + k], c[1]);
    c[2] = fmaf(a.v[16 + k], b.v[k], c[2]);
    c[3] = fmaf(a.v[16 + k], b.v[16 + k], c[3]);
  }
}


// acc[2np], acc[2np + 1] += a · B (k = k0..k0+15, n = 16np..16np+15) for each 16-column pair np whose
// first column is below nv; B in shared memory with layout L and pitch ldb. NC: the tile's columns.
template <int L, int NC, class T>
__device__ __forceinline__ void mma_cols(float (&acc)[NC / 8][4], const FragA<T>& a, const T* Bs, int ldb, int k0,
                                         int nv) {
#pragma unroll
  for (int np = 0; np < NC / 16; ++np) {
    if (16 * np < nv) {
      FragB<T> b0, b1;
      ldB2<T, L>(b0, b1, Bs, ldb, k0, 16 * np);
      mma(acc[2 * np], a, b0);
      mma(acc[2 * np + 1], a, b1);
    }
  }
}

// Row g (hr = 0) or g + 8 (hr = 1) of a warp's accumulator tile (the mma C layout) times f.
template <int NT>
__device__ __forceinline__ void scale_row(float (&acc)[NT][4], int hr, float f) {
#pragma unroll
  for (int c = 0; c < NT; ++c) {
    acc[c][2 * hr] *= f;
    acc[c][2 * hr + 1] *= f;
  }
}

template <int NT>
__device__ __forceinline__ void zero_acc(float (&acc)[NT][4]) {
#pragma unroll
  for (int c = 0; c < NT; ++c)
#pragma unroll
    for (int q = 0; q < 4; ++q) acc[c][q] = 0.f;
}

}}}  // namespace ssd::cuda::mma
