// The backward's launches 4 and 5: the step's gradient (k_bwd_ddt, with the dB / dC slice sums) and the per-head reductions (k_bwd_reduce).
#pragma once
#include "cuda/bwd/common.cuh"

namespace ssd { namespace cuda {
namespace {

// Launch 4, second role (only when s3 > 1): dC and dB = Σ_s of launch 3's fp32 partials, in slice
// order, per (dC / dB, b, chunk, group, 32 rows), stored in the gradient's dtype.
constexpr int kCombRows = 32;
__device__ __forceinline__ void combine_role(const SsdBackwardParams& bp, const Bw& bw, int blk) {
  const SsdParams& p = bp.fwd;
  const int Q = bw.Q, N = bw.N, VPR = (N + 7) / 8;
  const int nrb = (Q + kCombRows - 1) / kCombRows;
  int x = blk;
  const int rb = x % nrb; x /= nrb;
  const int grp = x % bw.G; x /= bw.G;
  const int k = x % bw.nc; x /= bw.nc;
  const int b = (int)(x % p.batch);
  const bool DB = x >= p.batch;
  const int64_t t0 = (int64_t)k * Q;
  const int len = (int)lmin(Q, p.seqlen - t0);
  const int i0 = rb * kCombRows, nr = imin(kCombRows, len - i0);
  if (nr <= 0) return;
  const float* src = bw.pbc + (int64_t)(DB ? bw.s3 : 0) * bw.pbcS + ((((int64_t)b * bw.nc + k) * bw.G + grp) * Q + i0) * N;
  void* out = DB ? bp.dB : bp.dC;
  const SsdDtype ot = DB ? p.B_type : p.C_type;
  const int64_t oss = DB ? p.B_seq_stride : p.C_seq_stride;
  const int64_t obase = DB ? (int64_t)b * p.B_batch_stride + (t0 + i0) * p.B_seq_stride + (int64_t)grp * p.B_group_stride
                           : (int64_t)b * p.C_batch_stride + (t0 + i0) * p.C_seq_stride + (int64_t)grp * p.C_group_stride;
  const bool ovec = DB ? bw.vdB : bw.vdC;
  for (int v = threadIdx.x; v < nr * VPR; v += blockDim.x) {
    const int rr = v / VPR, c = (v % VPR) * 8, n = imin(8, N - c);
    float a[8], t[8];
    ld8(src, SSD_FLOAT32, (int64_t)rr * N + c, n, bw.st4, a);
    for (int sp = 1; sp < bw.s3; ++sp) {
      ld8(src + sp * bw.pbcS, SSD_FLOAT32, (int64_t)rr * N + c, n, bw.st4, t);
#pragma unroll
      for (int e = 0; e < 8; ++e) a[e] += t[e];
    }
    st8(out, ot, obase + (int64_t)rr * oss + c, n, ovec, a);
  }
}

// Each warp's sums of a and of b, into ra[warp] and rb[warp]; then the block synchronizes.
__device__ __forceinline__ void warp_sums_to(float a, float b, float* ra, float* rb) {
  a = warp_sum(a);
  b = warp_sum(b);
  if ((threadIdx.x & 31) == 0) {
    ra[threadIdx.x >> 5] = a;
    rb[threadIdx.x >> 5] = b;
  }
  __syncthreads();
}

// =============================================================================================
// Launch 4: per (b, chunk, head), 256 threads; thread tid owns position t = Q-1-tid, so that an
// inclusive scan over tid is the reverse cumulative sum over positions.
//   ds_t = Σ_{jb ≤ ib} prow(ib, jb)_t − Σ_{ib' ≥ ib} pcol(ib', ib)_t + Σ_pt (off_t − q_t)
//          + [t = len-1] (Σ_j Σ_pt q_j + Σ state-pass partials)
//   (P without its diagonal, q without q_last: both cancel exactly in da, see the header)
//   da_t = Σ_{i ≥ t} ds_i;  dd_t = A da_t + Σ_pt xdx_t;  ddt_t = dd_t · [lo ≤ v ≤ hi or v NaN] · sp'(u)
//   partials: Σ_t d_t da_t (→ dA), Σ_t ddt_t (→ dDtBias).
// =============================================================================================
__global__ void __launch_bounds__(256)
k_bwd_ddt(const __grid_constant__ SsdBackwardParams bp, const __grid_constant__ Bw bw) {
  __shared__ double wred[8];
  __shared__ float fred[3][8];
  __shared__ float qtot;
  pdl_wait();
  pdl_launch_dependents();
  if ((int)blockIdx.x >= bw.n4a) {
    combine_role(bp, bw, (int)blockIdx.x - bw.n4a);
    return;
  }
  const SsdParams& p = bp.fwd;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  int x = blockIdx.x;
  const int h = x % bw.H; x /= bw.H;
  const ChunkPos cpos = chunk_pos(x, bw.nc, bw.Q, p.seqlen);
  const int k = cpos.k, b = cpos.b, len = cpos.len;
  const int64_t t0 = cpos.t0;
  const int Q = bw.Q, BB = bw.BB;
  const int64_t bhc = ((int64_t)b * bw.H + h) * bw.nc + k;
  const int t = Q - 1 - tid;
  const bool act = tid < Q && t < len;
  // dt (+ bias) of this position and the step's derivative, first: the scan below does not need them
  const int64_t odt = (int64_t)b * p.dt_batch_stride + (t0 + t) * p.dt_seq_stride + h;
  const float u = act ? ld_f(p.dt, p.dt_type, odt) + (p.dt_bias ? p.dt_bias[h] : 0.f) : 0.f;
  const float A = p.A[h];
  const float v = p.dt_softplus ? math::softplus(u) : u;
  const float fac = math::softplus_grad(u, p.dt_softplus);
  const bool in_range = math::clamp_passes(v, p.dt_min, p.dt_max);  // a NaN passes (and stays NaN)
  float ds = 0.f, q = 0.f, xdx = 0.f, d = 0.f;
  if (act) {
    const int ib = t / BB, tl = t % BB;
    const float* pr = bw.prow + bhc * bw.ntri * BB;
    const float* pc = bw.pcol + bhc * bw.ntri * BB;
    float rsum = 0.f, csum = 0.f, off = 0.f;
    for (int jb = 0; jb <= ib; ++jb) rsum += pr[(ib * (ib + 1) / 2 + jb) * BB + tl];
    for (int i2 = ib; i2 < bw.nbb; ++i2) csum += pc[(i2 * (i2 + 1) / 2 + ib) * BB + tl];
    for (int pt = 0; pt < bw.npt; ++pt) {
      const int64_t o = (bhc * bw.npt + pt) * Q + t;
      off += bw.poff[o];
      q += bw.pq[o];
      xdx += bw.pxdx[o];
    }
    // q_last enters ds_last twice with opposite signs (w_last = 1): leave it out, as the diagonal of P
    if (t == len - 1) q = 0.f;
    ds = (rsum - csum) + (off - q);
    d = bw.rec[bhc * Q + t].z;
  }
  // Σ_j q_j and the state-pass partials, in a fixed order (the partials spread over the threads, so
  // that no one thread sums all of them load after load)
  {
    const float* pp = bw.ppass + bhc * bw.npp;
    float ps = 0.f;
    for (int m = tid; m < bw.npp; m += 256) ps += pp[m];
    warp_sums_to(q, ps, fred[0], fred[1]);
    if (tid == 0) {
      float tot = 0.f;
      for (int w = 0; w < 8; ++w) tot += fred[0][w];
      for (int w = 0; w < 8; ++w) tot += fred[1][w];
      qtot = tot;
    }
    __syncthreads();
    if (act && t == len - 1) ds += qtot;
  }
  // reverse cumulative sum: inclusive scan over tid, in double
  const double s = dev::warp_inclusive_scan((double)ds);
  if (lane == 31) wred[warp] = s;
  __syncthreads();
  double base = 0.0;
  for (int w = 0; w < warp; ++w) base += wred[w];
  const float da = (float)(base + s);
  float ddt = 0.f, dac = 0.f;
  if (act) {
    const float dd = fmaf(A, da, xdx);
    ddt = in_range ? dd * fac : 0.f;
    st_f(bp.ddt, p.dt_type, odt, ddt);
    dac = d * da;
  }
  {
    warp_sums_to(dac, ddt, fred[1], fred[2]);
    if (tid == 0) {
      float sa = 0.f, sc = 0.f;
      for (int w = 0; w < 8; ++w) {
        sa += fred[1][w];
        sc += fred[2][w];
      }
      const int64_t o = ((int64_t)b * bw.nc + k) * bw.H + h;
      bw.pdA[o] = sa;
      bw.pdb[o] = sc;
    }
  }
  // dD: this (b, chunk, head)'s partials summed over its position blocks (and, with D per head, over
  // the channels) into the first row of its partials, in a fixed order, for launch 5.
  if (bp.dD) {
    const int P = bw.P, nbb = bw.nbb;
    float* src = bw.pdD + (((int64_t)b * bw.nc + k) * bw.H + h) * nbb * P;
    if (p.D_per_channel) {
      for (int col = tid; col < P; col += 256) {  // each column read and written by one thread
        float v = 0.f;
        for (int rr = 0; rr < nbb; ++rr) v += src[(int64_t)rr * P + col];
        src[col] = v;
      }
    } else {
      float v = 0.f;
      for (int i = tid; i < nbb * P; i += 256) v += src[i];
      v = warp_sum(v);
      __syncthreads();  // fred[0] (Σ q above) is no longer read
      if (lane == 0) fred[0][warp] = v;
      __syncthreads();
      if (tid == 0) {
        float tot = 0.f;
        for (int w = 0; w < 8; ++w) tot += fred[0][w];
        src[0] = tot;
      }
    }
  }
}

// Launch 5: per head, fixed-order sums of the partials: dA, dDtBias, and dD from the per-(b, chunk,
// head) sums launch 4 left in the first row of each one's partials.
__global__ void __launch_bounds__(kThreads)
k_bwd_reduce(const __grid_constant__ SsdBackwardParams bp, const __grid_constant__ Bw bw, int nbc) {
  __shared__ double red[kThreads];
  pdl_wait();
  const SsdParams& p = bp.fwd;
  const int h = blockIdx.x, tid = threadIdx.x, H = bw.H;
  auto block_sum = [&](double v) -> double {
    red[tid] = v;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s >>= 1) {
      if (tid < s) red[tid] += red[tid + s];
      __syncthreads();
    }
    const double r = red[0];
    __syncthreads();
    return r;
  };
  double a = 0.0;
  for (int m = tid; m < nbc; m += kThreads) a += bw.pdA[(int64_t)m * H + h];
  a = block_sum(a);
  if (tid == 0) bp.dA[h] = (float)a;
  if (bp.d_dt_bias) {
    double c = 0.0;
    for (int m = tid; m < nbc; m += kThreads) c += bw.pdb[(int64_t)m * H + h];
    c = block_sum(c);
    if (tid == 0) bp.d_dt_bias[h] = (float)c;
  }
  if (bp.dD) {
    const int P = bw.P;
    const int64_t per = (int64_t)bw.nbb * P;  // floats per (b, c, h); launch 4's sum is the first row
    if (p.D_per_channel) {
      for (int col = tid; col < P; col += kThreads) {
        const float* src = bw.pdD + (int64_t)h * per + col;
        double s = 0.0;
        for (int m = 0; m < nbc; ++m) s += src[(int64_t)m * H * per];
        bp.dD[(int64_t)h * P + col] = (float)s;
      }
    } else {
      double s = 0.0;
      for (int m = tid; m < nbc; m += kThreads) s += bw.pdD[((int64_t)m * H + h) * per];
      s = block_sum(s);
      if (tid == 0) bp.dD[h] = (float)s;
    }
  }
}

}  // namespace
}}  // namespace ssd::cuda
