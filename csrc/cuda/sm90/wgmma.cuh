#pragma once
// wgmma (PTX ISA 9.7.15, "Asynchronous Warpgroup Level Matrix Multiply-Accumulate Instructions"):
// D (64 x N, fp32) = A (64 x 16) * B (16 x N) + D, bf16 or f16 inputs, issued together by the 128
// threads of a warpgroup (4 consecutive warps, the first a multiple of 4) and run asynchronously:
// wgmma_fence() before the first wgmma and whenever the threads touched its registers since,
// wgmma_commit() closes the issued wgmmas into a group, wgmma_wait<N>() waits until at most N groups
// are pending. Until then the accumulators (and an A in registers) must not be read or written, and
// the shared memory they read must not change.
//
// Shared-memory operands: a 64-bit matrix descriptor (9.7.15.5.1.2.2, "Matrix Descriptor Format"):
// bits 0-13 start address >> 4, 16-29 leading-dimension byte offset (LBO) >> 4, 32-45 stride-dimension
// byte offset (SBO) >> 4, 49-51 base offset (0 here: a swizzled operand starts in the first row of its
// atom), 62-63 swizzle (0 none, 1 128B, 2 64B, 3 32B). The layouts it describes (9.7.15.5.1.2,
// "Shared Memory Matrix Layout"), for 16-bit elements and a swizzle span of S bytes, element (x, k) of
// an operand with x = m (A) or n (B):
//   K-major (trans 0, K contiguous), swizzled: x % 8 picks an S-byte row, k the 2-byte column in it
//     (the 16 k of one instruction must share the row: step k by adding 32 bytes to the start),
//     x / 8 steps by SBO; LBO unused.
//   K-major, no swizzle: 8 x 8 "core matrices" of 16-byte rows (x % 8 the row, k % 8 the column);
//     k / 8 steps by LBO, x / 8 by SBO.
//   MN-major (trans 1, x contiguous), swizzled: k % 8 picks an S-byte row, x % (S / 2) the column,
//     x / (S / 2) steps by LBO, k / 8 by SBO.
//   MN-major, no swizzle: core matrices of 8 k rows of 8 x; x / 8 steps by SBO, k / 8 by LBO.
// and the swizzle of swizzle.h applies to the resulting shared-memory address.
//
// Register fragments (9.7.15.5.1.1.1, "Matrix Fragments for wgmma.mma_async.m64nNk16"), thread t of
// the warpgroup, w = t / 32, g = (t % 32) / 4, q = t % 4:
//   D: d[i] (i < N/2) is element (16w + g + 8 * ((i >> 1) & 1), 8 * (i >> 2) + 2q + (i & 1));
//   A: a[r] (r < 4) holds (16w + g + 8 * (r & 1), 2q + 8 * (r >> 1) + e), e = 0 in the low half, 1 in
//      the high half: the mma.sync m16n8k16 A fragment of warp w's 16 rows.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "cuda/sm90/arch.cuh"
#include "cuda/sm90/swizzle.h"

#if SSD_SM90A
#include "cuda/sm90/wgmma_ops.inc"
#endif

