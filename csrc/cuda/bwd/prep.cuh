// The backward's launch 1 (k_bwd_prep): chunk states, the gradient reaching each chunk's entering state, and C·Bᵀ.
#pragma once
#include "cuda/bwd/common.cuh"

namespace ssd { namespace cuda {
namespace {

// =============================================================================================
// Launch 1, roles a and b: Σ over the chunk's positions of weight_j · a_j ⊗ v_j (a 64 × BN1 tile),
//   role a (DY = false): a = x, v = B, weight = w_j d_j       → states   (S_k)
//   role b (DY = true):  a = dY, v = C, weight = e_j          → dstates  (dHoff_k)
// A = aᵀ (m = p, k = position), stored As[position][p] → kKM; B = v, stored Vs[position][n] → kKN.
// 4 warps in a 2 (p) × 2 (n) grid, each 32 × BN1/2.
// =============================================================================================
// The block's tile of roles a / b (both instances): p-tile, n-tile, head, chunk, batch.
struct OuterTile {
  int pt, ntl, h, k, b, grp, len;
  int64_t t0, bhc;
};
__device__ __forceinline__ OuterTile outer_tile(const SsdParams& p, const Bw& bw, int blk) {
  OuterTile o;
  int x = blk;
  o.pt = x % bw.npt1; x /= bw.npt1;
  o.ntl = x % bw.nnt1; x /= bw.nnt1;
  o.h = x % bw.H; x /= bw.H;
  o.k = x % bw.nc;
  o.b = x / bw.nc;
  o.grp = o.h / bw.hpg;
  o.t0 = (int64_t)o.k * bw.Q;
  o.len = (int)lmin(bw.Q, p.seqlen - o.t0);
  o.bhc = ((int64_t)o.b * bw.H + o.h) * bw.nc + o.k;
  return o;
}
// After chunk_prep (and a barrier): role a's first tile stores the chunk's records and decay; every
// block fills the per-position weights w (role a: w_j d_j, role b: e_j). The caller syncs.
template <bool DY>
__device__ __forceinline__ void outer_weights(const SsdParams& p, const Bw& bw, const OuterTile& o, const float4* rec,
                                              float* w) {
  const int tid = threadIdx.x;
  const float4 rl = rec[o.len - 1];
  if constexpr (!DY) {
    if (o.pt == 0 && o.ntl == 0) {
      for (int j = tid; j < bw.Q; j += kThreads) bw.rec[o.bhc * bw.Q + j] = rec[j];
      if (tid == 0) {
        bool keep = true;
        if (p.seq_idx) {
          const int prev = o.k > 0 ? p.seq_idx[(int64_t)o.b * p.seq_idx_batch_stride + o.t0 - 1] : 0;
          keep = sid_of(rl) == prev;
        }
        bw.decay[o.bhc] = keep ? ex2(rl.x + rl.y) : kDecayReset;
      }
    }
    for (int j = tid; j < o.len; j += kThreads) {
      const float4 r = rec[j];
      const bool ok = !p.seq_idx || sid_of(r) == sid_of(rl);
      w[j] = ok ? ex2(sdiff(rl, r)) * r.z : 0.f;
    }
  } else {
    const int sid_prev = (p.seq_idx && o.k > 0) ? p.seq_idx[(int64_t)o.b * p.seq_idx_batch_stride + o.t0 - 1] : 0;
    for (int j = tid; j < o.len; j += kThreads) {
      const float4 r = rec[j];
      const bool ok = !p.seq_idx || sid_of(r) == sid_prev;
      w[j] = ok ? ex2(r.x + r.y) : 0.f;
    }
  }
}
// Role b: whether no position of the chunk continues the sequence of the state entering it (seq_idx
// never decreases, so the first position tells). Then every weight is 0 and the chunk's dL/dH_{k-1}
// is zero: exactly ±0 for finite values, and outer_store keeps those bits but drops a NaN or
// infinity of the chunk's own sequence, which would otherwise reach the sequence before it.
__device__ __forceinline__ bool outer_starts_sequence(const SsdParams& p, const OuterTile& o, const float4* rec) {
  if (!p.seq_idx) return false;
  const int sid_prev = o.k > 0 ? p.seq_idx[(int64_t)o.b * p.seq_idx_batch_stride + o.t0 - 1] : 0;
  return sid_of(rec[0]) != sid_prev;
}
// The 64 × BN1 result (warp grid 2 × 2, each 32 × BN1/2) into states (role a) or dstates (role b);
// drop: stores signed_zero of each value (see outer_starts_sequence).
template <int BN1, bool DY>
__device__ __forceinline__ void outer_store(const Bw& bw, const OuterTile& o, const float (&acc)[2][BN1 / 16][4], bool drop) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
  const int wm = warp & 1, wn = warp >> 1;
  const int P = bw.P, N = bw.N, p0 = o.pt * 64, n0 = o.ntl * BN1;
  float* out = (DY ? bw.dstates : bw.states) + o.bhc * bw.PN;
  const bool pair = (N % 2) == 0;
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int nt = 0; nt < BN1 / 16; ++nt)
#pragma unroll
      for (int hr = 0; hr < 2; ++hr) {
        const int pr = p0 + 32 * wm + 16 * mt + g + 8 * hr;
        const int nc = n0 + wn * (BN1 / 2) + 8 * nt + 2 * t4;
        if (pr < P && nc < N) {
          float* d = out + (int64_t)pr * N + nc;
          float v0 = acc[mt][nt][2 * hr], v1 = acc[mt][nt][2 * hr + 1];
          if (drop) {
            v0 = signed_zero(v0);
            v1 = signed_zero(v1);
          }
          if (pair && nc + 1 < N) {
            *reinterpret_cast<float2*>(d) = make_float2(v0, v1);
          } else {
            d[0] = v0;
            if (nc + 1 < N) d[1] = v1;
          }
        }
      }
}


template <class T, int BN1, bool DY>
__device__ __forceinline__ void outer_role(const SsdBackwardParams& bp, const Bw& bw, int blk, char* smem) {
  constexpr int KB = 64, LDA = kLD, LDV = BN1 + 8, NT = BN1 / 16;
  const SsdParams& p = bp.fwd;
  const OuterTile o = outer_tile(p, bw, blk);
  const int h = o.h, k = o.k, b = o.b, grp = o.grp, len = o.len;
  const int64_t t0 = o.t0;
  if (DY && k == 0 && !p.initial_states) return;  // dL/dH_{-1} is not needed

  float4* rec = reinterpret_cast<float4*>(smem);
  double* wsum = reinterpret_cast<double*>(smem + kRecBytes);
  float* w = reinterpret_cast<float*>(smem + kRecBytes + 64);
  T* As = reinterpret_cast<T*>(smem + kHdr);  // [KB][LDA]
  T* Vs = As + KB * LDA;                      // [KB][LDV]
  const int p0 = o.pt * 64, n0 = o.ntl * BN1;
  const int npv = imin(64, bw.P - p0), nnv = imin(BN1, bw.N - n0);

  chunk_prep(p, b, h, t0, len, DY ? len : bw.Q, rec, wsum);
  __syncthreads();
  outer_weights<DY>(p, bw, o, rec, w);
  __syncthreads();

  const void* vsrc = DY ? p.C : p.B;
  const SsdDtype vt = DY ? p.C_type : p.B_type;
  const bool vvec = DY ? bw.vC : bw.vB;
  const int64_t vss = DY ? p.C_seq_stride : p.B_seq_stride;
  const int64_t vbase = DY ? (int64_t)b * p.C_batch_stride + t0 * p.C_seq_stride + (int64_t)grp * p.C_group_stride + n0
                           : (int64_t)b * p.B_batch_stride + t0 * p.B_seq_stride + (int64_t)grp * p.B_group_stride + n0;
  const int64_t xbase = (int64_t)b * p.x_batch_stride + t0 * p.x_seq_stride + (int64_t)h * p.x_head_stride + p0;

  float acc[2][NT][4];
#pragma unroll
  for (int a = 0; a < 2; ++a) zero_acc(acc[a]);

  for (int kb = 0; kb < len; kb += KB) {
    const int nr = imin(KB, len - kb);
    if (kb > 0) __syncthreads();  // previous K-block's readers are done
    fill_tile<T>(As, LDA, KB, 64, [&](int r, int c, float f[8]) {
      if (r < nr && c < npv) {
        const int n = imin(8, npv - c);
        if constexpr (DY) ld8_dy(bp, bw, b, t0 + kb + r, h, p0 + c, n, f);
        else ld8(p.x, p.x_type, xbase + (int64_t)(kb + r) * p.x_seq_stride + c, n, bw.vx, f);
        const float sc = w[kb + r];
#pragma unroll
        for (int e = 0; e < 8; ++e) f[e] *= sc;
      } else {
        zero8(f);
      }
    });
    fill_tile<T>(Vs, LDV, KB, BN1, [&](int r, int c, float f[8]) {
      if (r < nr && c < nnv) ld8(vsrc, vt, vbase + (int64_t)(kb + r) * vss + c, imin(8, nnv - c), vvec, f);
      else zero8(f);
    });
    __syncthreads();
    outer_mma<T, BN1, KB>(acc, As, LDA, Vs, LDV, nr, npv, nnv);
  }

  outer_store<BN1, DY>(bw, o, acc, DY && outer_starts_sequence(p, o, rec));
}

// Launch 1, role c: C·Bᵀ per (b, chunk, group, lower-triangular BB × BB block) into cb (as the
// forward). Blocks past the sequence are written as zeros, so every workspace entry is defined.
// A = C (m = i, k = n), Cs[i][n] → kMK; B = Bᵀ (k = n, n = j), Bs[j][n] → kNK. 2 × 2 warps of 32 × 32.
template <class T>
__device__ __forceinline__ void cb_role(const SsdBackwardParams& bp, const Bw& bw, int blk, char* smem) {
  constexpr int LD = kLD;
  const SsdParams& p = bp.fwd;
  const int tid = threadIdx.x, warp = tid >> 5, g = (tid & 31) >> 2, t4 = tid & 3;
  if (bw.dgcnt && tid == 0) bw.dgcnt[blk] = 0;  // (b, c, g, pair): launch 2 counts its slice blocks
  int x = blk;
  int tri = x % bw.ntri; x /= bw.ntri;
  const int grp = x % bw.G; x /= bw.G;
  const ChunkPos cpos = chunk_pos(x, bw.nc, bw.Q, p.seqlen);
  const int k = cpos.k, b = cpos.b, len = cpos.len;
  const int64_t t0 = cpos.t0;
  const int tri_idx = tri;
  int ib, jb;
  tri_block(tri, ib, jb);
  const int BB = bw.BB;
  const int i0 = ib * BB, j0 = jb * BB;
  const bool live = i0 < len;
  const int nri = live ? imin(BB, len - i0) : 0, nrj = live ? imin(BB, len - j0) : 0;
  T* Cs = reinterpret_cast<T*>(smem);
  T* Bs = Cs + 64 * LD;
  const int wm = warp & 1, wn = warp >> 1;
  const bool wact = (32 * wm < BB) && (32 * wn < BB);
  float acc[2][4][4];
#pragma unroll
  for (int a = 0; a < 2; ++a) zero_acc(acc[a]);
  const int N = bw.N;
  if (live) {
    const int64_t cbase = (int64_t)b * p.C_batch_stride + (t0 + i0) * p.C_seq_stride + (int64_t)grp * p.C_group_stride;
    const int64_t bbase = (int64_t)b * p.B_batch_stride + (t0 + j0) * p.B_seq_stride + (int64_t)grp * p.B_group_stride;
    // 16-bit C and B with 16-byte rows and dstate 64 or 128: every K block by cp.async at once (the
    // launch's shared memory holds 4 tiles for 16-bit types), the same values as fill_tile's
    bool cpa = false;
    if constexpr (sizeof(T) == 2) cpa = bw.vB && bw.vC && (N == 64 || N == 128);
    if (cpa) {
      for (int n0 = 0; n0 < N; n0 += 64) {
        cp_tile<64, LD>(Cs + n0 * 2 * LD, static_cast<const T*>(p.C) + cbase + n0, p.C_seq_stride, nri);
        cp_tile<64, LD>(Bs + n0 * 2 * LD, static_cast<const T*>(p.B) + bbase + n0, p.B_seq_stride, nrj);
      }
      cp_async_commit();
      cp_async_wait<0>();
      __syncthreads();
    }
    for (int n0 = 0; n0 < N; n0 += 64) {
      const int ncv = imin(64, N - n0);
      if (cpa) {  // tiles of K block n0 / 64 (C at 2·(n0/64), B after it)
        Cs = reinterpret_cast<T*>(smem) + n0 * 2 * LD;
        Bs = Cs + 64 * LD;
      } else {
        if (n0 > 0) __syncthreads();
        fill_tile<T>(Cs, LD, 64, 64, [&](int r, int c, float f[8]) {
          if (r < nri && c < ncv) ld8(p.C, p.C_type, cbase + (int64_t)r * p.C_seq_stride + n0 + c, imin(8, ncv - c), bw.vC, f);
          else zero8(f);
        });
        fill_tile<T>(Bs, LD, 64, 64, [&](int r, int c, float f[8]) {
          if (r < nrj && c < ncv) ld8(p.B, p.B_type, bbase + (int64_t)r * p.B_seq_stride + n0 + c, imin(8, ncv - c), bw.vB, f);
          else zero8(f);
        });
        __syncthreads();
      }
      if (wact) cb_kblock<LD>(acc, Cs, Bs, ncv, wm, wn);
    }
  }
  const int64_t t_off = ((((int64_t)b * bw.nc + k) * bw.G + grp) * bw.ntri + tri_idx) * 4096;
  if (bw.cbf) {  // the fixed launches' copy in fragment order (BB is 64, every warp is active)
    cb_store_frag(bw.cbf + t_off, acc, wm, wn);
  }
  if (bw.cbt) {  // the fixed launch 3's transposed copy, in fragment order
    // the transpose goes through shared memory (the C / B tiles' space, 64 × 68 floats)
    constexpr int LS = 68;
    float* S = reinterpret_cast<float*>(smem);
    __syncthreads();  // every warp is done with Cs / Bs
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int hr = 0; hr < 2; ++hr)
          *reinterpret_cast<float2*>(S + (32 * wm + 16 * mt + g + 8 * hr) * LS + 32 * wn + 8 * nt + 2 * t4) =
              make_float2(acc[mt][nt][2 * hr], acc[mt][nt][2 * hr + 1]);
    __syncthreads();
    float4* ot = reinterpret_cast<float4*>(bw.cbt + t_off);
#pragma unroll
    for (int u = 0; u < 8; ++u) {  // float4 v of the transposed tile: sub-tile v / 64, lane (v % 64) / 2, half v % 2
      const int v = tid + kThreads * u, sub = v >> 6, ln = (v >> 1) & 31, half = v & 1;
      const int jr = 16 * (sub >> 2) + (ln >> 2), ic = 16 * (sub & 3) + 2 * (ln & 3) + 8 * half;
      // values 4·half + f: index 2q + e, q = hr + 2 c8 (c8 = half), row j = jr + 8 hr, column i = ic + e
      ot[v] = make_float4(S[ic * LS + jr], S[(ic + 1) * LS + jr], S[ic * LS + jr + 8], S[(ic + 1) * LS + jr + 8]);
    }
  }
  if (!wact || !bw.cb) return;  // row-major tiles: only where a generic launch 2 or 3 reads them
  float* out = bw.cb + (((int64_t)b * bw.nc + k) * bw.G + grp) * bw.ntri * BB * BB + (int64_t)tri_idx * BB * BB;
  cb_store_rows(out, acc, BB, wm, wn);
}


