// The one-token decode step on CUDA (SsdStepParams, include/ssd_kernels.h):
//   d = clamp(softplus?(dt + dtBias)),  H_r = exp(d A) H_r + d x B^T,  y = H_r C + D x,  y *= silu(z)
// for every batch entry, in place on the state row r = state_indices[i] (or i).
//
// The step is memory-bound: the state row is read once and written once and everything else is
// small. One block per (batch entry, head); each warp walks rows of p, each lane a slice of n with
// vector loads, and the row's y is a warp reduction. B and C of the entry's group are staged in
// shared memory as fp32.
//
// state_indices live in device memory, so they cannot be checked on the host without a round trip.
// Instead a one-block kernel checks them first (range, and no row used twice) and writes a verdict;
// every step block reads the verdict before touching anything, so an invalid index array leaves the
// whole cache untouched. The caller copies the verdict back and turns it into an error.
#include <cuda_runtime.h>

#include <string>
#include <type_traits>

#include "cuda/backend.h"
#include "core/dtype.h"
#include "core/math.h"
#include "cuda/common/device.cuh"

namespace ssd {
namespace cuda {

namespace {

constexpr int kStepThreads = 128;
constexpr int kCheckThreads = 1024;
constexpr int kStepMinBlocks = 4;  // resident blocks per SM the register budget must allow (bench/NOTES.md)

using dev::ld_f;  // one element of any dtype as float, and back (cuda/common/device.cuh)
using dev::st_f;

// verdict[0]: 0 valid, 1 out of range, 2 used twice; verdict[1]: the first offending batch entry
// (smallest index, so the message does not depend on scheduling).
__global__ void __launch_bounds__(kCheckThreads) k_check_indices(const int32_t* idx, int64_t batch, int64_t rows,
                                                                 int* verdict) {
  __shared__ int bad_entry;
  if (threadIdx.x == 0) bad_entry = 0x7fffffff;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < batch; i += blockDim.x) {
    const int32_t r = idx[i];
    int kind = 0;
    if (r >= rows) {
      kind = 1;
    } else if (r >= 0) {
      for (int64_t j = 0; j < i; ++j)
        if (idx[j] == r) {
          kind = 2;
          break;
        }
    }
    if (kind) atomicMin(&bad_entry, (int)i);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int kind = 0;
    if (bad_entry != 0x7fffffff) kind = idx[bad_entry] >= rows ? 1 : 2;
    verdict[0] = kind;
    verdict[1] = kind ? bad_entry : -1;
  }
}

// VEC consecutive elements of CUDA type S (a row of core/dtype.h) to float and back: one vector access
// for VEC 4 of float or of a 2-byte dtype, else element by element.
template <class S, int VEC>
__device__ __forceinline__ void load_vec(const S* src, float* s) {
  using D = DtypeOfDevice<S>;
  if constexpr (VEC == 4 && std::is_same<S, float>::value) {
    const float4 v = *reinterpret_cast<const float4*>(src);
    s[0] = v.x; s[1] = v.y; s[2] = v.z; s[3] = v.w;
  } else if constexpr (VEC == 4 && D::kBytes == 2) {
    const uint2 v = *reinterpret_cast<const uint2*>(src);
    const float2 a = D::dev_unpack2(v.x);
    const float2 c = D::dev_unpack2(v.y);
    s[0] = a.x; s[1] = a.y; s[2] = c.x; s[3] = c.y;
  } else {
#pragma unroll
    for (int u = 0; u < VEC; ++u) s[u] = D::dev_to_float(src[u]);
  }
}

template <class S, int VEC>
__device__ __forceinline__ void store_vec(S* dst, const float* s) {
  using D = DtypeOfDevice<S>;
  if constexpr (VEC == 4 && std::is_same<S, float>::value) {
    *reinterpret_cast<float4*>(dst) = make_float4(s[0], s[1], s[2], s[3]);
  } else if constexpr (VEC == 4 && D::kBytes == 2) {
    uint2 v;
    v.x = D::dev_pack2(s[0], s[1]);
    v.y = D::dev_pack2(s[2], s[3]);
    *reinterpret_cast<uint2*>(dst) = v;
  } else {
#pragma unroll
    for (int u = 0; u < VEC; ++u) dst[u] = D::dev_from_float(s[u]);
  }
}

// S: the state element type (the CUDA type of a dtype of the table's step column). VEC elements of n per lane and load (4 when
// n % 4 == 0 and the cache is aligned for it, else 1).
//
// Latency is what limits a small step (batch 64 moves 128 MiB in ~30 us, a few rounds of DRAM
// latency per block): so every block issues all of its loads (the verdict, the state rows, B, C, x,
// z, dt) before it waits on any of them, and nothing goes through shared memory or a barrier. Every
// warp reads B and C itself (L1 hits after the first).
//
// T: void reads x, B, C, z and writes y through their run-time dtypes; the CUDA type of a step-column
// dtype is the fixed path where all five have that dtype and allow vector access (launch_step checks it), which
// halves the instructions and registers per byte of state.
template <class S, int VEC, class T>
__global__ void __launch_bounds__(kStepThreads, kStepMinBlocks) k_step(const __grid_constant__ SsdStepParams p, const int* verdict) {
  const int bad = verdict ? verdict[0] : 0;  // waited on at the first store, not before the loads
  const int H = (int)p.nheads, P = (int)p.headdim, N = (int)p.dstate;
  constexpr int kRowsPerBlock = 16;  // 4 warps x R rows: more, smaller blocks keep more bytes in flight
  constexpr int R = 4;               // rows per warp at a time, their loads issued together
  const int ntile = (P + kRowsPerBlock - 1) / kRowsPerBlock;
  const int tile = blockIdx.x % ntile;
  const int bh = blockIdx.x / ntile;
  const int b = bh / H, h = bh % H;
  const int pbeg = tile * kRowsPerBlock, pend = min(P, pbeg + kRowsPerBlock);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nwarps = kStepThreads / 32;
  const int64_t ybase = (int64_t)b * p.y_batch_stride + (int64_t)h * p.y_head_stride;
  const int64_t row = p.state_indices ? p.state_indices[b] : b;
  const float dt_raw = ld_f(p.dt, p.dt_type, (int64_t)b * p.dt_batch_stride + h);
  const float dt_bias = p.dt_bias ? p.dt_bias[h] : 0.f;
  const float a = p.A[h];
  if (row < 0 || row >= p.state_rows) {  // padding: zeros out, the cache is not touched
    if (bad || row >= 0) return;         // (a row past the cache only comes with a bad verdict)
    for (int i = pbeg + threadIdx.x; i < pend; i += kStepThreads) st_f(p.y, p.y_type, ybase + i, 0.f);
    return;
  }
  const int grp = h / (H / (int)p.ngroups);
  const int64_t bb = (int64_t)b * p.B_batch_stride + (int64_t)grp * p.B_group_stride;
  const int64_t cb = (int64_t)b * p.C_batch_stride + (int64_t)grp * p.C_group_stride;
  const int64_t xbase = (int64_t)b * p.x_batch_stride + (int64_t)h * p.x_head_stride;
  const int64_t zbase = (int64_t)b * p.z_batch_stride + (int64_t)h * p.z_head_stride;
  S* state = static_cast<S*>(p.state) + (row * H + h) * (int64_t)P * N;

  for (int i0 = pbeg + warp * R; i0 < pend; i0 += nwarps * R) {
    // Lane r < R finishes row i0 + r: its x, z and D are fetched now, with the state.
    const int my = i0 + lane;
    const bool mine = lane < R && my < pend;
    float x_mine = 0.f, z_mine = 0.f;
    if constexpr (std::is_void_v<T>) {
      x_mine = mine ? ld_f(p.x, p.x_type, xbase + my) : 0.f;
      z_mine = mine && p.z ? ld_f(p.z, p.z_type, zbase + my) : 0.f;
    } else {
      x_mine = mine ? DtypeOfDevice<T>::dev_to_float(static_cast<const T*>(p.x)[xbase + my]) : 0.f;
      z_mine = mine && p.z ? DtypeOfDevice<T>::dev_to_float(static_cast<const T*>(p.z)[zbase + my]) : 0.f;
    }
    const float d_mine = mine && p.D ? (p.D_per_channel ? p.D[(int64_t)h * P + my] : p.D[h]) : 0.f;
    float xr[R], acc[R];
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = 0.f;
    if constexpr (std::is_void_v<T>) {
#pragma unroll
      for (int r = 0; r < R; ++r) xr[r] = i0 + r < pend ? ld_f(p.x, p.x_type, xbase + i0 + r) : 0.f;
    } else {
      static_assert(R == 4, "one vector of x per R rows");
      load_vec<T, 4>(static_cast<const T*>(p.x) + xbase + i0, xr);  // P % 4 == 0: all R rows exist
    }
    for (int j = lane * VEC; j < N; j += 32 * VEC) {
      float s[R][VEC], bv[VEC], cv[VEC];
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (i0 + r < pend) load_vec<S, VEC>(state + (int64_t)(i0 + r) * N + j, s[r]);
      }
      if constexpr (std::is_void_v<T>) {
#pragma unroll
        for (int u = 0; u < VEC; ++u) {
          bv[u] = ld_f(p.B, p.B_type, bb + j + u);
          cv[u] = ld_f(p.C, p.C_type, cb + j + u);
        }
      } else {
        load_vec<T, VEC>(static_cast<const T*>(p.B) + bb + j, bv);
        load_vec<T, VEC>(static_cast<const T*>(p.C) + cb + j, cv);
      }
      const float d = math::step_size(dt_raw + dt_bias, p.dt_softplus, p.dt_min, p.dt_max);
      const float decay = expf(d * a);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (i0 + r < pend) {
          const float dx = d * xr[r];
#pragma unroll
          for (int u = 0; u < VEC; ++u) {
            s[r][u] = fmaf(decay, s[r][u], dx * bv[u]);
            acc[r] = fmaf(s[r][u], cv[u], acc[r]);
          }
          if (!bad) store_vec<S, VEC>(state + (int64_t)(i0 + r) * N + j, s[r]);  // bad: nothing is written
        }
      }
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], off);
    }
    if (mine && !bad) {
      float yv = acc[0];
#pragma unroll
      for (int r = 1; r < R; ++r)
        if (lane == r) yv = acc[r];
      yv = fmaf(d_mine, x_mine, yv);
      if (p.z) yv *= z_mine / (1.f + expf(-z_mine));
      if constexpr (std::is_void_v<T>) st_f(p.y, p.y_type, ybase + my, yv);
      else store_vec<T, 1>(static_cast<T*>(p.y) + ybase + my, &yv);
    }
  }
}

