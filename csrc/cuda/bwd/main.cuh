// The backward's launch 3 (the kernel template k_bwd_main over MainAnySize or MainFixedShape) and its any-size roles: dx and dz per head (main_role), dB and dC per group (group_role).
#pragma once
#include "cuda/bwd/common.cuh"

namespace ssd { namespace cuda {
namespace {

// =============================================================================================
// Launch 3, role a: per (b, chunk, head, position block r of BB rows, p-tile of BP columns).
// Warp w owns rows 16w..16w+15 (positions j0 + ...) and all BP columns: acc[BP/8][4].
//   phase a: Y_off = e ⊙ (C H_{k-1}ᵀ)       A = C [j][n] kMK, B = H [p][n] kNK
//            → off_j = dY_j · Y_off_j
//            (dz wanted) Y = Y_off + Σ_{i ≤ j} M_ji d_i x_i + D x → dz = dy · Y · silu'(z)
//                                         A = M∘d built in registers, B = X [i][p] kKN
//   phase b: dX̄ = w ⊙ (B G_kᵀ)            A = B [j][n] kMK, B = G_k [p][n] kNK
//            → q_j = d_j x_j · dX̄_j (state part only)
//            dX̄ += Σ_{i ≥ j} M_ij dY_i     A = Mᵀ from a staged C·Bᵀ tile, B = dY [i][p] kKN
//            → xdx_j = x_j · dX̄_j;  dx = d ⊙ dX̄ + D ⊙ dY;  dD partial = Σ_j dY_j ⊙ x_j
// =============================================================================================
template <class T, int BP>
struct MainSmem {
  static constexpr int LDP = BP + 8, LDY = BP + 4;
  static constexpr int kRec = kMaxQ * 16;
  static constexpr int kOwn = 64 * LDP * (int)sizeof(T);      // one 64 × BP tile (x, dY, streamed)
  static constexpr int kAB = (64 + BP) * kLD * (int)sizeof(T); // C or B chunk + H or G_k chunk
  static constexpr int kYs = 64 * LDY * 4;                     // fp32 staging, aliases the above
  static constexpr int kRegion = ((kAB > kYs ? kAB : kYs) + 15) & ~15;
  static constexpr int kCbs = 64 * kLDS * 4;                   // staged C·Bᵀ tile; dD reduction
  static constexpr int oXo = kRec, odYo = oXo + kOwn, oReg = odYo + kOwn, oSt = oReg + kRegion,
                       oCbs = oSt + kOwn, kBytes = oCbs + kCbs;
  static_assert(kCbs >= kThreads * 8 * 4, "dD reduction buffer");
};

template <class T, int BP>
__device__ __forceinline__ void main_role(const SsdBackwardParams& bp, const Bw& bw, int blk, char* smem) {
  using S = MainSmem<T, BP>;
  constexpr int NT = BP / 8, LDP = S::LDP, LD = kLD, LDY = S::LDY, VPR = BP / 8;
  const SsdParams& p = bp.fwd;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
  int x = blk;
  const int r = x % bw.nbb; x /= bw.nbb;
  const int pt = x % bw.npt; x /= bw.npt;
  const int h = x % bw.H; x /= bw.H;
  const ChunkPos cpos = chunk_pos(x, bw.nc, bw.Q, p.seqlen);
  const int k = cpos.k, b = cpos.b, len = cpos.len;
  const int64_t t0 = cpos.t0;
  const int grp = h / bw.hpg;
  const int BB = bw.BB, Q = bw.Q, P = bw.P, N = bw.N;
  const int j0 = r * BB;
  const int nrows = imin(BB, len - j0);
  const int p0 = pt * BP, npv = imin(BP, P - p0);
  const bool want_dD = bp.dD != nullptr;
  float* dDp = want_dD ? bw.pdD + ((((int64_t)b * bw.nc + k) * bw.H + h) * bw.nbb + r) * P + p0 : nullptr;
  if (nrows <= 0) {  // block past the sequence: only the dD partial needs defining
    if (want_dD)
      for (int c = tid; c < npv; c += kThreads) dDp[c] = 0.f;
    return;
  }

  float4* rec = reinterpret_cast<float4*>(smem);                 // [Q]
  T* Xo = reinterpret_cast<T*>(smem + S::oXo);                   // [64][LDP] x rows j (raw)
  T* dYo = reinterpret_cast<T*>(smem + S::odYo);                 // [64][LDP] dY rows j
  T* Sa = reinterpret_cast<T*>(smem + S::oReg);                  // [64][LD]  C or B, n-chunk
  T* Sb = Sa + 64 * LD;                                          // [BP][LD]  H or G_k, n-chunk
  float* Ys = reinterpret_cast<float*>(smem + S::oReg);          // [64][LDY] fp32 staging
  T* St = reinterpret_cast<T*>(smem + S::oSt);                   // [64][LDP] streamed x / dY rows
  float* cbs = reinterpret_cast<float*>(smem + S::oCbs);         // [BB][kLDS] C·Bᵀ tile
  float* dred = cbs;                                             // [128][8] dD reduction

  const int64_t bhc = ((int64_t)b * bw.H + h) * bw.nc + k;
  for (int i = tid; i < Q; i += kThreads) rec[i] = bw.rec[bhc * Q + i];
  const int64_t xrow0 = (int64_t)b * p.x_batch_stride + (t0 + j0) * p.x_seq_stride + (int64_t)h * p.x_head_stride + p0;
  fill_tile<T>(Xo, LDP, 64, BP, [&](int rr, int c, float f[8]) {
    if (rr < nrows && c < npv) ld8(p.x, p.x_type, xrow0 + (int64_t)rr * p.x_seq_stride + c, imin(8, npv - c), bw.vx, f);
    else zero8(f);
  });
  fill_tile<T>(dYo, LDP, 64, BP, [&](int rr, int c, float f[8]) {
    if (rr < nrows && c < npv) ld8_dy(bp, bw, b, t0 + j0 + rr, h, p0 + c, imin(8, npv - c), f);
    else zero8(f);
  });
  __syncthreads();

  const bool has_seq = p.seq_idx != nullptr;
  const int sid_prev = (has_seq && k > 0) ? p.seq_idx[(int64_t)b * p.seq_idx_batch_stride + t0 - 1] : 0;
  const bool has_prev = k > 0 || p.initial_states != nullptr;
  const float4 rl = rec[len - 1];
  const int wr = 16 * warp;
  const bool wact = wr < nrows;
  float4 rJ[2];
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const int jl = wr + g + 8 * hr;
    rJ[hr] = (jl < nrows) ? rec[j0 + jl] : make_float4(0.f, 0.f, 0.f, 0.f);
  }
  const int64_t pos = (bhc * bw.npt + pt) * Q + j0;  // per-position partial arrays, row 0 of the block
  const float* cbg = bw.cb + (((int64_t)b * bw.nc + k) * bw.G + grp) * bw.ntri * BB * BB;  // this (b, c, g)
  // Σ over this lane's columns of acc ⊙ tile (row-wise), completed over the quad.
  auto row_dot = [&](const float (&acc)[NT][4], const T* tile, float s[2]) {
    s[0] = s[1] = 0.f;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int hr = 0; hr < 2; ++hr)
#pragma unroll
        for (int e = 0; e < 2; ++e)
          s[hr] = fmaf(acc[nt][2 * hr + e], mma::to_float<T>(tile[(wr + g + 8 * hr) * LDP + 8 * nt + 2 * t4 + e]), s[hr]);
    s[0] = quad_sum(s[0]);
    s[1] = quad_sum(s[1]);
  };
  auto stage = [&](const float (&acc)[NT][4]) {
    if (wact) {
#pragma unroll
      for (int nt = 0; nt < NT; ++nt)
#pragma unroll
        for (int hr = 0; hr < 2; ++hr)
          *reinterpret_cast<float2*>(Ys + (wr + g + 8 * hr) * LDY + 8 * nt + 2 * t4) =
              make_float2(acc[nt][2 * hr], acc[nt][2 * hr + 1]);
    }
  };
  // acc += (C or B rows of this block) · (states slab rows p0..)ᵀ over all of dstate
  auto rows_times_state = [&](float (&acc)[NT][4], const void* src, SsdDtype st, int64_t row0, int64_t rs, bool vec,
                              const float* slab) {
    for (int n0 = 0; n0 < N; n0 += 64) {
      const int ncv = imin(64, N - n0);
      __syncthreads();  // previous readers of Sa / Sb (or of the aliased staging) are done
      fill_tile<T, 1>(Sa, LD, 64, 64, [&](int rr, int c, float f[8]) {
        if (rr < nrows && c < ncv) ld8(src, st, row0 + (int64_t)rr * rs + n0 + c, imin(8, ncv - c), vec, f);
        else zero8(f);
      });
      fill_tile<T, 1>(Sb, LD, BP, 64, [&](int rr, int c, float f[8]) {
        if (rr < npv && c < ncv) ld8(slab, SSD_FLOAT32, (int64_t)rr * N + n0 + c, imin(8, ncv - c), bw.st4, f);
        else zero8(f);
      });
      __syncthreads();
      if (wact) mma_rows<T, BP, mma::kNK>(acc, Sa, LD, wr, Sb, LD, ncv, npv);
    }
  };

