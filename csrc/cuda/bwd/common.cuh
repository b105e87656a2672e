// What the backward's kernels share: the launch constants, the derived launch parameters (Bw), small
// device helpers and the cp.async tile copies. Included by the kernel headers of this folder.
#pragma once
#include "cuda/common/kernel.cuh"

namespace ssd { namespace cuda {
namespace {

constexpr int kLD = 72;        // pitch (elements) of tiles 64 wide (K-chunks of headdim / dstate)
constexpr int kLDS = 68;       // pitch (floats) of fp32 BB×BB tiles read transposed (conflict-free)
// Launch 1 header: position records float4 {s_hi, s_lo, d, seq} for 256 positions, 4 doubles for the
// block scan, 256 per-position weights.
constexpr int kRecBytes = kMaxQ * 16;
constexpr int kHdr = kRecBytes + 64 + kMaxQ * 4;

// Derived sizes, role splits and workspace pointers (host-filled, passed by value).
struct Bw {
  int Q, nc, hpg, H, P, N, G;
  int BB, nbb, ntri;   // position blocks: size min(Q, 64), count Q / BB, lower-triangular pairs
  int npt1, nnt1;      // launch 1 roles a/b: p-tiles of 64, n-tiles of BN1
  int n1a, n1b;        // launch 1: blocks of role a, of role b (role c after them)
  int nes, npp;        // launch 2 role a: blocks per (b, h); state-pass partials per (b, h, chunk)
  int n2a;             // launch 2: blocks of role a (role b after them)
  int npt;             // launch 3 role a: p-tiles of BPm
  int nnt;             // launch 3 roles b/c: n-tiles of BNg
  int n3a, n3b;        // launch 3: blocks of role a, of role b (= of role c)
  int s2, h2;          // launch 2 role b: head slices per group, heads per slice (dG partials)
  int s3, h3;          // launch 3 roles b/c: head slices per group, heads per slice
  int n4a;             // launch 4: blocks of the ddt role (the dB/dC combine role after them)
  int64_t dgS;         // floats per dG slice
  int s2r;             // dG slices launch 3 sums (1 where the fixed launch 2 has summed them into slice 0)
  int64_t pbcS;        // floats per dB/dC partial slice (b, c, g, Q, N)
  int vx, vdy, vz, vB, vC, vdx, vdz, vdB, vdC;  // 8-element vector access allowed
  int st4, pass4;      // states rows allow float4 (N % 4 == 0); state pass may use float4
  int want_dz;
  int use_yu;          // launch 3 takes the pre-gate output from fwd.y_ungated instead of recomputing it
  int vyu;             // ... with 8-element vector loads
  int dz_l1;           // with use_yu on the fixed launches 1 and 3: launch 1's role b writes dz, launch 3 does not
  int tslab;           // launch 2 leaves H_{k-1} / G_k as T in their slabs for the fixed launch 3 (tslab_index)
  int64_t PN;
  float4* rec;     // (b, h, c, Q)            position records of every chunk (padding: d = 0)
  float* decay;    // (b, h, c)               keep · exp(s_last)
  float* states;   // (b, h, c, p, n)         S_k, then H_{k-1}
  float* dstates;  // (b, h, c, p, n)         dHoff_k, then G_k
  float* cb;       // (b, c, g, ntri, BB, BB) C·Bᵀ, row-major (null when launches 2 and 3 are both fixed)
  float* cbf;      // (b, c, g, ntri, 64, 64) C·Bᵀ in fragment order (cb_frag_offset), fixed launches 2 / 3
  float* cbt;      // (b, c, g, ntri, 64, 64) its tiles transposed ([j][i]), in fragment order, idem
  float* dg;       // (s2, b, c, g, ntri, BB, BB) dG partials: slice s = Σ_{h in slice s} L ∘ dM
  int* dgcnt;      // (b, c, g, ntri)         fixed launch 2 with s2 > 1: slice blocks done (launch 1 zeroes)
  float* prow;     // (b, h, c, ntri, BB)     row sums of P per block
  float* pcol;     // (b, h, c, ntri, BB)     column sums of P per block
  float* ppass;    // (b, h, c, npp)          decay_k ⟨G_k, H_{k-1}⟩ partials
  float* poff;     // (b, h, c, npt, Q)       dY_j · Y_off_j per p-tile
  float* pq;       // (b, h, c, npt, Q)       x̄_j · w_j G_k B_j per p-tile
  float* pxdx;     // (b, h, c, npt, Q)       x_j · dX̄_j per p-tile
  float* pdD;      // (b, c, h, nbb, p)       Σ_rows dY ⊙ x per position block
  float* pdA;      // (b, c, h)               Σ_t d_t da_t per chunk
  float* pdb;      // (b, c, h)               Σ_t ddt_t per chunk
  float* pbc;      // (2, s3, b, c, g, Q, N)  dC (0) and dB (1) partials per head slice (s3 > 1 only)
};

// ---- small device helpers ---------------------------------------------------------------------
// With bw.tslab, launch 2 rounds H_{k-1} and G_k to T once and stores them in their fp32 slabs, in the
// first half of each 512-element segment (the segment one pass_role block owns): element e of the
// p·n slab at T-index tslab_index(e). A row of dstate 64 or 128 stays contiguous.
__device__ __forceinline__ int tslab_index(int e) { return ((e >> 9) << 10) + (e & 511); }

__device__ __forceinline__ void zero8(float f[8]) {
#pragma unroll
  for (int e = 0; e < 8; ++e) f[e] = 0.f;
}
// Sum over the 32 lanes (fixed butterfly: the same bits every run).
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
// Sum over the 4 lanes of a quad (t4 = 0..3) that share accumulator rows.
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  v += __shfl_xor_sync(0xffffffffu, v, 2);
  return v;
}

// A warp's row sums s (rows wr + g and wr + g + 8 of the block, complete in every lane of the quad)
// times m0 / m1 -> dst[row], for the rows below nrows.
__device__ __forceinline__ void store_row_sums(float* dst, const float s[2], float m0, float m1, int wr, int nrows) {
  const int lane = threadIdx.x & 31, g = lane >> 2;
  if ((lane & 3) == 0) {
    if (wr + g < nrows) dst[wr + g] = s[0] * m0;
    if (wr + g + 8 < nrows) dst[wr + g + 8] = s[1] * m1;
  }
}
// dY = dy · silu(z) (dy alone without z): 8 values at position t, head h, columns c.. (n valid).
__device__ __forceinline__ void ld8_dy(const SsdBackwardParams& bp, const Bw& bw, int b, int64_t t, int h, int c,
                                       int n, float f[8]) {
  ld8(bp.dy, bp.dy_type, (int64_t)b * bp.dy_batch_stride + t * bp.dy_seq_stride + (int64_t)h * bp.dy_head_stride + c,
      n, bw.vdy, f);
  const SsdParams& p = bp.fwd;
  if (p.z) {
    float zf[8];
    ld8(p.z, p.z_type, (int64_t)b * p.z_batch_stride + t * p.z_seq_stride + (int64_t)h * p.z_head_stride + c, n,
        bw.vz, zf);
#pragma unroll
    for (int e = 0; e < 8; ++e) f[e] *= silu(zf[e]);
  }
}

// Store 8 floats as T at a 16-byte aligned shared address.
template <class T>
__device__ __forceinline__ void sts8(T* dst, const float f[8]) {
  if constexpr (sizeof(T) == 2) {
    *reinterpret_cast<uint4*>(dst) = make_uint4(mma::pack2<T>(f[0], f[1]), mma::pack2<T>(f[2], f[3]),
                                                mma::pack2<T>(f[4], f[5]), mma::pack2<T>(f[6], f[7]));
  } else {
    float4* d4 = reinterpret_cast<float4*>(dst);
    d4[0] = make_float4(f[0], f[1], f[2], f[3]);
    d4[1] = make_float4(f[4], f[5], f[6], f[7]);
  }
}

// Fill a rows × cols shared tile (cols a multiple of 8) with dst[r*ld + c] = T(f(r, c)), where
// f(r, c, out[8]) writes the 8 values of row r, columns c..c+7 (zeros outside the valid range).
// UNROLL: vectors per thread in flight (more loads in flight, more registers).
template <class T, int UNROLL = 2, class F>
__device__ __forceinline__ void fill_tile(T* __restrict__ dst, int ld, int rows, int cols, F&& f) {
  const int vpr = cols >> 3;
  const int total = rows * vpr;
#pragma unroll UNROLL
  for (int v = threadIdx.x; v < total; v += kThreads) {
    const int r = v / vpr, c = (v - r * vpr) * 8;
    float o[8];
    f(r, c, o);
    sts8<T>(dst + r * ld + c, o);
  }
}

// acc (rows wr..wr+15 of a block tile, NC columns) += A (16 × kv, shared kMK, rows from wr) ·
// B (kv × NC, shared layout BL); kv <= 64, nv = valid columns (16-column groups past it skipped).
template <class T, int NC, int BL>
__device__ __forceinline__ void mma_rows(float (&acc)[NC / 8][4], const T* As, int lda, int wr, const T* Bs, int ldb,
                                         int kv, int nv) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    if (16 * kk < kv) {
      FragA<T> a;
      mma::ldA<T, mma::kMK>(a, As, lda, wr, 16 * kk);
      mma::mma_cols<BL, NC>(acc, a, Bs, ldb, 16 * kk, nv);
    }
  }
}

