// Device helpers shared by the CUDA kernels (forward, backward, step): element access of
// any dtype, the MUFU sigmoid / exp2, the C·Bᵀ fragment order, cp.async group control and programmatic
// dependent launch (device side, and the host's launch helper). Everything is inline, so each
// translation unit gets its own copy.
#pragma once
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "ssd_kernels.h"
#include "core/dtype.h"
#include "cuda/common/mma.cuh"

namespace ssd { namespace cuda { namespace dev {

__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int64_t lmin(int64_t a, int64_t b) { return a < b ? a : b; }
__device__ __forceinline__ int64_t lmax(int64_t a, int64_t b) { return a > b ? a : b; }

// Whether every row of a tensor with innermost-contiguous 16-bit rows starts 16-byte aligned: base
// 16-byte aligned, each stride a multiple of 8 elements (16-byte loads and stores of whole rows).
__host__ __device__ inline bool rows16(const void* base, int64_t s0, int64_t s1, int64_t s2) {
  return ((reinterpret_cast<uintptr_t>(base) & 15) | ((s0 | s1 | s2) & 7)) == 0;
}

// Fragment order of a 64 × 64 fp32 tile (the forward's C·Bᵀ for its fixed scan, the backward's copies
// for its fixed launches): 16 × 16 sub-tile (r16, c16), lane (g = lane / 4, t4 = lane % 4), then that
// lane's 8 values of the mma A fragment,
//   (g, 2t4 .. +1), (g + 8, 2t4 .. +1), (g, 2t4 + 8 .. +9), (g + 8, 2t4 + 8 .. +9),
// so that a warp reads one sub-tile's A fragments as 1 KiB of consecutive float4.
__device__ __forceinline__ int cb_frag_offset(int r16, int c16, int lane) { return ((r16 * 4 + c16) * 32 + lane) * 8; }

// One warp's row of 16 × 16 sub-tiles (kk = 0..3) of a 64 × 64 C·Bᵀ tile stored in fragment order, as
// the float2 pairs of its mma A fragments (index hr + 2·c8: rows g (+8), columns 16kk + 2t4 (+8)).
// `lane_tile` points at the tile plus cb_frag_offset(warp, 0, lane). On a diagonal tile (lower) the
// sub-tiles right of the warp's own are zeros and not read.
__device__ __forceinline__ void ld_cb_frags(const float* lane_tile, bool lower, int warp, float2 (&cbv)[4][4]) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    float4 f0 = make_float4(0.f, 0.f, 0.f, 0.f), f1 = f0;
    if (!lower || kk <= warp) {
      const float4* c4 = reinterpret_cast<const float4*>(lane_tile + cb_frag_offset(0, kk, 0));
      f0 = __ldg(c4);
      f1 = __ldg(c4 + 1);
    }
    cbv[kk][0] = make_float2(f0.x, f0.y);
    cbv[kk][1] = make_float2(f0.z, f0.w);
    cbv[kk][2] = make_float2(f1.x, f1.y);
    cbv[kk][3] = make_float2(f1.z, f1.w);
  }
}

// One element of any dtype, as float / from float (round to nearest even).
__device__ __forceinline__ float ld_f(const void* p, SsdDtype t, int64_t i) {
  return visit_dtype(t, [&](auto d) {
    using D = decltype(d);
    return D::dev_to_float(static_cast<const typename D::Device*>(p)[i]);
  });
}
__device__ __forceinline__ void st_f(void* p, SsdDtype t, int64_t i, float v) {
  visit_dtype(t, [&](auto d) {
    using D = decltype(d);
    static_cast<typename D::Device*>(p)[i] = D::dev_from_float(v);
  });
}

// 8 consecutive elements (n <= 8 valid, the rest 0) of any dtype to float and back; vec = one aligned
// 16-byte access (two for fp32), which the host sets only for float32 and the 2-byte dtypes
// (host.h: vec_elems).
__device__ __forceinline__ void ld8(const void* p, SsdDtype t, int64_t off, int n, bool vec, float f[8]) {
  if (vec && n == 8) {
    if (t == SSD_FLOAT32) {
      const float4 a = __ldg(reinterpret_cast<const float4*>(static_cast<const float*>(p) + off));
      const float4 b = __ldg(reinterpret_cast<const float4*>(static_cast<const float*>(p) + off) + 1);
      f[0] = a.x; f[1] = a.y; f[2] = a.z; f[3] = a.w; f[4] = b.x; f[5] = b.y; f[6] = b.z; f[7] = b.w;
    } else {
      const uint4 u = __ldg(reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(p) + off));
      const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        float2 v;
        visit_dtype<Dtype16>(t, [&](auto d) { v = mma::unpack2<typename decltype(d)::Device>(w[q]); });
        f[2 * q] = v.x;
        f[2 * q + 1] = v.y;
      }
    }
    return;
  }
