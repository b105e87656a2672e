// The forward's kernel 3: the chunk scan's outputs y (and y before the gate). One kernel template,
// k_chunk_scan<Traits>, over two traits: ScanAnySize (every size, dtype mix, layout and seq_idx; the
// sizes come from the parameters at run time) and ScanFixed (the common shapes, every trip count,
// tile and pitch a compile-time constant).
#pragma once
#include "cuda/fwd/common.cuh"

namespace ssd { namespace cuda {
namespace {

// Block: 64 rows (positions) of one chunk, kCols columns of headdim, one head. Warp w owns rows
// 16w..16w+15: acc[kCols/8][4] (fp32).
//   Y_off: A = C_i (stored Cs[i][n], kMK), B = H^T (k = n, n = p; stored Hs[p][n], kNK), then * exp(s_i).
//   Y_diag: A = P = CB o exp(s_i - s_j) d_j built in registers (C B^T from the workspace),
//           B = X_j (k = j, n = p; stored Xs[j][p], kKN).

// Any size: p-tiles of BP columns; x, B, C, z, y of any dtype mix; seq_idx; C B^T blocks of
// BB = min(Q, 64) rows in row-major order. Shared memory: header (records, block scan), the Cs/Hs
// region (dv.scan_region bytes, aliased by the fp32 epilogue staging), two X tiles.
template <class T_, int BP>
struct ScanAnySize {
  using T = T_;
  static constexpr bool kFixed = false;
  static constexpr int kCols = BP;
  static constexpr int kMinBlocks = sizeof(T) == 2 ? (BP == 64 ? 3 : 2) : 1;
  static constexpr int LDX = BP + 8, LDY = BP + 4;
};

// Fixed shapes: one block covers all P columns, and no bounds checks remain inside the tiles:
//   16-bit x/B/C (T), y and z (if any) of type T, chunk >= 64 (C B^T blocks are 64x64, stored in
//   fragment order by kernel 1), headdim P in {64, 128}, dstate N in {64, 128, 256}, no seq_idx, and
//   16-byte vector access to x, C, z, y (base aligned, strides multiples of 8 elements). The host
//   selects it (fixed_scan_ok). The entering states come as T (dv.hs16); the position records may
//   come from the sequential state pass (dv.recs).
// Partial last chunk: rows >= len are zero-filled by cp.async (src-size 0), have d = 0 in the
// records (so their P entries are exactly 0) and are never stored.
template <class T_, int P, int N>
struct ScanFixed {
  using T = T_;
  static constexpr bool kFixed = true;
  static constexpr int kCols = P, kN = N;
  static constexpr int kMinBlocks = P == 64 ? 4 : 2;
  // LDY: P + 8 floats, so that the float2 stores of the accumulators hit each bank twice (P + 4: 4-way)
  static constexpr int LDC = N + 8, LDX = P + 8, LDY = P + 8;
  static constexpr int kRec = kMaxQ * 16;                 // float4 records of up to 256 positions
  static constexpr int kCH = (64 + P) * LDC * 2;          // C tile (64 x N) + H tile (P x N), 16-bit
  static constexpr int kYs = 64 * LDY * 4;                // epilogue staging (fp32), aliases C/H
  static constexpr int kRegion = (((kCH > kYs) ? kCH : kYs) + 15) & ~15;
  static constexpr int kXbuf = 64 * LDX * 2;              // one X (or z) tile
  static constexpr int kSmem = kRec + kRegion + 2 * kXbuf;
};

// One block's place: batch b, chunk k (first position t0), head h of group grp, rows i0 .. rows_end - 1
// of the chunk (row block iblk), columns p0 .. p0 + npv - 1 of headdim.
struct ScanTile {
  int b, k, h, grp, iblk, i0, rows_end, nrows, p0, npv;
  int64_t t0;
};

// The warp's accumulator rows (16 warp + g, + 8) -> the fp32 staging tile Ys (pitch LDY).
template <int LDY, int NT>
__device__ __forceinline__ void stage_acc(float* Ys, const float (&acc)[NT][4]) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int hr = 0; hr < 2; ++hr)
      *reinterpret_cast<float2*>(Ys + (16 * warp + g + 8 * hr) * LDY + 8 * nt + 2 * t4) =
          make_float2(acc[nt][2 * hr], acc[nt][2 * hr + 1]);
}

// The any-size scan's intra-chunk part and epilogue: j-blocks of BB rows (C B^T row-major, seq_idx
// masks), X tiles by cp.async when 16-byte aligned, y and z of any dtype through 8-wide accesses.
template <class Tr, class LoadX>
__device__ __forceinline__ void scan_intra_any(const SsdParams& p, const Dv& dv, const ScanTile& st,
                                               float (&acc)[Tr::kCols / 8][4], const float4* rec, const float4 (&rI)[2],
                                               typename Tr::T* Xs0, float* Ys, LoadX&& load_x, bool use_async) {
  using T = typename Tr::T;
  constexpr int BP = Tr::kCols, LDX = Tr::LDX, LDY = Tr::LDY;
  constexpr bool k16 = sizeof(T) == 2;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
  const int b = st.b, h = st.h, k = st.k, grp = st.grp, i0 = st.i0, rows_end = st.rows_end, p0 = st.p0, npv = st.npv;
  const int64_t t0 = st.t0;
  const int BB = dv.BB, lbb = dv.lbb;
  const int wr0 = i0 + 16 * warp;
  const bool wact = wr0 < rows_end;
  const float* cbb = dv.cb + (((int64_t)b * dv.nc + k) * p.ngroups + grp) * dv.cb_per;
  const bool has_seq = p.seq_idx != nullptr;
  auto cb_ptr = [&](int i, int j) -> const float2* {
    const int ib = i >> lbb, jb = j >> lbb;
    return reinterpret_cast<const float2*>(
        cbb + ((int64_t)(ib * (ib + 1) / 2 + jb) << (2 * lbb)) + ((i & (BB - 1)) << lbb) + (j & (BB - 1)));
  };
  // P(i, j) for j <= i < rows_end (else 0), given the raw C B^T value.
  // (rows past rows_end have cb = 0 from the prefetch / guarded load and a zero record; j <= i
  //  keeps rec reads inside the filled range)
  auto pel = [&](int i, int j, float cb, const float4& ri) -> float {
    const bool in = j <= i && i < rows_end;
    const float4 rj = rec[in ? j : 0];
    const bool ok = in && (!has_seq || __float_as_int(rj.w) == __float_as_int(ri.w));
    const float v = cb * rj.z * ex2(sdiff(ri, rj));
    return ok ? v : 0.f;
  };

  const int njb = (rows_end + BB - 1) / BB;
  const int64_t zbase = p.z ? (int64_t)b * p.z_batch_stride + (t0 + i0) * p.z_seq_stride + (int64_t)h * p.z_head_stride + p0 : 0;
  constexpr SsdDtype kT = DtypeOfDevice<T>::kCode;
  const bool z_async = use_async && p.z && p.z_type == kT && dv.z8;
  // x rows of this block are the last X tile when the j-blocks are 64 rows (the diagonal block)
  const bool x_smem = (BB == 64);
  const T* Xlast = Xs0 + ((njb - 1) & 1) * 64 * LDX;
  const T* Zs = Xs0 + (njb & 1) * 64 * LDX;
  for (int jb = 0; jb < njb; ++jb) {
    const int j0 = jb * BB;
    const T* Xs = Xs0 + (jb & 1) * 64 * LDX;
    const bool next = jb + 1 < njb;
    if (next) load_x(jb + 1);  // buffer (jb+1)&1 was released by the barrier ending iteration jb-1
    float2 cbv[4][4];
    if constexpr (k16) {
      // Prefetch this warp's C B^T values for the whole j-block (overlaps the X tile load).
#pragma unroll
      for (int kk = 0; kk < 4; ++kk)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int i = wr0 + g + 8 * (r & 1);
          const int j = j0 + 16 * kk + 2 * t4 + 8 * (r >> 1);
          cbv[kk][r] = make_float2(0.f, 0.f);
          if (wact && 16 * kk < BB && j <= i && i < rows_end) cbv[kk][r] = __ldg(cb_ptr(i, j));
        }
    }
    if constexpr (k16) {
      if (use_async) {
        if (next) {
          cp_async_wait<1>();
        } else if (z_async) {
          // last block: the other buffer is free; fetch the gate tile for the epilogue
          load_tile_async<T>(Xs0 + ((jb + 1) & 1) * 64 * LDX, LDX, 64, BP, p.z, zbase, p.z_seq_stride,
                             rows_end - i0, npv);
          cp_async_commit();
          cp_async_wait<1>();
        } else {
          cp_async_wait<0>();
        }
      }
    }
    __syncthreads();  // X tile jb visible to all warps
    if (wact) {
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        const int jj = j0 + 16 * kk;
        if (16 * kk < BB && jj <= wr0 + 15 && jj < rows_end) {
          FragA<T> a;
          if constexpr (k16) {
#pragma unroll
            for (int r = 0; r < 4; ++r) {
              const int hr = r & 1;
              const int i = wr0 + g + 8 * hr;
              const int j = jj + 2 * t4 + 8 * (r >> 1);
              const float v0 = pel(i, j, cbv[kk][r].x, rI[hr]);
              const float v1 = pel(i, j + 1, cbv[kk][r].y, rI[hr]);
              a.r[r] = mma::pack2<T>(v0, v1);
            }
          } else {
#pragma unroll
            for (int q = 0; q < 32; q += 2) {
              const int hr = q >> 4;
              const int i = wr0 + g + 8 * hr;
              const int j = jj + (q & 15);
              float2 c2 = make_float2(0.f, 0.f);
              if (j <= i && i < rows_end) c2 = *cb_ptr(i, j);
              a.v[q] = pel(i, j, c2.x, rI[hr]);
              a.v[q + 1] = pel(i, j + 1, c2.y, rI[hr]);
            }
          }
          mma::mma_cols<mma::kKN, BP>(acc, a, Xs, LDX, 16 * kk, npv);
        }
      }
    }
    __syncthreads();  // all warps done with buffer jb & 1
  }

  // Epilogue: stage the fp32 tile in shared memory, then + D x, gate and store with 8-wide
  // coalesced accesses. Rows past the sequence are never written.
  if (wact) stage_acc<LDY>(Ys, acc);
  if constexpr (k16) {
    if (z_async) cp_async_wait<0>();
  }
  __syncthreads();
  const int P = (int)p.headdim;
  const int nrows = rows_end - i0;
  constexpr int VPR = BP / 8;
  const float dh = (p.D && !p.D_per_channel) ? p.D[h] : 0.f;
  for (int v0 = tid; v0 < nrows * VPR; v0 += 2 * kThreads) {
    float xv[2][8], zv[2][8];
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int v = v0 + u * kThreads;
      const int r = v / VPR, c = (v % VPR) * 8;
      const int n = imin(8, npv - c);
      if (v < nrows * VPR && n > 0) {
        const int64_t t = t0 + i0 + r;
        if (p.D && x_smem) {
#pragma unroll
          for (int e = 0; e < 8; ++e) xv[u][e] = mma::to_float<T>(Xlast[r * LDX + c + e]);
        } else if (p.D)
          ld8(p.x, p.x_type, (int64_t)b * p.x_batch_stride + t * p.x_seq_stride + (int64_t)h * p.x_head_stride + p0 + c,
              n, dv.x8, xv[u]);
        if (p.z && z_async) {
#pragma unroll
          for (int e = 0; e < 8; ++e) zv[u][e] = mma::to_float<T>(Zs[r * LDX + c + e]);
        } else if (p.z)
          ld8(p.z, p.z_type, (int64_t)b * p.z_batch_stride + t * p.z_seq_stride + (int64_t)h * p.z_head_stride + p0 + c,
              n, dv.z8, zv[u]);
      }
    }
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int v = v0 + u * kThreads;
      const int r = v / VPR, c = (v % VPR) * 8;
      const int n = imin(8, npv - c);
      if (v < nrows * VPR && n > 0) {
        const int64_t t = t0 + i0 + r;
        float o[8];
        const float4 a0 = *reinterpret_cast<const float4*>(Ys + r * LDY + c);
        const float4 a1 = *reinterpret_cast<const float4*>(Ys + r * LDY + c + 4);
        o[0] = a0.x; o[1] = a0.y; o[2] = a0.z; o[3] = a0.w; o[4] = a1.x; o[5] = a1.y; o[6] = a1.z; o[7] = a1.w;
        if (p.D) {
#pragma unroll
          for (int e = 0; e < 8; ++e) {
            const float dd = p.D_per_channel ? ((e < n) ? p.D[(int64_t)h * P + p0 + c + e] : 0.f) : dh;
            o[e] = fmaf(dd, xv[u][e], o[e]);
          }
        }
        if (p.z) {
          if (p.y_ungated)
            st8(p.y_ungated, p.y_ungated_type,
                (int64_t)b * p.y_ungated_batch_stride + t * p.y_ungated_seq_stride + (int64_t)h * p.y_ungated_head_stride +
                    p0 + c,
                n, dv.yu8, o);
#pragma unroll
          for (int e = 0; e < 8; ++e) o[e] *= silu(zv[u][e]);
        }
        st8(p.y, p.y_type, (int64_t)b * p.y_batch_stride + t * p.y_seq_stride + (int64_t)h * p.y_head_stride + p0 + c,
            n, dv.y8, o);
      }
    }
  }
}