  float acc[NT][4];
  // ---- phase a: output from the entering state (and the full pre-gate output for dz)
  zero_acc(acc);
  if (has_prev) {
    rows_times_state(acc, p.C, p.C_type,
                     (int64_t)b * p.C_batch_stride + (t0 + j0) * p.C_seq_stride + (int64_t)grp * p.C_group_stride,
                     p.C_seq_stride, bw.vC, bw.states + bhc * bw.PN + (int64_t)p0 * N);
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const int jl = wr + g + 8 * hr;
      const bool ok = jl < nrows && (!has_seq || sid_of(rJ[hr]) == sid_prev);
      const float f = ok ? ex2(rJ[hr].x + rJ[hr].y) : 0.f;
      scale_or_drop_row(acc, hr, ok, f);
    }
  }
  {
    float s[2];
    row_dot(acc, dYo, s);
    store_row_sums(bw.poff + pos, s, 1.f, 1.f, wr, nrows);
  }
  if (bw.want_dz) {
    for (int jb = 0; jb <= r && !bw.use_yu; ++jb) {  // the intra-chunk output, unless the forward kept it
      const T* Xs = Xo;  // the diagonal block's x rows are this block's own
      if (jb < r) {
        __syncthreads();  // previous readers of St are done
        const int64_t xr = (int64_t)b * p.x_batch_stride + (t0 + jb * BB) * p.x_seq_stride +
                           (int64_t)h * p.x_head_stride + p0;
        fill_tile<T, 1>(St, LDP, 64, BP, [&](int rr, int c, float f[8]) {
          if (rr < BB && c < npv) ld8(p.x, p.x_type, xr + (int64_t)rr * p.x_seq_stride + c, imin(8, npv - c), bw.vx, f);
          else zero8(f);
        });
        __syncthreads();
        Xs = St;
      }
      const float* cbt = cbg + (int64_t)(r * (r + 1) / 2 + jb) * BB * BB;  // tile (r, jb): [j][i]
      if (wact) {
#pragma unroll 1  // registers: 3 blocks per SM
        for (int kk = 0; kk < 4; ++kk) {
          if (16 * kk < BB) {
            FragA<T> a;
            mma::buildA<T>(a, [&](int ro, int co) -> float2 {
              const int jl = wr + ro, il = 16 * kk + co;
              float2 v = make_float2(0.f, 0.f);
              if (jl < nrows) {
                const int j = j0 + jl, i = jb * BB + il;
                const float2 c2 = __ldg(reinterpret_cast<const float2*>(cbt + jl * BB + il));
                const float4 rj = rJ[ro >> 3], ri0 = rec[i], ri1 = rec[i + 1];  // ro = g or g + 8
                const bool ok0 = i <= j && (!has_seq || sid_of(ri0) == sid_of(rj));
                const bool ok1 = i + 1 <= j && (!has_seq || sid_of(ri1) == sid_of(rj));
                v.x = ok0 ? c2.x * ri0.z * ex2(sdiff(rj, ri0)) : 0.f;
                v.y = ok1 ? c2.y * ri1.z * ex2(sdiff(rj, ri1)) : 0.f;
              }
              return v;
            });
            mma::mma_cols<mma::kKN, BP>(acc, a, Xs, LDP, 16 * kk, npv);
          }
        }
      }
    }
    __syncthreads();  // every warp is done with Sa / Sb / St (Ys aliases Sa / Sb)
    if (!bw.use_yu) stage(acc);  // the output to gate (with y_ungated it is read instead)
    __syncthreads();
    const bool dch = p.D_per_channel != 0;
    const float dh = (p.D && !dch) ? p.D[h] : 0.f;
    for (int v = tid; v < nrows * VPR; v += kThreads) {
      const int rr = v / VPR, c = (v % VPR) * 8;
      if (c >= npv) continue;
      const int n = imin(8, npv - c);
      const int64_t t = t0 + j0 + rr;
      float yb[8], dyv[8], zv[8], o[8];
      if (bw.use_yu) {
        ld8(p.y_ungated, p.y_ungated_type,
            (int64_t)b * p.y_ungated_batch_stride + t * p.y_ungated_seq_stride + (int64_t)h * p.y_ungated_head_stride +
                p0 + c,
            n, bw.vyu, yb);
      } else {
#pragma unroll
        for (int e = 0; e < 8; ++e) yb[e] = Ys[rr * LDY + c + e];
      }
      if (p.D && !bw.use_yu) {
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          const float dv = dch ? ((e < n) ? p.D[(int64_t)h * P + p0 + c + e] : 0.f) : dh;
          yb[e] = fmaf(dv, mma::to_float<T>(Xo[rr * LDP + c + e]), yb[e]);
        }
      }
      ld8(bp.dy, bp.dy_type,
          (int64_t)b * bp.dy_batch_stride + t * bp.dy_seq_stride + (int64_t)h * bp.dy_head_stride + p0 + c, n, bw.vdy,
          dyv);
      const int64_t zo = (int64_t)b * p.z_batch_stride + t * p.z_seq_stride + (int64_t)h * p.z_head_stride + p0 + c;
      ld8(p.z, p.z_type, zo, n, bw.vz, zv);
#pragma unroll
      for (int e = 0; e < 8; ++e) o[e] = gate_grad(dyv[e], yb[e], zv[e]);
      st8(bp.dz, p.z_type, zo, n, bw.vdz, o);
    }
  }

  // ---- phase b: dX̄
  zero_acc(acc);
  rows_times_state(acc, p.B, p.B_type,
                   (int64_t)b * p.B_batch_stride + (t0 + j0) * p.B_seq_stride + (int64_t)grp * p.B_group_stride,
                   p.B_seq_stride, bw.vB, bw.dstates + bhc * bw.PN + (int64_t)p0 * N);
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const int jl = wr + g + 8 * hr;
    const bool ok = jl < nrows && (!has_seq || sid_of(rJ[hr]) == sid_of(rl));
    const float f = ok ? ex2(sdiff(rl, rJ[hr])) : 0.f;
    scale_row(acc, hr, f);
  }
  {
    float s[2];
    row_dot(acc, Xo, s);
    store_row_sums(bw.pq + pos, s, rJ[0].z, rJ[1].z, wr, nrows);
  }
  for (int ib = r; ib < bw.nbb && ib * BB < len; ++ib) {
    const int i0 = ib * BB, nri = imin(BB, len - i0);
    const T* Ds = dYo;
    __syncthreads();  // previous readers of St / cbs are done
    if (ib > r) {
      fill_tile<T, 1>(St, LDP, 64, BP, [&](int rr, int c, float f[8]) {
        if (rr < nri && c < npv) ld8_dy(bp, bw, b, t0 + i0 + rr, h, p0 + c, imin(8, npv - c), f);
        else zero8(f);
      });
      Ds = St;
    }
    {
      const float4* cbt4 = reinterpret_cast<const float4*>(cbg + (int64_t)(ib * (ib + 1) / 2 + r) * BB * BB);
      for (int v = tid; v < BB * BB / 4; v += kThreads) {
        const int il = (4 * v) / BB, jl = (4 * v) % BB;
        *reinterpret_cast<float4*>(cbs + il * kLDS + jl) = __ldg(cbt4 + v);
      }
    }
    __syncthreads();
    if (wact) {
#pragma unroll 1  // registers: 3 blocks per SM
      for (int kk = 0; kk < 4; ++kk) {
        if (16 * kk < nri) {
          FragA<T> a;
          mma::buildA<T>(a, [&](int ro, int co) -> float2 {
            const int jl = wr + ro, il = 16 * kk + co;
            float2 v = make_float2(0.f, 0.f);
            if (jl < nrows) {
              const int j = j0 + jl, i = i0 + il;
              const float4 rj = rJ[ro >> 3], ri0 = rec[i], ri1 = rec[i + 1];  // ro = g or g + 8
              const bool ok0 = i >= j && i < len && (!has_seq || sid_of(ri0) == sid_of(rj));
              const bool ok1 = i + 1 >= j && i + 1 < len && (!has_seq || sid_of(ri1) == sid_of(rj));
              v.x = ok0 ? cbs[il * kLDS + jl] * ex2(sdiff(ri0, rj)) : 0.f;
              v.y = ok1 ? cbs[(il + 1) * kLDS + jl] * ex2(sdiff(ri1, rj)) : 0.f;
            }
            return v;
          });
          mma::mma_cols<mma::kKN, BP>(acc, a, Ds, LDP, 16 * kk, npv);
        }
      }
    }
  }
  {
    float s[2];
    row_dot(acc, Xo, s);
    store_row_sums(bw.pxdx + pos, s, 1.f, 1.f, wr, nrows);
  }
  __syncthreads();  // Sa / Sb, St and cbs are free
  stage(acc);
  __syncthreads();
  const bool dch = p.D_per_channel != 0;
  const float dh = (p.D && !dch) ? p.D[h] : 0.f;
  float dsum[8];
  zero8(dsum);
  // each thread keeps one column group: c = (tid % VPR) * 8 (kThreads is a multiple of VPR)
  for (int v = tid; v < 64 * VPR; v += kThreads) {
    const int rr = v / VPR, c = (v % VPR) * 8;
    if (rr < nrows && c < npv) {
      const int n = imin(8, npv - c);
      const int64_t t = t0 + j0 + rr;
      float dyv[8], o[8];
      ld8_dy(bp, bw, b, t, h, p0 + c, n, dyv);
      const float dj = rec[j0 + rr].z;
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const float dv = p.D ? (dch ? ((e < n) ? p.D[(int64_t)h * P + p0 + c + e] : 0.f) : dh) : 0.f;
        o[e] = fmaf(dj, Ys[rr * LDY + c + e], dv * dyv[e]);
        dsum[e] = fmaf(dyv[e], mma::to_float<T>(Xo[rr * LDP + c + e]), dsum[e]);
      }
      st8(bp.dx, p.x_type,
          (int64_t)b * p.x_batch_stride + t * p.x_seq_stride + (int64_t)h * p.x_head_stride + p0 + c, n, bw.vdx, o);
    }
  }
  if (want_dD) {
#pragma unroll
    for (int e = 0; e < 8; ++e) dred[tid * 8 + e] = dsum[e];
    __syncthreads();
    for (int cc = tid; cc < npv; cc += kThreads) {
      const int cv = cc >> 3, e = cc & 7;
      float s = 0.f;
      for (int m = cv; m < kThreads; m += VPR) s += dred[m * 8 + e];
      dDp[cc] = s;
    }
  }
}

