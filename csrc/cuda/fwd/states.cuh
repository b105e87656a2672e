// The forward's kernels 1 and 2: chunk states and C·Bᵀ (k_state_bmm), then state passing (k_state_pass).
#pragma once
#include "cuda/fwd/common.cuh"

namespace ssd { namespace cuda {
namespace {

// ---- kernel 1a: chunk states ----------------------------------------------------------------
// The state role's tuning (bench/NOTES.md has the measurements behind each value).
struct StateTuning {
  static constexpr int kKb = 32;          // positions per K block (fp32, and 16-bit n-tiles of 128)
  static constexpr int kKbN64 = 64;       // positions per K block of the 16-bit n-tiles of 64
  static constexpr int kMinBlocks16 = 4;  // blocks per SM asked of the register allocator (16-bit)
  static constexpr int kMaxBn = 128;      // the widest n-tile
};
// Positions per K block of the state role, for an n-tile of BN1 and elements of es bytes.
__host__ __device__ constexpr int k1_kb(int BN1, int es) { return (BN1 == 64 && es == 2) ? StateTuning::kKbN64 : StateTuning::kKb; }
// Tile: 64 (p) x BN1 (n) output, K loop over the chunk in blocks of 64 positions. 4 warps in a
// 2 (p) x 2 (n) grid, each 32 x BN1/2: acc[2][BN1/16][4].
// A = Xbar^T (m = p, k = position), stored Xs[position][p] -> kKM (ldmatrix.trans);
// B = B (k = position, n), stored Bs[position][n] -> kKN (ldmatrix.trans).
template <class T, int BN1>
__device__ __forceinline__ void state_role(const SsdParams& p, const Dv& dv, int blk, char* smem) {
  constexpr int BP1 = 64, KB = k1_kb(BN1, (int)sizeof(T)), LDX = BP1 + 8, LDB = BN1 + 8, NT = BN1 / 16;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
  int x = blk;
  const int pt = x % dv.npt1; x /= dv.npt1;
  const int ntl = x % dv.nnt1; x /= dv.nnt1;
  const int H = (int)p.nheads;
  const int h = x % H; x /= H;
  const ChunkPos cpos = fwd_chunk(p, dv, x);
  const int k = cpos.k, b = cpos.b, len = cpos.len;
  const int64_t t0 = cpos.t0;
  const int grp = h / dv.hpg;
  if (len <= 0) return;  // an unused slot (cu_seqlens)

  float4* rec = reinterpret_cast<float4*>(smem);
  double* wsum = reinterpret_cast<double*>(smem + kRecBytes);
  float* w = reinterpret_cast<float*>(smem + kRecBytes + 64);
  T* Xbuf = reinterpret_cast<T*>(smem + kHdr);  // [2][KB][LDX]
  T* Bbuf = Xbuf + 2 * KB * LDX;                  // [2][KB][LDB]
  const int p0 = pt * BP1, n0 = ntl * BN1;
  const int npv = imin(BP1, (int)p.headdim - p0);
  const int nnv = imin(BN1, (int)p.dstate - n0);
  const int64_t xbase = (int64_t)b * p.x_batch_stride + t0 * p.x_seq_stride + (int64_t)h * p.x_head_stride + p0;
  const int64_t bbase = (int64_t)b * p.B_batch_stride + t0 * p.B_seq_stride + (int64_t)grp * p.B_group_stride + n0;
  bool use_async = false;
  if constexpr (sizeof(T) == 2) use_async = dv.vx && dv.vB;
  const int nkb = (len + KB - 1) / KB;
  // Raw (unscaled) tiles of K-block ib into buffer ib & 1, asynchronously; returns false if the
  // synchronous path must be used (it then scales while loading, needs w ready).
  auto issue = [&](int ib) {
    if constexpr (sizeof(T) == 2) {
      const int kb = ib * KB, nr = imin(KB, len - kb);
      load_tile_async<T>(Xbuf + (ib & 1) * KB * LDX, LDX, KB, BP1, p.x, xbase + (int64_t)kb * p.x_seq_stride,
                         p.x_seq_stride, nr, npv);
      load_tile_async<T>(Bbuf + (ib & 1) * KB * LDB, LDB, KB, BN1, p.B, bbase + (int64_t)kb * p.B_seq_stride,
                         p.B_seq_stride, nr, nnv);
      cp_async_commit();
    }
  };
  if (use_async) issue(0);

  chunk_prep(p, b, h, t0, len, dv.recs ? dv.Q : len, rec, wsum);  // padded (d = 0) for the scan
  __syncthreads();
  if (dv.recs && pt == 0 && ntl == 0) store_recs(dv, H, b, h, k, rec);  // read by the fixed scan
  const float4 rl = rec[len - 1];
  const int sid_last = __float_as_int(rl.w);
  for (int j = tid; j < len; j += kThreads) {
    const float4 r = rec[j];
    const bool ok = !p.seq_idx || __float_as_int(r.w) == sid_last;
    w[j] = ok ? ex2(sdiff(rl, r)) * r.z : 0.f;
  }
  if (pt == 0 && ntl == 0 && tid == 0) {
    bool keep = true;
    if (p.seq_idx) {
      const int prev = !cpos.first ? p.seq_idx[(int64_t)b * p.seq_idx_batch_stride + t0 - 1] : 0;
      keep = (sid_last == prev);
    }
    dv.decay[((int64_t)b * H + h) * dv.nc + k] = keep ? ex2(rl.x + rl.y) : kDecayReset;
  }
  __syncthreads();

  const int wm = warp & 1, wn = warp >> 1;
  float acc[2][NT][4];
#pragma unroll
  for (int a = 0; a < 2; ++a)
#pragma unroll
    for (int c = 0; c < NT; ++c)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[a][c][q] = 0.f;

  for (int ib = 0; ib < nkb; ++ib) {
    const int kb = ib * KB;
    const int nr = imin(KB, len - kb);
    T* Xs = Xbuf + (ib & 1) * KB * LDX;
    T* Bs = Bbuf + (ib & 1) * KB * LDB;
    if (use_async) {
      const bool next = ib + 1 < nkb;
      if (next) issue(ib + 1);
      if constexpr (sizeof(T) == 2) {
        if (next) cp_async_wait<1>();
        else cp_async_wait<0>();
        // each thread scales the x vectors it copied itself (same mapping as load_tile_async)
        for (int v = tid; v < KB * (BP1 / 8); v += kThreads) {
          const int r = v / (BP1 / 8), c = (v % (BP1 / 8)) * 8;
          const float sc = (r < nr) ? w[kb + r] : 0.f;
          uint4* xv = reinterpret_cast<uint4*>(Xs + r * LDX + c);
          *xv = scale8<T>(*xv, sc);
        }
      }
    } else {
      load_tile<T, true>(Xs, LDX, KB, BP1, p.x, p.x_type, xbase + (int64_t)kb * p.x_seq_stride, p.x_seq_stride, nr,
                         npv, dv.vx, w + kb);
      load_tile<T, false>(Bs, LDB, KB, BN1, p.B, p.B_type, bbase + (int64_t)kb * p.B_seq_stride, p.B_seq_stride, nr,
                          nnv, dv.vB, nullptr);
    }
    __syncthreads();
    outer_mma<T, BN1, KB>(acc, Xs, LDX, Bs, LDB, nr, npv, nnv);
    __syncthreads();
  }

  const int N = (int)p.dstate;
  float* out = dv.states + (((int64_t)b * H + h) * dv.nc + k) * dv.PN;
  const bool pair = (N % 2) == 0;
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int hr = 0; hr < 2; ++hr) {
        const int pr = p0 + 32 * wm + 16 * mt + g + 8 * hr;
        const int nc = n0 + wn * (BN1 / 2) + 8 * nt + 2 * t4;
        if (pr < (int)p.headdim && nc < N) {
          float* o = out + (int64_t)pr * N + nc;
          if (pair && nc + 1 < N) {
            *reinterpret_cast<float2*>(o) = make_float2(acc[mt][nt][2 * hr], acc[mt][nt][2 * hr + 1]);
          } else {
            o[0] = acc[mt][nt][2 * hr];
            if (nc + 1 < N) o[1] = acc[mt][nt][2 * hr + 1];
          }
        }
      }
}

// ---- kernel 1b: C B^T per (b, chunk, group), lower-triangular BB x BB blocks ------------------
// Tile 64x64 (only BB x BB used when the chunk is < 64), K loop over dstate in blocks of 64.
// A = C (m = i, k = n), stored Cs[i][n] -> kMK; B = B^T (k = n, n = j), stored Bs[j][n] -> kNK.
template <class T>
__device__ __forceinline__ void bmm_role(const SsdParams& p, const Dv& dv, int blk, char* smem) {
  constexpr int LD = 72;
  const int warp = threadIdx.x >> 5;
  int x = blk;
  int tri = x % dv.ntri; x /= dv.ntri;
  const int G = (int)p.ngroups;
  const int grp = x % G; x /= G;
  const ChunkPos cpos = fwd_chunk(p, dv, x);
  const int k = cpos.k, b = cpos.b, len = cpos.len;
  const int64_t t0 = cpos.t0;
  const int tri_idx = tri;
  int ib, jb;
  tri_block(tri, ib, jb);
  const int BB = dv.BB;
  const int i0 = ib * BB, j0 = jb * BB;
  if (i0 >= len) return;  // rows past the sequence are never read
  const int nri = imin(BB, len - i0), nrj = imin(BB, len - j0);
  T* Cs = reinterpret_cast<T*>(smem + kHdr);
  T* Bs = Cs + 64 * LD;
  const int wm = warp & 1, wn = warp >> 1;
  const bool wact = (32 * wm < BB) && (32 * wn < BB);
  float acc[2][4][4];
#pragma unroll
  for (int a = 0; a < 2; ++a)
#pragma unroll
    for (int c = 0; c < 4; ++c)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[a][c][q] = 0.f;
  const int N = (int)p.dstate;
  for (int n0 = 0; n0 < N; n0 += 64) {
    const int ncv = imin(64, N - n0);
    load_tile<T, false>(Cs, LD, BB, 64, p.C, p.C_type,
                        (int64_t)b * p.C_batch_stride + (t0 + i0) * p.C_seq_stride + (int64_t)grp * p.C_group_stride + n0,
                        p.C_seq_stride, nri, ncv, dv.vC, nullptr);
    load_tile<T, false>(Bs, LD, BB, 64, p.B, p.B_type,
                        (int64_t)b * p.B_batch_stride + (t0 + j0) * p.B_seq_stride + (int64_t)grp * p.B_group_stride + n0,
                        p.B_seq_stride, nrj, ncv, dv.vB, nullptr);
    __syncthreads();
    if (wact) cb_kblock<LD>(acc, Cs, Bs, ncv, wm, wn);
    __syncthreads();
  }
  if (!wact) return;
  float* out = dv.cb + (((int64_t)b * dv.nc + k) * G + grp) * dv.cb_per + (int64_t)tri_idx * BB * BB;
  if (dv.cb_frag) {  // BB is 64 (the fixed scan's chunks are multiples of 64); acc[mt][nt] is the mma C layout
    cb_store_frag(out, acc, wm, wn);
    return;
  }
  cb_store_rows(out, acc, BB, wm, wn);
}

template <class T, int BN1>
__global__ void __launch_bounds__(kThreads, sizeof(T) == 2 ? StateTuning::kMinBlocks16 : 3)  // fp32 (FMA mma): 3, no spills
k_state_bmm(const __grid_constant__ SsdParams p, const __grid_constant__ Dv dv) {
  extern __shared__ __align__(16) char smem[];
  pdl_launch_dependents();
  if ((int)blockIdx.x < dv.n_state_blocks) state_role<T, BN1>(p, dv, blockIdx.x, smem);
  else bmm_role<T>(p, dv, blockIdx.x - dv.n_state_blocks, smem);
}

// ---- kernel 2: state passing ------------------------------------------------------------------
// Each thread owns 4 consecutive elements of one chain's (a row's or packed sequence's, for one head)
// p*n state and walks its chunks. The state entering chunk k replaces S_k in fp32 (for the generic
// scan), and/or is written as T into hs16 (for the fixed scan, which multiplies it in T anyway: half
// the bytes, read by cp.async).
template <class T>
__device__ __forceinline__ void store_entering(const Dv& dv, float* s32, int64_t off, float4 H) {
  if (dv.pass_f32) *reinterpret_cast<float4*>(s32) = H;
  if constexpr (sizeof(T) == 2) {
    if (dv.hs16) {
      uint2 v;
      v.x = mma::pack2<T>(H.x, H.y);
      v.y = mma::pack2<T>(H.z, H.w);
      *reinterpret_cast<uint2*>(static_cast<T*>(dv.hs16) + off) = v;
    }
  }
}

template <class T>
__global__ void __launch_bounds__(256)
k_state_pass(const __grid_constant__ SsdParams p, const __grid_constant__ Dv dv) {
  pdl_launch_dependents();
  pdl_wait();  // everything here is kernel 1's output
  const int eb = blockIdx.x % dv.nes;
  const int64_t ch_h = blockIdx.x / dv.nes;
  const int h = (int)(ch_h % p.nheads);
  const Chain ch = fwd_chain(p, dv, (int)(ch_h / p.nheads), h);
  const int64_t bh = (int64_t)ch.b * p.nheads + h;
  const int64_t e = ((int64_t)eb * 256 + threadIdx.x) * 4;
  const int64_t PN = dv.PN;
  if (e >= PN) return;
  const int nc = ch.n;
  float* S = dv.states + ch.slot0 * PN + e;
  const int64_t off0 = ch.slot0 * PN + e;  // of S, for hs16
  const float* dec = dv.decay + ch.slot0;
  const float* init = p.initial_states ? p.initial_states + bh * PN + e : nullptr;
  if (dv.pass4) {
    float4 H = init ? *reinterpret_cast<const float4*>(init) : make_float4(0.f, 0.f, 0.f, 0.f);
    constexpr int D = 8;  // chunks loaded ahead: the loads do not depend on the recurrence
    for (int k0 = 0; k0 < nc; k0 += D) {
      float4 cur[D];
      float a[D];
#pragma unroll
      for (int u = 0; u < D; ++u) {
        if (k0 + u < nc) {
          cur[u] = __ldcs(reinterpret_cast<const float4*>(S + (int64_t)(k0 + u) * PN));
          a[u] = dec[k0 + u];
        }
      }
#pragma unroll
      for (int u = 0; u < D; ++u) {
        if (k0 + u < nc) {
          store_entering<T>(dv, S + (int64_t)(k0 + u) * PN, off0 + (int64_t)(k0 + u) * PN, H);
          H.x = decay_fma(a[u], H.x, cur[u].x); H.y = decay_fma(a[u], H.y, cur[u].y);
          H.z = decay_fma(a[u], H.z, cur[u].z); H.w = decay_fma(a[u], H.w, cur[u].w);
        }
      }
    }
    if (ch.fin) *reinterpret_cast<float4*>(ch.fin + e) = H;
    if (ch.last) *reinterpret_cast<float4*>(ch.last + e) = H;
  } else {
    const int cnt = (int)lmin(4, PN - e);
    for (int u = 0; u < cnt; ++u) {
      float H = init ? init[u] : 0.f;
      for (int k = 0; k < nc; ++k) {
        float* s = S + (int64_t)k * PN + u;
        const float cur = *s;
        if (dv.pass_f32) *s = H;
        if constexpr (sizeof(T) == 2) {
          if (dv.hs16) static_cast<T*>(dv.hs16)[off0 + (int64_t)k * PN + u] = mma::from_float<T>(H);
        }
        H = decay_fma(dec[k], H, cur);
      }
      if (ch.fin) ch.fin[e + u] = H;
      if (ch.last) ch.last[e + u] = H;
    }
  }
}

}  // namespace
}}  // namespace ssd::cuda