// The fixed scan's intra-chunk part and epilogue: 64-row j-blocks (C B^T in fragment order), the
// off-diagonal decay factored into row and column factors, D x and z from the shared tiles.
template <class Tr, class LoadX>
__device__ __forceinline__ void scan_intra_fixed(const SsdParams& p, const Dv& dv, const ScanTile& st,
                                                 float (&acc)[Tr::kCols / 8][4], const float4* rec,
                                                 const float4 (&rI)[2], typename Tr::T* Xs0, float* Ys,
                                                 LoadX&& load_x) {
  using T = typename Tr::T;
  constexpr int P = Tr::kCols, LDX = Tr::LDX, LDY = Tr::LDY;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
  const int b = st.b, h = st.h, k = st.k, grp = st.grp, iblk = st.iblk, i0 = st.i0, nrows = st.nrows;
  const int64_t t0 = st.t0;
  // ---- intra-chunk part: j-blocks 0..iblk (the last one is the diagonal block)
  // this lane's C B^T values of 64x64 block (iblk, jb): rows 16w+g(+8), cols 16kk+2t4(+8), in fragment
  // order (two float4 per 16-column step kk)
  const float* cbl = dv.cb + (((int64_t)b * dv.nc + k) * p.ngroups + grp) * dv.cb_per +
                     (int64_t)(iblk * (iblk + 1) / 2) * 4096 + cb_frag_offset(warp, 0, lane);
  const bool has_z = p.z != nullptr;
  for (int jb = 0; jb <= iblk; ++jb) {
    const T* Xs = Xs0 + (jb & 1) * 64 * LDX;
    const bool diag = jb == iblk;
    // buffer (jb+1)&1 was released by the barrier ending iteration jb-1
    if (!diag) load_x(jb + 1);
    float2 cbv[4][4];  // index r = hr + 2 c8, as a.r[r]
    ld_cb_frags(cbl + jb * 4096, diag, warp, cbv);
    if (!diag) {
      cp_async_wait<1>();
    } else if (has_z) {
      // last block: the other buffer is free; fetch the gate tile for the epilogue
      const T* zg = static_cast<const T*>(p.z) + (int64_t)b * p.z_batch_stride + (t0 + i0) * p.z_seq_stride +
                    (int64_t)h * p.z_head_stride;
      cp_tile<P, LDX>(Xs0 + ((jb + 1) & 1) * 64 * LDX, zg, p.z_seq_stride, nrows);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();  // X tile jb visible to all warps
    const float4* rj0 = rec + jb * 64 + 2 * t4;
    const bool fac = !diag;
    float ai[2] = {0.f, 0.f};  // row factors exp(s_i - s_e) of this block
    if (fac) {
      const float se = rec[64 * jb + 63].x;
      ai[0] = ex2(fminf(rI[0].x - se, 126.f));
      ai[1] = ex2(fminf(rI[1].x - se, 126.f));
    }
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      if (diag && kk > warp) break;  // warp-uniform: tiles above the diagonal
      FragA<T> a;
      if (fac) {
        const float* bw = reinterpret_cast<const float*>(rj0 + 16 * kk) + 3;  // column factors (.w)
        const float bj[4] = {bw[0], bw[4], bw[32], bw[36]};  // j = 16kk + 2t4 + e + 8*c8, index e + 2*c8
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int hr = r & 1, c8 = r >> 1;
          a.r[r] = mma::pack2<T>(cbv[kk][r].x * (ai[hr] * bj[2 * c8]), cbv[kk][r].y * (ai[hr] * bj[2 * c8 + 1]));
        }
      } else {
        const bool dmask = diag && kk == warp;
        float4 rj[4];  // j = 16kk + 2t4 + e + 8*c8, index e + 2*c8
        rj[0] = rj0[16 * kk];
        rj[1] = rj0[16 * kk + 1];
        rj[2] = rj0[16 * kk + 8];
        rj[3] = rj0[16 * kk + 9];
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int hr = r & 1, c8 = r >> 1;
          float v0 = cbv[kk][r].x * rj[2 * c8].z * ex2(sdiff_hi(rI[hr], rj[2 * c8]));
          float v1 = cbv[kk][r].y * rj[2 * c8 + 1].z * ex2(sdiff_hi(rI[hr], rj[2 * c8 + 1]));
          if (dmask) {  // same 16x16 tile: keep j <= i, i.e. 2t4 + 8c8 + e <= g + 8hr
            const int il = g + 8 * hr, jl = 2 * t4 + 8 * c8;
            v0 = (jl <= il) ? v0 : 0.f;
            v1 = (jl + 1 <= il) ? v1 : 0.f;
          }
          a.r[r] = mma::pack2<T>(v0, v1);
        }
      }
      mma::mma_cols<mma::kKN, P>(acc, a, Xs, LDX, 16 * kk, P);
    }
    __syncthreads();  // all warps done with buffer jb & 1 (and, after jb = 0, with Cs/Hs)
  }

  // ---- epilogue: stage fp32 in shared memory, + D x (x from the diagonal X tile), gate, store
  stage_acc<LDY>(Ys, acc);
  if (has_z) cp_async_wait<0>();
  __syncthreads();
  const T* Xl = Xs0 + (iblk & 1) * 64 * LDX;
  const T* Zs = Xs0 + ((iblk + 1) & 1) * 64 * LDX;
  const bool has_D = p.D != nullptr, dch = p.D_per_channel != 0;
  const float dh = (has_D && !dch) ? p.D[h] : 0.f;
  const float* Dc = (has_D && dch) ? p.D + (int64_t)h * P : p.D;  // no arithmetic on a null D
  T* yg = static_cast<T*>(p.y) + (int64_t)b * p.y_batch_stride + (t0 + i0) * p.y_seq_stride +
          (int64_t)h * p.y_head_stride;
  T* yug = p.y_ungated ? static_cast<T*>(p.y_ungated) + (int64_t)b * p.y_ungated_batch_stride +
                             (t0 + i0) * p.y_ungated_seq_stride + (int64_t)h * p.y_ungated_head_stride
                       : nullptr;
  constexpr int VPR = P / 8;