// Launch 3, roles b (dC) and c (dB): per (b, chunk, group, row block r, n-tile of BN columns, head
// slice s). Warp w owns rows 16w..16w+15, all BN columns: acc[BN/8][4]. Slice 0 also does the
// intra-chunk part (the dG tiles are the sum of launch 2's s2 partials, added in slice order while
// staged). One slice (s3 = 1): the result is stored to dC / dB; otherwise slice s stores fp32
// partials into pbc and launch 4 sums them in slice order.
//   dC_i = Σ_{j ≤ i} dG_ij B_j                     A = dG (staged tile, built), B = B [j][n] kKN
//        + Σ_h Σ_p (e^h_i dY^h_i) H^h_{k-1}         A = e ⊙ dY [i][p] kMK, B = H [p][n] kKN
//   dB_j = Σ_{i ≥ j} dG_ij C_i                     A = dGᵀ (staged tile, built), B = C [i][n] kKN
//        + Σ_h Σ_p (w^h_j d^h_j x^h_j) G^h_k        A = w d ⊙ x [j][p] kMK, B = G_k [p][n] kKN
template <class T, int BN>
struct GroupSmem {
  static constexpr int LDV = BN + 8, LDO = BN + 4;
  static constexpr int kA = 64 * kLD * (int)sizeof(T);
  static constexpr int kV = 64 * LDV * (int)sizeof(T);
  static constexpr int kS = 64 * kLDS * 4;
  static constexpr int kO = 64 * LDO * 4;  // fp32 output staging, aliases everything
  static constexpr int oA = 0, oV = kA, oS = kA + kV;
  static constexpr int kBytes = (kA + kV + kS > kO) ? kA + kV + kS : kO;
};

