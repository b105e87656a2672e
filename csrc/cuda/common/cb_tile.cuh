// The C·Bᵀ tiles of a chunk, computed by the forward's first launch and the backward's (each for its
// own later launches): for a lower-triangular BB × BB block (ib, jb) of the chunk, the fp32 tile
// C_i · B_jᵀ over dstate. Four warps as 2 × 2 of 32 × 32; acc[mt][nt] is the mma C layout of rows
// 32 wm + 16 mt, columns 32 wn + 8 nt.
#pragma once
#include "cuda/common/device.cuh"
#include "cuda/common/mma.cuh"

namespace ssd { namespace cuda { namespace dev {

// Lower-triangular block number tri (row-major over the triangle) -> row block ib, column block jb <= ib.
__device__ __forceinline__ void tri_block(int tri, int& ib, int& jb) {
  ib = 0;
  while (tri > ib) {
    tri -= ib + 1;
    ++ib;
  }
  jb = tri;
}

// acc += one K block (ncv <= 64 columns of dstate) of C (Cs[i][n], kMK) times Bᵀ (Bs[j][n], kNK), pitch LD.
template <int LD, class T>
__device__ __forceinline__ void cb_kblock(float (&acc)[2][4][4], const T* Cs, const T* Bs, int ncv, int wm, int wn) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    if (16 * kk < ncv) {
      mma::FragA<T> a[2];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) mma::ldA<T, mma::kMK>(a[mt], Cs, LD, 32 * wm + 16 * mt, 16 * kk);
#pragma unroll
      for (int np = 0; np < 2; ++np) {
        mma::FragB<T> b0, b1;
        mma::ldB2<T, mma::kNK>(b0, b1, Bs, LD, 16 * kk, 32 * wn + 16 * np);
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          mma::mma(acc[mt][2 * np], a[mt], b0);
          mma::mma(acc[mt][2 * np + 1], a[mt], b1);
        }
      }
    }
  }
}

// The 64 × 64 tile in fragment order (cb_frag_offset) at out; every warp writes its quarter.
__device__ __forceinline__ void cb_store_frag(float* out, const float (&acc)[2][4][4], int wm, int wn) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int np = 0; np < 2; ++np) {
      float4* o = reinterpret_cast<float4*>(out + cb_frag_offset(2 * wm + mt, 2 * wn + np, lane));
      o[0] = make_float4(acc[mt][2 * np][0], acc[mt][2 * np][1], acc[mt][2 * np][2], acc[mt][2 * np][3]);
      o[1] = make_float4(acc[mt][2 * np + 1][0], acc[mt][2 * np + 1][1], acc[mt][2 * np + 1][2],
                         acc[mt][2 * np + 1][3]);
    }
}

// The BB × BB tile row-major (pitch BB) at out: the rows and columns below BB.
__device__ __forceinline__ void cb_store_rows(float* out, const float (&acc)[2][4][4], int BB, int wm, int wn) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int nt = 0; nt < 4; ++nt)
#pragma unroll
      for (int hr = 0; hr < 2; ++hr) {
        const int r = 32 * wm + 16 * mt + g + 8 * hr;
        const int c = 32 * wn + 8 * nt + 2 * t4;
        if (r < BB && c < BB)
          *reinterpret_cast<float2*>(out + r * BB + c) = make_float2(acc[mt][nt][2 * hr], acc[mt][nt][2 * hr + 1]);
      }
}

}}}  // namespace ssd::cuda::dev