// =============================================================================================
// Launch 1, fixed instance (fixed_prep_ok: 16-bit x/B/C with dy and z of the same type, 16-byte rows,
// headdim a multiple of 64, dstate a multiple of BN1). Roles a and b as outer_role, but the K blocks
// (32 positions) of the a, v (and raw z) tiles come by cp.async two stages deep, the first issued
// before the chunk's block scan, with no bounds checks (rows past the sequence are zero-filled and
// get weight 0). Each thread then weights the a vectors it copied itself, in fp32 with one rounding
// to T exactly as outer_role does (x·w, or dy·silu(z)·e), so both instances give the same bits.
// Role c is cb_role.
// =============================================================================================
template <int BN1, bool DY>
struct PrepFixed {
  static constexpr int KB = 32, LDA = kLD, LDV = BN1 + 8;
  static constexpr int kStage = KB * LDA * (DY ? 2 : 1) + KB * LDV;  // elements: a (+ raw z), v
  static constexpr int kSmem = kHdr + 2 * kStage * 2;
  static constexpr int kSmemU = kSmem + 2 * KB * LDA * 2;  // role b with the y_ungated tile too (bw.dz_l1)
};
// DZ (role b, bw.dz_l1): also dz from y_ungated (an instance of its own: its registers would cost the
// plain instance a block per SM on G4).
template <class T, int BN1, bool DY, bool DZ>
__device__ __forceinline__ void outer_role_fixed(const SsdBackwardParams& bp, const Bw& bw, int blk, char* smem) {
  using F = PrepFixed<BN1, DY>;
  static_assert(F::kSmem <= PrepFixed<BN1, true>::kSmem && F::kSmemU > F::kSmem,
                "the launch is sized for role b's stages (the larger; with the y_ungated tile, larger still)");
  constexpr int KB = F::KB, LDA = F::LDA, LDV = F::LDV, NT = BN1 / 16;
  const SsdParams& p = bp.fwd;
  const int tid = threadIdx.x;
  const OuterTile o = outer_tile(p, bw, blk);
  const int h = o.h, b = o.b, grp = o.grp, len = o.len;
  const int64_t t0 = o.t0;
  // with bw.dz_l1, the first n-tile's role-b block of each (b, chunk, head, p-tile) also writes dz from
  // the tiles it copies anyway (dy, z) and y_ungated: dz = dy · y_ungated · silu'(z)
  const bool dz_here = DY && DZ && o.ntl == 0;
  const bool outer = !(DY && o.k == 0 && !p.initial_states);  // dL/dH_{-1} is not needed
  if (!outer && !dz_here) return;

  float4* rec = reinterpret_cast<float4*>(smem);
  double* wsum = reinterpret_cast<double*>(smem + kRecBytes);
  float* w = reinterpret_cast<float*>(smem + kRecBytes + 64);
  T* st = reinterpret_cast<T*>(smem + kHdr);  // [2][kStage]
  const int p0 = o.pt * 64, n0 = o.ntl * BN1;
  const T* ag;  // row 0 of the chunk's a tile (x or dy), its p-tile
  int64_t ass;
  const T* zg = nullptr;
  int64_t zss = 0;
  const T* ug = nullptr;  // y_ungated, where this block writes dz
  int64_t uss = 0;
  if constexpr (DY) {
    ag = static_cast<const T*>(bp.dy) + (int64_t)b * bp.dy_batch_stride + t0 * bp.dy_seq_stride +
         (int64_t)h * bp.dy_head_stride + p0;
    ass = bp.dy_seq_stride;
    if (p.z) {
      zg = static_cast<const T*>(p.z) + (int64_t)b * p.z_batch_stride + t0 * p.z_seq_stride +
           (int64_t)h * p.z_head_stride + p0;
      zss = p.z_seq_stride;
    }
    if (dz_here) {
      ug = static_cast<const T*>(p.y_ungated) + (int64_t)b * p.y_ungated_batch_stride + t0 * p.y_ungated_seq_stride +
           (int64_t)h * p.y_ungated_head_stride + p0;
      uss = p.y_ungated_seq_stride;
    }
  } else {
    ag = static_cast<const T*>(p.x) + (int64_t)b * p.x_batch_stride + t0 * p.x_seq_stride +
         (int64_t)h * p.x_head_stride + p0;
    ass = p.x_seq_stride;
  }
  const T* vg = DY ? static_cast<const T*>(p.C) + (int64_t)b * p.C_batch_stride + t0 * p.C_seq_stride +
                         (int64_t)grp * p.C_group_stride + n0
                   : static_cast<const T*>(p.B) + (int64_t)b * p.B_batch_stride + t0 * p.B_seq_stride +
                         (int64_t)grp * p.B_group_stride + n0;
  const int64_t vss = DY ? p.C_seq_stride : p.B_seq_stride;
  const int nkb = (len + KB - 1) / KB;
  // a stage: the a tile (role b: then raw z, then y_ungated with bw.dz_l1), then the v tile
  constexpr int va = KB * LDA * (DY ? (DZ ? 3 : 2) : 1), stage = va + KB * LDV;
  auto issue = [&](int ib) {  // K block ib into stage ib & 1, one commit group
    const int kb = ib * KB, nv = imin(KB, len - kb);
    T* s0 = st + (ib & 1) * stage;
    cp_tile<64, LDA, KB>(s0, ag + kb * ass, ass, nv);
    if (DY && zg) cp_tile<64, LDA, KB>(s0 + KB * LDA, zg + kb * zss, zss, nv);
    if (DY && ug) cp_tile<64, LDA, KB>(s0 + 2 * KB * LDA, ug + kb * uss, uss, nv);
    cp_tile<BN1, LDV, KB>(s0 + va, vg + kb * vss, vss, nv);
    cp_async_commit();
  };
  issue(0);

  chunk_prep(p, b, h, t0, len, DY ? len : bw.Q, rec, wsum);
  __syncthreads();
  outer_weights<DY>(p, bw, o, rec, w);
  __syncthreads();

  float acc[2][NT][4];
#pragma unroll
  for (int a = 0; a < 2; ++a) zero_acc(acc[a]);
  for (int ib = 0; ib < nkb; ++ib) {
    const int kb = ib * KB, nr = imin(KB, len - kb);
    if (ib + 1 < nkb) {  // stage (ib + 1) & 1 was released by the barrier ending iteration ib - 1
      issue(ib + 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    T* As = st + (ib & 1) * stage;
    const T* Vs = As + va;
    // this thread's own copies of the a tile (and of z): rows tid / 8 + 16u, columns (tid % 8) · 8
#pragma unroll
    for (int u = 0; u < KB / 16; ++u) {
      const int r = tid / 8 + 16 * u, o = r * LDA + (tid % 8) * 8;
      const float sc = r < nr ? w[kb + r] : 0.f;
      uint4 v = *reinterpret_cast<const uint4*>(As + o);
      if (DY && zg) {
        const uint4 zz = *reinterpret_cast<const uint4*>(As + KB * LDA + o);
        uint32_t a4[4] = {v.x, v.y, v.z, v.w};
        const uint32_t z4[4] = {zz.x, zz.y, zz.z, zz.w};
        if (DZ && ug && r < nr) {  // dz, as launch 3 would (gate_grad)
          const uint4 uu = *reinterpret_cast<const uint4*>(As + 2 * KB * LDA + o);
          const uint32_t u4[4] = {uu.x, uu.y, uu.z, uu.w};
          uint32_t d4[4];
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            const float2 f = mma::unpack2<T>(a4[q]), zf = mma::unpack2<T>(z4[q]), yf = mma::unpack2<T>(u4[q]);
            d4[q] = mma::pack2<T>(gate_grad(f.x, yf.x, zf.x), gate_grad(f.y, yf.y, zf.y));
          }
          T* dzr = static_cast<T*>(bp.dz) + (int64_t)b * p.z_batch_stride + (t0 + kb + r) * zss +
                   (int64_t)h * p.z_head_stride + p0 + (tid % 8) * 8;
          *reinterpret_cast<uint4*>(dzr) = make_uint4(d4[0], d4[1], d4[2], d4[3]);
        }
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const float2 f = mma::unpack2<T>(a4[q]), zf = mma::unpack2<T>(z4[q]);
          a4[q] = mma::pack2<T>(f.x * silu(zf.x) * sc, f.y * silu(zf.y) * sc);
        }
        v = make_uint4(a4[0], a4[1], a4[2], a4[3]);
      } else {
        uint32_t a4[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const float2 f = mma::unpack2<T>(a4[q]);
          a4[q] = mma::pack2<T>(f.x * sc, f.y * sc);
        }
        v = make_uint4(a4[0], a4[1], a4[2], a4[3]);
      }
      *reinterpret_cast<uint4*>(As + o) = v;
    }
    __syncthreads();
    if (outer) outer_mma<T, BN1, KB>(acc, As, LDA, Vs, LDV, nr, 64, BN1);
    __syncthreads();  // every warp is done with stage ib & 1 before iteration ib + 1 refills it
  }

  if (outer) outer_store<BN1, DY>(bw, o, acc, DY && outer_starts_sequence(p, o, rec));
}