// dY = dy ⊙ silu(z) for this thread's cp_tile<64, 72> chunks: raw dy in Dy, z in Zr (or none),
// result (T) into dst. Same rounding as ld8_dy + sts8.
template <class T>
__device__ __forceinline__ void dy_convert(T* dst, const T* Dy, const T* Zr, bool has_z) {
  constexpr int LD = 72;
#pragma unroll
  for (int u = 0; u < 4; ++u) {
    const int o = (threadIdx.x / 8 + 16 * u) * LD + (threadIdx.x % 8) * 8;
    uint4 a = *reinterpret_cast<const uint4*>(Dy + o);
    if (has_z) {
      const uint4 zz = *reinterpret_cast<const uint4*>(Zr + o);
      uint32_t w[4] = {a.x, a.y, a.z, a.w};
      const uint32_t zw[4] = {zz.x, zz.y, zz.z, zz.w};
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const float2 d2 = mma::unpack2<T>(w[q]), z2 = mma::unpack2<T>(zw[q]);
        w[q] = mma::pack2<T>(d2.x * silu(z2.x), d2.y * silu(z2.y));
      }
      a = make_uint4(w[0], w[1], w[2], w[3]);
    }
    *reinterpret_cast<uint4*>(dst + o) = a;
  }
}
template <class T>
__device__ __forceinline__ void unpack8(const uint4& u, float f[8]) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const float2 v = mma::unpack2<T>(w[q]);
    f[2 * q] = v.x;
    f[2 * q + 1] = v.y;
  }
}

}  // namespace
}}  // namespace ssd::cuda