#pragma unroll
  for (int e = 0; e < 8; ++e) f[e] = (e < n) ? ld_f(p, t, off + e) : 0.f;
}
__device__ __forceinline__ void st8(void* p, SsdDtype t, int64_t off, int n, bool vec, const float f[8]) {
  if (vec && n == 8) {
    if (t == SSD_FLOAT32) {
      float4* d = reinterpret_cast<float4*>(static_cast<float*>(p) + off);
      d[0] = make_float4(f[0], f[1], f[2], f[3]);
      d[1] = make_float4(f[4], f[5], f[6], f[7]);
    } else {
      const uint4 u = visit_dtype<Dtype16>(t, [&](auto d) {
        using T = typename decltype(d)::Device;
        return make_uint4(mma::pack2<T>(f[0], f[1]), mma::pack2<T>(f[2], f[3]), mma::pack2<T>(f[4], f[5]),
                       mma::pack2<T>(f[6], f[7]));
      });
      *reinterpret_cast<uint4*>(static_cast<uint16_t*>(p) + off) = u;
    }
    return;
  }
#pragma unroll
  for (int e = 0; e < 8; ++e)
    if (e < n) st_f(p, t, off + e, f[e]);
}

// The sum of x over this lane and the lanes below it in the warp, added in the same order on every
// lane; every lane of the warp calls it.
template <class T>
__device__ __forceinline__ T warp_inclusive_scan(T x) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const T y = __shfl_up_sync(0xffffffffu, x, off);
    if (lane >= off) x += y;
  }
  return x;
}

// sigmoid(z) with the MUFU reciprocal (~1 ulp; an IEEE division costs a dozen instructions and a
// branch per element). exp(-z) overflowing gives rcp(inf) = 0, so silu -> -0 as it should.
__device__ __forceinline__ float sigmoid(float z) {
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(1.f + __expf(-z)));
  return r;
}
__device__ __forceinline__ float silu(float z) { return z * sigmoid(z); }
// The gradient reaching the gate z of y = y_ungated · silu(z): dy · y_ungated · silu'(z).
__device__ __forceinline__ float gate_grad(float dy, float y_ungated, float z) {
  const float sg = sigmoid(z);
  return dy * y_ungated * sg * (1.f + z * (1.f - sg));
}
// 2^x, one MUFU op (max rel. error ~2 ulp; results below 2^-126 flush to 0).
__device__ __forceinline__ float ex2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// cp.async groups (the copies themselves are in each file: their shapes differ).
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// The chunk-state product of the forward's state role and the backward's launch 1: 4 warps in a
// 2 × 2 grid, each 32 (p) × BN1/2 (n); acc += As[k][p]ᵀ · Vs[k][n] over the K block's rows k < nr (16 at
// a time, at most KB), p-rows < npv and n-columns < nnv (16-column groups past them skipped).
template <class T, int BN1, int KB>
__device__ __forceinline__ void outer_mma(float (&acc)[2][BN1 / 16][4], const T* As, int lda, const T* Vs, int ldv,
                                          int nr, int npv, int nnv) {
  const int warp = threadIdx.x >> 5, wm = warp & 1, wn = warp >> 1;
#pragma unroll
  for (int kk = 0; kk < KB / 16; ++kk) {
    if (kk * 16 < nr && 32 * wm < npv) {
      mma::FragA<T> a[2];
#pragma unroll
      for (int mt = 0; mt < 2; ++mt) mma::ldA<T, mma::kKM>(a[mt], As, lda, 32 * wm + 16 * mt, 16 * kk);
#pragma unroll
      for (int np = 0; np < BN1 / 32; ++np) {
        if (wn * (BN1 / 2) + 16 * np < nnv) {
          mma::FragB<T> b0, b1;
          mma::ldB2<T, mma::kKN>(b0, b1, Vs, ldv, 16 * kk, wn * (BN1 / 2) + 16 * np);
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
            mma::mma(acc[mt][2 * np], a[mt], b0);
            mma::mma(acc[mt][2 * np + 1], a[mt], b1);
          }
        }
      }
    }
  }
}

// Programmatic dependent launch (sm_90; no-ops elsewhere, and when the launch did not ask for it):
// a grid lets the next kernel of the stream be scheduled once all of its blocks have started, and
// that kernel loads its inputs, then waits for this grid's results (and, transitively, for the
// grids before it) before it reads them. It fills the tail of each launch.
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Whether the current device runs programmatic dependent launches (compute capability 9.0 and up).
inline bool pdl_supported() {
  int dev = 0, major = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return major >= 9;
}

// Launches k after the previous work of the stream; with pdl, as a programmatic dependent launch
// (the kernel must pdl_wait() before it reads what earlier launches wrote).
template <class... Args>
inline cudaError_t launch(void (*k)(Args...), unsigned grid, unsigned block, size_t smem, cudaStream_t stream,
                          bool pdl, Args... args) {
  if (!pdl) {
    k<<<grid, block, smem, stream>>>(args...);
    return cudaGetLastError();
  }
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(block);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, k, args...);
}

}}}  // namespace ssd::cuda::dev