template <class T, int BN, bool DB>
__device__ __forceinline__ void group_role(const SsdBackwardParams& bp, const Bw& bw, int blk, char* smem) {
  using S = GroupSmem<T, BN>;
  constexpr int NT = BN / 8, LDA = kLD, LDV = S::LDV, LDO = S::LDO;
  const SsdParams& p = bp.fwd;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
  int x = blk;
  const int sl = x % bw.s3; x /= bw.s3;
  const int ntl = x % bw.nnt; x /= bw.nnt;
  const int r = x % bw.nbb; x /= bw.nbb;
  const int grp = x % bw.G; x /= bw.G;
  const ChunkPos cpos = chunk_pos(x, bw.nc, bw.Q, p.seqlen);
  const int k = cpos.k, b = cpos.b, len = cpos.len;
  const int64_t t0 = cpos.t0;
  const int BB = bw.BB, Q = bw.Q, P = bw.P, N = bw.N, H = bw.H;
  const int r0 = r * BB;
  const int nrows = imin(BB, len - r0);
  if (nrows <= 0) return;
  const int n0 = ntl * BN, nnv = imin(BN, N - n0);
  T* As = reinterpret_cast<T*>(smem + S::oA);      // [64][LDA]
  T* Vs = reinterpret_cast<T*>(smem + S::oV);      // [64][LDV]
  float* cbs = reinterpret_cast<float*>(smem + S::oS);  // [BB][kLDS]
  float* Os = reinterpret_cast<float*>(smem);      // [64][LDO]
  const int wr = 16 * warp;
  const bool wact = wr < nrows;
  const bool has_seq = p.seq_idx != nullptr;
  const float* dgg = bw.dg + (((int64_t)b * bw.nc + k) * bw.G + grp) * bw.ntri * BB * BB;
  // the other operand of the intra-chunk part: B rows (dC) or C rows (dB)
  const void* vsrc = DB ? p.C : p.B;
  const SsdDtype vt = DB ? p.C_type : p.B_type;
  const int64_t vss = DB ? p.C_seq_stride : p.B_seq_stride;
  const int64_t vb = DB ? (int64_t)b * p.C_batch_stride + t0 * p.C_seq_stride + (int64_t)grp * p.C_group_stride + n0
                        : (int64_t)b * p.B_batch_stride + t0 * p.B_seq_stride + (int64_t)grp * p.B_group_stride + n0;
  const bool vvec = DB ? bw.vC : bw.vB;

  float acc[NT][4];
  zero_acc(acc);
  // ---- intra-chunk part (slice 0)
  const int ib_lo = DB ? r : 0;
  const int ib_hi = sl > 0 ? -1 : (DB ? bw.nbb - 1 : r);
  for (int ob = ib_lo; ob <= ib_hi; ++ob) {
    const int o0 = ob * BB;
    if (o0 >= len) break;
    const int nro = imin(BB, len - o0);
    __syncthreads();  // previous readers of Vs / cbs are done
    fill_tile<T>(Vs, LDV, 64, BN, [&](int rr, int c, float f[8]) {
      if (rr < nro && c < nnv) ld8(vsrc, vt, vb + (int64_t)(o0 + rr) * vss + c, imin(8, nnv - c), vvec, f);
      else zero8(f);
    });
    {  // dG tile [i][j]: dB (ob, r), read transposed; dC (r, ob). Σ of the s2 slices in order (or
       // slice 0 alone, which launch 2 left summed)
      const int tix = DB ? ob * (ob + 1) / 2 + r : r * (r + 1) / 2 + ob;
      const float4* src = reinterpret_cast<const float4*>(dgg + (int64_t)tix * BB * BB);
      const int64_t sstr = bw.dgS / 4;
      // one pass per slice (fewer registers live next to acc than one chain per element); each
      // thread adds to its own elements, so no barrier between the passes
      for (int sp = 0; sp < bw.s2r; ++sp) {
        for (int v = tid; v < BB * BB / 4; v += kThreads) {
          const int il = (4 * v) / BB, jl = (4 * v) % BB;
          float4 a = __ldg(src + sp * sstr + v);
          float4* d = reinterpret_cast<float4*>(cbs + il * kLDS + jl);
          if (sp > 0) {
            const float4 o = *d;
            a.x = o.x + a.x;
            a.y = o.y + a.y;
            a.z = o.z + a.z;
            a.w = o.w + a.w;
          }
          *d = a;
        }
      }
    }
    __syncthreads();
    if (wact) {
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        if (16 * kk < nro) {
          FragA<T> a;
          mma::buildA<T>(a, [&](int ro, int co) -> float2 {
            const int ml = wr + ro, kl = 16 * kk + co;
            if (ml >= nrows) return make_float2(0.f, 0.f);
            if constexpr (DB) return make_float2(cbs[kl * kLDS + ml], cbs[(kl + 1) * kLDS + ml]);
            else return *reinterpret_cast<const float2*>(cbs + ml * kLDS + kl);
          });
          mma::mma_cols<mma::kKN, BN>(acc, a, Vs, LDV, 16 * kk, nnv);
        }
      }
    }
  }
  // ---- through the states, over the heads of the slice in order
  if (DB || k > 0 || p.initial_states != nullptr) {
    const int sid_prev = (has_seq && k > 0) ? p.seq_idx[(int64_t)b * p.seq_idx_batch_stride + t0 - 1] : 0;
    // dC: where no row of the block continues the sequence of H_{k-1} (seq_idx never decreases, so
    // the first row tells), every row's weight is 0; the slab's signed zeros then give the products'
    // bits that H_{k-1} gave for finite values, without a NaN or infinity of the previous sequence
    const bool drop = !DB && has_seq && p.seq_idx[(int64_t)b * p.seq_idx_batch_stride + t0 + r0] != sid_prev;
    const int hh1 = imin(bw.hpg, (sl + 1) * bw.h3);
    for (int hh = sl * bw.h3; hh < hh1; ++hh) {
      const int h = grp * bw.hpg + hh;
      const int64_t bhc = ((int64_t)b * H + h) * bw.nc + k;
      const float4* rh = bw.rec + bhc * Q;
      const float4 rl = rh[len - 1];
      const float* slab = (DB ? bw.dstates : bw.states) + bhc * bw.PN + n0;
      for (int pc = 0; pc < P; pc += 64) {
        const int pcv = imin(64, P - pc);
        __syncthreads();  // previous readers of As / Vs are done
        fill_tile<T>(As, LDA, 64, 64, [&](int rr, int c, float f[8]) {
          if (rr < nrows && c < pcv) {
            const int n = imin(8, pcv - c);
            const int64_t t = t0 + r0 + rr;
            const float4 rj = rh[r0 + rr];
            float sc;
            if constexpr (DB) {
              ld8(p.x, p.x_type, (int64_t)b * p.x_batch_stride + t * p.x_seq_stride + (int64_t)h * p.x_head_stride + pc + c,
                  n, bw.vx, f);
              sc = (!has_seq || sid_of(rj) == sid_of(rl)) ? ex2(sdiff(rl, rj)) * rj.z : 0.f;
            } else {
              ld8_dy(bp, bw, b, t, h, pc + c, n, f);
              sc = (!has_seq || sid_of(rj) == sid_prev) ? ex2(rj.x + rj.y) : 0.f;
            }
#pragma unroll
            for (int e = 0; e < 8; ++e) f[e] *= sc;
          } else {
            zero8(f);
          }
        });
        fill_tile<T>(Vs, LDV, 64, BN, [&](int rr, int c, float f[8]) {
          if (rr < pcv && c < nnv) {
            ld8(slab, SSD_FLOAT32, (int64_t)(pc + rr) * N + c, imin(8, nnv - c), bw.st4, f);
            if (drop) {
#pragma unroll
              for (int e = 0; e < 8; ++e) f[e] = signed_zero(f[e]);
            }
          } else {
            zero8(f);
          }
        });
        __syncthreads();
        if (wact) mma_rows<T, BN, mma::kKN>(acc, As, LDA, wr, Vs, LDV, pcv, nnv);
      }
    }
  }
  // ---- store through a staging tile (8-element accesses)
  __syncthreads();
  if (wact) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int hr = 0; hr < 2; ++hr)
        *reinterpret_cast<float2*>(Os + (wr + g + 8 * hr) * LDO + 8 * nt + 2 * t4) =
            make_float2(acc[nt][2 * hr], acc[nt][2 * hr + 1]);
  }
  __syncthreads();
  if (bw.s3 > 1) {  // fp32 partial of this slice: (role, s, b, c, g, Q, N)
    float* part = bw.pbc + ((DB ? bw.s3 : 0) + sl) * bw.pbcS + ((((int64_t)b * bw.nc + k) * bw.G + grp) * Q + r0) * N + n0;
    for (int v = tid; v < nrows * NT; v += kThreads) {
      const int rr = v / NT, c = (v % NT) * 8;
      if (c < nnv) {
        float o[8];
#pragma unroll
        for (int e = 0; e < 8; ++e) o[e] = Os[rr * LDO + c + e];
        st8(part, SSD_FLOAT32, (int64_t)rr * N + c, imin(8, nnv - c), bw.st4, o);
      }
    }
    return;
  }
  void* out = DB ? bp.dB : bp.dC;
  const SsdDtype ot = DB ? p.B_type : p.C_type;
  const int64_t obase = DB ? (int64_t)b * p.B_batch_stride + (t0 + r0) * p.B_seq_stride + (int64_t)grp * p.B_group_stride + n0
                        : (int64_t)b * p.C_batch_stride + (t0 + r0) * p.C_seq_stride + (int64_t)grp * p.C_group_stride + n0;
  const int64_t oss = DB ? p.B_seq_stride : p.C_seq_stride;
  const bool ovec = DB ? bw.vdB : bw.vdC;
  for (int v = tid; v < nrows * NT; v += kThreads) {
    const int rr = v / NT, c = (v % NT) * 8;
    if (c < nnv) {
      float o[8];
#pragma unroll
      for (int e = 0; e < 8; ++e) o[e] = Os[rr * LDO + c + e];
      st8(out, ot, obase + (int64_t)rr * oss + c, imin(8, nnv - c), ovec, o);
    }
  }
}