namespace ssd { namespace cuda { namespace sm90 {

// The instruction's imm-trans-a / imm-trans-b.
enum Major : int { kKMajor = 0, kMNMajor = 1 };

// The descriptor of an operand at shared-memory address `smem_address` (16-byte aligned).
__host__ __device__ constexpr uint64_t make_smem_desc(uint32_t smem_address, uint32_t lbo_bytes, uint32_t sbo_bytes,
                                                      Swizzle s) {
  return static_cast<uint64_t>((smem_address & 0x3FFFFu) >> 4) |
         (static_cast<uint64_t>((lbo_bytes & 0x3FFFFu) >> 4) << 16) |
         (static_cast<uint64_t>((sbo_bytes & 0x3FFFFu) >> 4) << 32) |
         (static_cast<uint64_t>(s == Swizzle::k128B ? 1 : s == Swizzle::k64B ? 2 : s == Swizzle::k32B ? 3 : 0) << 62);
}

// The descriptor of an operand whose first element is at p (in this CTA's shared memory).
__device__ __forceinline__ uint64_t smem_desc(const void* p, uint32_t lbo_bytes, uint32_t sbo_bytes, Swizzle s) {
  return make_smem_desc(smem_addr(p), lbo_bytes, sbo_bytes, s);
}

// The descriptor moved `bytes` (a multiple of 16) further in shared memory.
__host__ __device__ constexpr uint64_t desc_advance(uint64_t desc, uint32_t bytes) { return desc + (bytes >> 4); }

// Orders the threads' register accesses before the wgmmas that follow.
__device__ __forceinline__ void wgmma_fence() {
#if SSD_SM90A
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#else
  SSD_SM90A_MISSING();
#endif
}

// Closes the wgmmas issued since the last commit into one group.
__device__ __forceinline__ void wgmma_commit() {
#if SSD_SM90A
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#else
  SSD_SM90A_MISSING();
#endif
}

// Waits until at most N of the newest groups are pending; the others' accumulators are then valid.
template <int N>
__device__ __forceinline__ void wgmma_wait() {
#if SSD_SM90A
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#else
  SSD_SM90A_MISSING();
#endif
}

// Keeps the compiler from moving accesses of these registers across the wgmma statements around it
// (an empty asm that reads and writes each); no instruction.
// R is float (accumulators) or uint32_t (an A operand in registers).
template <class R, int K>
__device__ __forceinline__ void wgmma_hold(R (&r)[K]) {
  static_assert(std::is_same<R, float>::value || std::is_same<R, uint32_t>::value, "float or uint32_t registers");
#if SSD_SM90A
#pragma unroll
  for (int i = 0; i < K; ++i) {
    if constexpr (std::is_same<R, float>::value) asm volatile("" : "+f"(r[i])::"memory");
    else asm volatile("" : "+r"(r[i])::"memory");
  }
#endif
}

template <class T, int N>
__host__ __device__ constexpr bool wgmma_shape_ok() {
  return (std::is_same<T, __nv_bfloat16>::value || std::is_same<T, __half>::value) &&
         (N == 32 || N == 64 || N == 128 || N == 192 || N == 256);
}

// The statement of wgmma_ops.inc of kind K (SS or RS) for the enclosing template's N.
#define SSD_WGMMA_FOR_N(K, TY, ...)                     \
  if constexpr (N == 32) {                              \
    SSD_WGMMA_##K##_N32(TY, __VA_ARGS__);               \
  } else if constexpr (N == 64) {                       \
    SSD_WGMMA_##K##_N64(TY, __VA_ARGS__);               \
  } else if constexpr (N == 128) {                      \
    SSD_WGMMA_##K##_N128(TY, __VA_ARGS__);              \
  } else if constexpr (N == 192) {                      \
    SSD_WGMMA_##K##_N192(TY, __VA_ARGS__);              \
  } else {                                              \
    SSD_WGMMA_##K##_N256(TY, __VA_ARGS__);              \
  }

// d = A * B + (accumulate ? d : 0), A and B in shared memory. kTransA / kTransB: kKMajor or kMNMajor;
// kScaleA / kScaleB: 1, or -1 to negate that operand.
template <class T, int N, int kTransA = kKMajor, int kTransB = kKMajor, int kScaleA = 1, int kScaleB = 1>
__device__ __forceinline__ void wgmma_ss(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b, bool accumulate) {
  static_assert(wgmma_shape_ok<T, N>(), "wgmma: bf16 or f16, N in {32, 64, 128, 192, 256}");
  static_assert((kScaleA == 1 || kScaleA == -1) && (kScaleB == 1 || kScaleB == -1), "wgmma: scale 1 or -1");
#if SSD_SM90A
  const int scale_d = accumulate ? 1 : 0;
  if constexpr (std::is_same<T, __nv_bfloat16>::value) {
    SSD_WGMMA_FOR_N(SS, "bf16", d, desc_a, desc_b, scale_d, kScaleA, kScaleB, kTransA, kTransB)
  } else {
    SSD_WGMMA_FOR_N(SS, "f16", d, desc_a, desc_b, scale_d, kScaleA, kScaleB, kTransA, kTransB)
  }
#else
  SSD_SM90A_MISSING();
#endif
}

// d = A * B + (accumulate ? d : 0), A from the registers a (the fragment above), B in shared memory.
template <class T, int N, int kTransB = kKMajor, int kScaleA = 1, int kScaleB = 1>
__device__ __forceinline__ void wgmma_rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t desc_b, bool accumulate) {
  static_assert(wgmma_shape_ok<T, N>(), "wgmma: bf16 or f16, N in {32, 64, 128, 192, 256}");
  static_assert((kScaleA == 1 || kScaleA == -1) && (kScaleB == 1 || kScaleB == -1), "wgmma: scale 1 or -1");
#if SSD_SM90A
  const int scale_d = accumulate ? 1 : 0;
  if constexpr (std::is_same<T, __nv_bfloat16>::value) {
    SSD_WGMMA_FOR_N(RS, "bf16", d, a, desc_b, scale_d, kScaleA, kScaleB, kTransB)
  } else {
    SSD_WGMMA_FOR_N(RS, "f16", d, a, desc_b, scale_d, kScaleA, kScaleB, kTransB)
  }
#else
  SSD_SM90A_MISSING();
#endif
}

#undef SSD_WGMMA_FOR_N

}}}  // namespace ssd::cuda::sm90
