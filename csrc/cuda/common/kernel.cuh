// What every chunked kernel header (forward and backward) starts from: the device helpers, the mma
// wrappers, the position records, and the launch constants both passes use.
#pragma once
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>

#include "cuda/common/cb_tile.cuh"
#include "cuda/common/chunk.cuh"
#include "cuda/common/device.cuh"
#include "cuda/common/mma.cuh"

namespace ssd { namespace cuda {
namespace {

using namespace dev;
using mma::bf16;
using mma::f16;
using mma::FragA;
using mma::FragB;
using mma::scale_row;
using mma::zero_acc;

constexpr int kThreads = 128;  // 4 warps: the block of every chunked launch but the state passes
constexpr int kMaxQ = 256;     // the largest chunk size

// ---- cp.async: 16-byte copies global -> shared, zero-filling past the valid bytes ----------------
// One copy into shared address d; bytes < 16 copies that many and zero-fills the rest (bytes 0: no
// global read, src only needs to be a valid address). The caller commits and waits.
__device__ __forceinline__ void cp_async16(uint32_t d, const void* src, int bytes = 16) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp16(void* dst, const void* src, int bytes) {
  cp_async16(static_cast<uint32_t>(__cvta_generic_to_shared(dst)), src, bytes);
}
// ROWS rows x COLS (16-bit) of a row-strided global tensor -> shared dst[r*LD + c], by the NTH threads
// of the block; rows >= nvalid are zero-filled (no global read). src points at row 0 (a valid row).
// Thread tid copies rows tid / (COLS / 8) + u * RPI, columns (tid % (COLS / 8)) * 8.
template <int COLS, int LD, int ROWS = 64, int NTH = kThreads, class T>
__device__ __forceinline__ void cp_tile(T* dst, const T* src, int64_t rs, int nvalid) {
  constexpr int VPR = COLS / 8;   // 16-byte vectors per row
  constexpr int RPI = NTH / VPR;  // rows per pass of the block
  static_assert(NTH % VPR == 0 && ROWS % RPI == 0, "tile shape");
  const int r0 = threadIdx.x / VPR, c = (threadIdx.x % VPR) * 8;
  const T* s = src + r0 * rs + c;
  const int64_t step = RPI * rs;
  uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst + r0 * LD + c));
#pragma unroll
  for (int u = 0; u < ROWS / RPI; ++u) {
    const bool ok = r0 + u * RPI < nvalid;
    cp_async16(d, ok ? s : src, ok ? 16 : 0);
    s += step;
    d += RPI * LD * 2;
  }
}

}  // namespace
}}  // namespace ssd::cuda