#pragma unroll 2
  for (int u = 0; u < 64 * VPR / kThreads; ++u) {
    const int v = tid + u * kThreads;
    const int r = v / VPR, c = (v % VPR) * 8;
    if (r < nrows) {
      float o[8];
      const float4 a0 = *reinterpret_cast<const float4*>(Ys + r * LDY + c);
      const float4 a1 = *reinterpret_cast<const float4*>(Ys + r * LDY + c + 4);
      o[0] = a0.x; o[1] = a0.y; o[2] = a0.z; o[3] = a0.w; o[4] = a1.x; o[5] = a1.y; o[6] = a1.z; o[7] = a1.w;
      if (has_D) {
        const uint4 xr = *reinterpret_cast<const uint4*>(Xl + r * LDX + c);
        const uint32_t xw[4] = {xr.x, xr.y, xr.z, xr.w};
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const float2 xv = mma::unpack2<T>(xw[q]);
          const float d0 = dch ? __ldg(Dc + c + 2 * q) : dh;
          const float d1 = dch ? __ldg(Dc + c + 2 * q + 1) : dh;
          o[2 * q] = fmaf(d0, xv.x, o[2 * q]);
          o[2 * q + 1] = fmaf(d1, xv.y, o[2 * q + 1]);
        }
      }
      if (has_z) {
        if (yug)
          *reinterpret_cast<uint4*>(yug + r * p.y_ungated_seq_stride + c) =
              make_uint4(mma::pack2<T>(o[0], o[1]), mma::pack2<T>(o[2], o[3]), mma::pack2<T>(o[4], o[5]),
                         mma::pack2<T>(o[6], o[7]));
        const uint4 zr = *reinterpret_cast<const uint4*>(Zs + r * LDX + c);
        const uint32_t zw[4] = {zr.x, zr.y, zr.z, zr.w};
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const float2 zv = mma::unpack2<T>(zw[q]);
          o[2 * q] *= silu(zv.x);
          o[2 * q + 1] *= silu(zv.y);
        }
      }
      uint4 out;
      out.x = mma::pack2<T>(o[0], o[1]);
      out.y = mma::pack2<T>(o[2], o[3]);
      out.z = mma::pack2<T>(o[4], o[5]);
      out.w = mma::pack2<T>(o[6], o[7]);
      *reinterpret_cast<uint4*>(yg + r * p.y_seq_stride + c) = out;
    }
  }
}