// Launch 1: roles a and b (the fixed instance or outer_role), then role c. DZ: see outer_role_fixed.
// The fixed-shape instances run 4 blocks per SM (119-128 registers without spills); the any-size
// ones would spill at 128 registers, so they ask for 3.
template <class T, int BN1, bool FIXED, bool DZ = false>
__global__ void __launch_bounds__(kThreads, FIXED ? 4 : 3)
k_bwd_prep(const __grid_constant__ SsdBackwardParams bp, const __grid_constant__ Bw bw) {
  pdl_wait();  // launched as a programmatic dependent of the stream's previous kernel (the forward's, say)
  pdl_launch_dependents();  // the next launch may be scheduled; it waits for this one (pdl_wait)
  extern __shared__ __align__(16) char smem[];
  int blk = blockIdx.x;
  if (blk < bw.n1a + bw.n1b) {
    const bool dy = blk >= bw.n1a;
    if (dy) blk -= bw.n1a;
    if constexpr (FIXED) {
      if (dy) outer_role_fixed<T, BN1, true, DZ>(bp, bw, blk, smem);
      else outer_role_fixed<T, BN1, false, false>(bp, bw, blk, smem);
    } else {
      if (dy) outer_role<T, BN1, true>(bp, bw, blk, smem);
      else outer_role<T, BN1, false>(bp, bw, blk, smem);
    }
    return;
  }
  cb_role<T>(bp, bw, blk - bw.n1a - bw.n1b, smem);
}

}  // namespace
}}  // namespace ssd::cuda