// Launch 3 (k_bwd_main): one kernel template over the traits of its roles, any size (MainAnySize) or
// the fixed shape (MainFixedShape, main_fixed.cuh). Tr::group<DB> is roles b (dC) and c (dB), Tr::main
// role a; the group roles come first in block order: their blocks are the longer ones (loops over
// heads), so they should not be the last to start.
template <class Tr>
__global__ void __launch_bounds__(kThreads, Tr::kMinBlocks)
k_bwd_main(const __grid_constant__ SsdBackwardParams bp, const __grid_constant__ Bw bw) {
  pdl_wait();  // before anything: every launch reads what the ones before it wrote
  pdl_launch_dependents();
  extern __shared__ __align__(16) char smem[];
  int blk = blockIdx.x;
  if (blk < bw.n3b) {
    Tr::template group<false>(bp, bw, blk, smem);
    return;
  }
  blk -= bw.n3b;
  if (blk < bw.n3b) {
    Tr::template group<true>(bp, bw, blk, smem);
    return;
  }
  Tr::main(bp, bw, blk - bw.n3b, smem);
}

// Any size: role a on p-tiles of BP columns, roles b/c on n-tiles of BN. fp32: 113 KB of shared
// memory, 2 blocks per SM.
template <class T, int BP, int BN>
struct MainAnySize {
  static constexpr int kMinBlocks = (BP == 64 && sizeof(T) == 2) ? 3 : 2;
  static constexpr int kSmem = MainSmem<T, BP>::kBytes > GroupSmem<T, BN>::kBytes ? MainSmem<T, BP>::kBytes
                                                                                 : GroupSmem<T, BN>::kBytes;
  template <bool DB>
  __device__ static void group(const SsdBackwardParams& bp, const Bw& bw, int blk, char* smem) {
    group_role<T, BN, DB>(bp, bw, blk, smem);
  }
  __device__ static void main(const SsdBackwardParams& bp, const Bw& bw, int blk, char* smem) {
    main_role<T, BP>(bp, bw, blk, smem);
  }
};

}  // namespace
}}  // namespace ssd::cuda