// The any-size traits' shared memory: the C tile and entering state take dv.n16 columns, the region
// size comes from the host (dv.scan_region); the fixed traits' are compile-time constants.
template <class Tr>
__device__ __forceinline__ int scan_ldc(const Dv& dv) {
  if constexpr (Tr::kFixed) return Tr::LDC;
  else return dv.n16 + 8;
}
template <class Tr>
__device__ __forceinline__ int scan_region(const Dv& dv) {
  if constexpr (Tr::kFixed) return Tr::kRegion;
  else return dv.scan_region;
}

template <class Tr>
__global__ void __launch_bounds__(kThreads, Tr::kMinBlocks)
k_chunk_scan(const __grid_constant__ SsdParams p, const __grid_constant__ Dv dv) {
  using T = typename Tr::T;
  constexpr bool kFixed = Tr::kFixed;
  constexpr int BP = Tr::kCols, NT = BP / 8, LDX = Tr::LDX;
  constexpr bool k16 = sizeof(T) == 2;
  extern __shared__ __align__(16) char smem[];
  if constexpr (!kFixed) pdl_wait();  // the any-size scan reads kernel 1's and 2's outputs from the start
  const int tid = threadIdx.x, warp = tid >> 5, g = (tid & 31) >> 2;
  int x = blockIdx.x;
  const int iblk = dv.nib - 1 - x % dv.nib; x /= dv.nib;  // heavy (late) row blocks first
  int pt = 0;                                                // p-tile (the fixed shapes: all of headdim)
  if constexpr (!kFixed) { pt = x % dv.npt3; x /= dv.npt3; }
  const int H = (int)p.nheads;
  const int h = x % H; x /= H;
  const ChunkPos cpos = fwd_chunk(p, dv, x);
  const int k = cpos.k, b = cpos.b, len = cpos.len;
  const int64_t t0 = cpos.t0;
  const int grp = h / dv.hpg;
  const int i0 = iblk * 64;
  if (i0 >= len) return;  // padding only: nothing to write
  const int rows_end = imin(i0 + 64, len);
  const int nrows = rows_end - i0;

  const int LDC = scan_ldc<Tr>(dv);
  constexpr int kRegionAt = kFixed ? kMaxQ * 16 : kHdr;  // after the records (and, any size, the header)
  float4* rec = reinterpret_cast<float4*>(smem);
  T* Cs = reinterpret_cast<T*>(smem + kRegionAt);
  T* Hs = Cs + 64 * LDC;
  float* Ys = reinterpret_cast<float*>(Cs);  // epilogue staging, aliases Cs/Hs
  T* Xs0 = reinterpret_cast<T*>(smem + kRegionAt + scan_region<Tr>(dv));  // [2][64][LDX]: X (and z) tiles
  // scratch of prep_scan: the header (any size), or X buffer 1, untouched until the main loop
  double* wsum = kFixed ? reinterpret_cast<double*>(Xs0 + 64 * LDX) : reinterpret_cast<double*>(smem + kRecBytes);

  const int p0 = pt * BP;
  const int npv = kFixed ? BP : imin(BP, (int)p.headdim - p0);
  const bool has_prev = !cpos.first || (p.initial_states != nullptr);
  const int BB = kFixed ? 64 : dv.BB;
  const int64_t xss = p.x_seq_stride;
  const int64_t xbase = (int64_t)b * p.x_batch_stride + t0 * xss + (int64_t)h * p.x_head_stride + p0;
  bool use_async = kFixed;  // X tiles by cp.async
  if constexpr (k16 && !kFixed) use_async = dv.vx;
  // X tile of j-block jb into buffer jb & 1 (asynchronous when possible: the caller waits).
  auto load_x = [&](int jb) {
    T* dst = Xs0 + (jb & 1) * 64 * LDX;
    const int j0 = jb * BB;
    if constexpr (kFixed) {
      cp_tile<BP, LDX>(dst, static_cast<const T*>(p.x) + xbase + (int64_t)j0 * xss, xss, imin(64, rows_end - j0));
      cp_async_commit();
      return;
    } else {
      if constexpr (k16) {
        if (use_async) {
          load_tile_async<T>(dst, LDX, BB, BP, p.x, xbase + (int64_t)j0 * xss, xss, imin(BB, rows_end - j0), npv);
          cp_async_commit();
          return;
        }
      }
      load_tile<T, false>(dst, LDX, BB, BP, p.x, p.x_type, xbase + (int64_t)j0 * xss, xss, imin(BB, rows_end - j0),
                          npv, dv.vx, nullptr);
    }
  };
  // Prologue: issue every independent load first (X block 0 and C asynchronously, dt, states).
  load_x(0);
  const int64_t cbase = (int64_t)b * p.C_batch_stride + (t0 + i0) * p.C_seq_stride + (int64_t)grp * p.C_group_stride;
  float dreg[2];
  int sreg[2];
  if constexpr (kFixed) {
    constexpr int N = Tr::kN;
    if (has_prev) {
      cp_tile<N, Tr::LDC>(Cs, static_cast<const T*>(p.C) + cbase, p.C_seq_stride, nrows);
      cp_async_commit();
    }
    const float4* recg = dv.recs ? chunk_recs(dv, H, b, h, k) : nullptr;
    if (!recg) prep_load(p, b, h, t0, len, i0 + 64, dreg, sreg);
    pdl_wait();  // the inputs are on their way; from here on kernels 1 and 2's outputs are read
    if (has_prev) {
      // H_{k-1} (P x N, already T, written by kernel 2) -> Hs[p][n], in C's cp.async group
      const T* hg = static_cast<const T*>(dv.hs16) + (((int64_t)b * H + h) * dv.nc + k) * (int64_t)(BP * N);
#pragma unroll
      for (int r = 0; r < BP; r += 64) cp_tile<N, Tr::LDC>(Hs + r * Tr::LDC, hg + (int64_t)r * N, N, 64);
      cp_async_commit();
    }
    if (recg) {  // the records of positions 0 .. i0 + 63, written by the sequential state pass
      for (int j = tid; j < i0 + 64; j += kThreads) {
        cp_async16(static_cast<uint32_t>(__cvta_generic_to_shared(rec + j)), recg + j);
      }
      cp_async_commit();
    } else {
      prep_scan(p, h, i0 + 64, dreg, sreg, rec, wsum);
    }
    cp_async_wait<0>();
    __syncthreads();
    // Off-diagonal 64-blocks (j < i0 <= i) factor the decay: exp(s_i - s_j) = exp(s_i - s_e) exp(s_e - s_j),
    // s_e the cumsum at the end of j's block, so the inner loop multiplies instead of ex2 per element.
    // The column factor d_j exp(s_e - s_j) (<= d_j when the scan decays) takes the place of the seq
    // field (unused here) of record j < i0; it is read after the main loop's first barrier. Both
    // exponents are clamped at 2^126, which only a growing (A > 0 or dt < 0) scan can reach.
    for (int j = tid; j < i0; j += kThreads) rec[j].w = rec[j].z * ex2(fminf(rec[j | 63].x - rec[j].x, 126.f));
  } else {
    const int N = (int)p.dstate;
    bool c_async = false;
    if constexpr (k16) {
      if (has_prev && dv.vC) {
        load_tile_async<T>(Cs, LDC, 64, dv.n16, p.C, cbase, p.C_seq_stride, nrows, N);
        cp_async_commit();
        c_async = true;
      }
    }
    prep_load(p, b, h, t0, len, rows_end, dreg, sreg);
    if (has_prev) {
      if (!c_async)
        load_tile<T, false>(Cs, LDC, 64, dv.n16, p.C, p.C_type, cbase, p.C_seq_stride, nrows, N, dv.vC, nullptr);
      load_tile_f32<T>(Hs, LDC, BP, dv.n16,
                       dv.states + (((int64_t)b * H + h) * dv.nc + k) * dv.PN + (int64_t)p0 * N, N, npv, N,
                       dv.st4);
    }
    prep_scan(p, h, rows_end, dreg, sreg, rec, wsum);
    if (c_async) cp_async_wait<0>();
    __syncthreads();
  }

  float acc[NT][4];
  zero_acc(acc);
  const int wr0 = i0 + 16 * warp;           // chunk-relative first row of this warp
  const bool wact = kFixed || wr0 < rows_end;  // (fixed: padding rows compute on d = 0 and are not stored)
  float4 rI[2];
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const int i = wr0 + g + 8 * hr;
    rI[hr] = (kFixed || i < rows_end) ? rec[i] : make_float4(0.f, 0.f, 0.f, 0.f);
  }

  // Output from the entering state: acc = C_i . H^T, then * exp(s_i) (0 across a seq_idx boundary).
  if (has_prev && wact) {
    auto kstep = [&](int kk) {
      FragA<T> a;
      mma::ldA<T, mma::kMK>(a, Cs, LDC, 16 * warp, 16 * kk);
      mma::mma_cols<mma::kNK, BP>(acc, a, Hs, LDC, 16 * kk, npv);
    };
    if constexpr (kFixed) {
#pragma unroll 2
      for (int kk = 0; kk < Tr::kN / 16; ++kk) kstep(kk);
    } else {
      for (int kk = 0; kk < dv.n16 / 16; ++kk) kstep(kk);
    }
    int sid_prev = 0;
    if (!kFixed && p.seq_idx && !cpos.first) sid_prev = p.seq_idx[(int64_t)b * p.seq_idx_batch_stride + t0 - 1];
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const int i = wr0 + g + 8 * hr;
      const bool ok = kFixed || (i < rows_end && (!p.seq_idx || __float_as_int(rI[hr].w) == sid_prev));
      const float f = ok ? ex2(rI[hr].x + rI[hr].y) : 0.f;
      scale_or_drop_row(acc, hr, ok, f);
    }
  }

  // Intra-chunk part, then the epilogue: + D x, gate, store. Rows past the sequence are never written.
  const ScanTile st{b, k, h, grp, iblk, i0, rows_end, nrows, p0, npv, t0};
  if constexpr (kFixed) scan_intra_fixed<Tr>(p, dv, st, acc, rec, rI, Xs0, Ys, load_x);
  else scan_intra_any<Tr>(p, dv, st, acc, rec, rI, Xs0, Ys, load_x, use_async);
}

}  // namespace
}}  // namespace ssd::cuda
