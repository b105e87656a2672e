// The chunk's position records, shared by the forward and the backward (their first launches build
// them, later launches read them): for chunk positions j, rec[j] = {s_hi, s_lo, d_j, seq_idx bits},
// where d_j is the step size (core/math.h) and s = log2(e) * the inclusive cumulative sum of d*A in
// double, kept as an fp32 hi/lo pair, so that exp(s_i - s_j) = ex2(sdiff(r_i, r_j)).
#pragma once
#include <cuda_runtime.h>

#include "core/math.h"
#include "cuda/common/device.cuh"
#include "ssd_kernels.h"

namespace ssd { namespace cuda { namespace dev {

// The chunk a block works on: its block index with the inner fields divided out is x = b * nc + k;
// t0 is the chunk's first position and len its length (short for the last, partial chunk); first:
// no state enters it from an earlier chunk of its row or sequence.
struct ChunkPos {
  int k, b, len;
  int64_t t0;
  bool first;
};
__device__ __forceinline__ ChunkPos chunk_pos(int x, int nc, int Q, int64_t seqlen) {
  ChunkPos c;
  c.k = x % nc;
  c.b = x / nc;
  c.t0 = (int64_t)c.k * Q;
  c.len = (int)lmin(Q, seqlen - c.t0);
  c.first = c.k == 0;
  return c;
}

// (s_i - s_j) * log2(e) from two position records (hi/lo pairs of the double cumulative sum,
// stored pre-multiplied by log2(e)); exp(s_i - s_j) = ex2(sdiff(ri, rj)).
__device__ __forceinline__ float sdiff(const float4& ri, const float4& rj) {
  return (ri.x - rj.x) + (ri.y - rj.y);
}
// The high halves only: the plain fp32 difference (absolute error ~ulp(|s|), below the 16-bit
// rounding of the product it feeds in the fixed scan; 0 exactly on the diagonal).
__device__ __forceinline__ float sdiff_hi(const float4& ri, const float4& rj) { return ri.x - rj.x; }

// Per-position records of chunk positions 0..n-1 (n <= 256; positions >= len are padding with
// d = 0): rec[j] = {s_hi, s_lo, d_j, seq_idx bits}, s = log2(e) * inclusive cumsum of d*A in double.
// All 128 threads must call it; it synchronizes once inside, the caller syncs before reading rec.
// First half: this thread's two positions 2*tid, 2*tid+1 (global loads only, no barrier).
__device__ __forceinline__ void prep_load(const SsdParams& p, int b, int h, int64_t t0, int len, int n,
                                          float d[2], int sid[2]) {
  const int tid = threadIdx.x;
  const float bias = p.dt_bias ? p.dt_bias[h] : 0.f;
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    const int j = 2 * tid + e;
    d[e] = 0.f;
    sid[e] = 0;
    if (j < n) {
      if (j < len) {
        const float u = ld_f(p.dt, p.dt_type, (int64_t)b * p.dt_batch_stride + (t0 + j) * p.dt_seq_stride + h) + bias;
        d[e] = math::step_size(u, p.dt_softplus, p.dt_min, p.dt_max);
      }
      if (p.seq_idx) sid[e] = p.seq_idx[(int64_t)b * p.seq_idx_batch_stride + t0 + min(j, len - 1)];
    }
  }
}
// The sum of x over this lane and the lanes below it in the warp (every lane calls it, in double, in
// the same order on every path), and in *before the sum over the lanes below it.
__device__ __forceinline__ double warp_inclusive_sum(double x, double* before) {
  x = warp_inclusive_scan(x);
  const double ex = __shfl_up_sync(0xffffffffu, x, 1);
  *before = (threadIdx.x & 31) == 0 ? 0.0 : ex;
  return x;
}

// Second half: the block scan; synchronizes once inside, the caller syncs before reading rec.
__device__ __forceinline__ void prep_scan(const SsdParams& p, int h, int n, const float d[2], const int sid[2],
                                          float4* rec, double* wsum) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const float A = p.A[h];
  const double v0 = (double)d[0] * (double)A;
  const double v1 = v0 + (double)d[1] * (double)A;
  double ex;
  const double x = warp_inclusive_sum(v1, &ex);
  if (lane == 31) wsum[warp] = x;
  __syncthreads();
  double base = 0.0;
  for (int w = 0; w < warp; ++w) base += wsum[w];
  base += ex;
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    const int j = 2 * tid + e;
    if (j < n) {
      const double s = (base + (e ? v1 : v0)) * 1.4426950408889634;  // log2(e)
      const float hi = (float)s;
      const float lo = (float)(s - (double)hi);
      rec[j] = make_float4(hi, lo, d[e], __int_as_float(sid[e]));
    }
  }
}
__device__ __forceinline__ void chunk_prep(const SsdParams& p, int b, int h, int64_t t0, int len, int n,
                                           float4* rec, double* wsum) {
  float d[2];
  int sid[2];
  prep_load(p, b, h, t0, len, n, d, sid);
  prep_scan(p, h, n, d, sid, rec, wsum);
}


// The seq_idx value of a position record.
__device__ __forceinline__ int sid_of(const float4& r) { return __float_as_int(r.w); }

// ---- sequence starts (seq_idx, cu_seqlens) and non-finite values
// Where a new sequence starts, the state (or adjoint) carried from the previous one is dropped. The
// kernels wrote that as a product with 0, which is NaN for a NaN or infinite operand: the helpers
// below give a zero instead, and the same bits as the product with +0 for every finite operand
// (+0 · v is the zero with v's sign), so no finite result changes.

// The zero with v's sign: +0 · v for every finite v, bit for bit; a zero for NaN or infinite v.
__device__ __forceinline__ float signed_zero(float v) { return __uint_as_float(__float_as_uint(v) & 0x80000000u); }

// A chunk's decay where the sequence at its last position is not the one at the previous chunk's
// last position: -0 (ex2 never gives it), so that the state passing tells it from a decay that
// underflowed to +0 (which multiplies, as the recurrence does).
constexpr float kDecayReset = -0.0f;
__device__ __forceinline__ bool decay_is_reset(float decay) { return __float_as_uint(decay) == 0x80000000u; }
// decay · v, dropping v at a reset (there decay · v was +0 · v)
__device__ __forceinline__ float decay_mul(float decay, float v) { return decay_is_reset(decay) ? signed_zero(v) : decay * v; }
// fmaf(decay, h, c), dropping h at a reset (there it was fmaf(+0, h, c) = signed_zero(h) + c exactly)
__device__ __forceinline__ float decay_fma(float decay, float h, float c) {
  return decay_is_reset(decay) ? signed_zero(h) + c : fmaf(decay, h, c);
}
// A row's value times its factor f where the row continues the sequence it reads from (ok); else the
// zero that v · 0 gave, without v's NaN.
__device__ __forceinline__ float scale_or_drop(float v, bool ok, float f) { return ok ? v * f : signed_zero(v); }
// Row g (hr = 0) or g + 8 (hr = 1) of a warp's accumulator tile (the mma C layout), scale_or_drop.
template <int NT>
__device__ __forceinline__ void scale_or_drop_row(float (&acc)[NT][4], int hr, bool ok, float f) {
#pragma unroll
  for (int c = 0; c < NT; ++c) {
    acc[c][2 * hr] = scale_or_drop(acc[c][2 * hr], ok, f);
    acc[c][2 * hr + 1] = scale_or_drop(acc[c][2 * hr + 1], ok, f);
  }
}

}}}  // namespace ssd::cuda::dev