// Whether x, B, C, z (if any) and y are all of dtype t and allow VEC-element vector access.
bool uniform_inputs(const SsdStepParams& p, SsdDtype t, size_t elem) {
  auto ok = [&](const void* ptr, SsdDtype type, int64_t s0, int64_t s1) {
    return type == t && reinterpret_cast<uintptr_t>(ptr) % (4 * elem) == 0 && s0 % 4 == 0 && s1 % 4 == 0;
  };
  return p.headdim % 4 == 0 && ok(p.x, p.x_type, p.x_batch_stride, p.x_head_stride) &&
         ok(p.B, p.B_type, p.B_batch_stride, p.B_group_stride) && ok(p.C, p.C_type, p.C_batch_stride, p.C_group_stride) &&
         (!p.z || ok(p.z, p.z_type, p.z_batch_stride, p.z_head_stride)) && p.y_type == t;
}

template <class S>
cudaError_t launch_step(const SsdStepParams& p, cudaStream_t stream, const int* verdict) {
  const size_t align = 4 * sizeof(S);
  const bool vec = p.dstate % 4 == 0 && reinterpret_cast<uintptr_t>(p.state) % align == 0;
  const dim3 grid((unsigned)(p.batch * p.nheads * ((p.headdim + 15) / 16)));
  // the fixed path of the step-column dtype that every input has, if one has (at most one can), else
  // the run-time dtypes
  bool fixed = false;
  for_each_dtype([&](auto d) {
    using D = decltype(d);
    if constexpr (D::kStep) {
      using T = typename D::Device;
      if (!fixed && vec && uniform_inputs(p, D::kCode, sizeof(T))) {
        k_step<S, 4, T><<<grid, kStepThreads, 0, stream>>>(p, verdict);
        fixed = true;
      }
    }
  });
  if (!fixed && vec) k_step<S, 4, void><<<grid, kStepThreads, 0, stream>>>(p, verdict);
  else if (!fixed) k_step<S, 1, void><<<grid, kStepThreads, 0, stream>>>(p, verdict);
  return cudaGetLastError();
}

}  // namespace

size_t step_workspace_bytes(const SsdStepParams& p) { return p.state_indices ? 2 * sizeof(int) : 0; }

SsdStatus step(const SsdStepParams& p, void* stream_, void* workspace, int* verdict_host, std::string* error) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_);
  int* verdict = nullptr;
  cudaError_t e = cudaSuccess;
  if (p.state_indices) {
    verdict = static_cast<int*>(workspace);
    k_check_indices<<<1, kCheckThreads, 0, stream>>>(p.state_indices, p.batch, p.state_rows, verdict);
    e = cudaGetLastError();
  }
  if (e == cudaSuccess)
    e = visit_dtype<StepDtype>(p.state_type, [&](auto d) { return launch_step<typename decltype(d)::Device>(p, stream, verdict); });
  if (e == cudaSuccess && verdict && verdict_host)
    e = cudaMemcpyAsync(verdict_host, verdict, 2 * sizeof(int), cudaMemcpyDeviceToHost, stream);
  if (e != cudaSuccess) {
    if (error) *error = std::string("step: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
    return e == cudaErrorMemoryAllocation ? SSD_ERR_OUT_OF_MEMORY : SSD_ERR_CUDA;
  }
  return SSD_OK;
}

}  // namespace cuda
}  // namespace ssd
