// CUDA forward of Mamba-2's SSD chunked scan (see docs: shared/design/ssd-math.md, §1, §2, §4).
//
// Three launches:
//   1. k_state_bmm   one grid, two roles (split by blockIdx.x):
//        a. chunk state: per (b, chunk, head, p-tile of 64, n-tile of BN1) the dA cumsum of the
//           chunk and S_k = sum_j exp(s_last - s_j) d_j x_j (x) B_j  (tensor cores, K = chunk)
//           into the fp32 workspace; also the chunk's decay keep_k * exp(s_last).
//        b. C B^T: per (b, chunk, group, lower-triangular 64x64 block) the raw C_i . B_j (fp32) into
//           the workspace, once per group, read by every head of the group.
//   2. k_state_pass  per (b, head, 1024 elements of p*n): sequential over chunks, replaces S_k by
//      the state entering chunk k (H_{k-1}), writes final_states.
//   3. k_chunk_scan  per (b, chunk, head, 64-row block, p-tile): dA cumsum again, then
//      Y = exp(s_i) C_i H_{k-1}^T + (L o CB^T) X + D x, gated by silu(z), stored once.
// Fixed path (16-bit x/B/C, headdim 64/128, dstate 64/128/256, chunk >= 64, no seq_idx, aligned):
//   kernel 1 also stores each chunk's position records (cumsum, step) for the scan, which reads them
//   instead of recomputing; kernel 2 stores the entering states as 16-bit for the scan; and when
//   there are enough (b, head, p-tile) chains to fill the GPU, kernels 1 and 2 are replaced by
//      1'. k_rec_bmm    the records and the C B^T role;
//      2'. k_seq_state  per (b, head, 64 p-rows): walks the chunks in order with the state in its
//          accumulators, writing the 16-bit entering states (no fp32 state through memory).
//
// Compute paths: x, B and C all bfloat16 -> bf16 mma.sync m16n8k16; all float16 -> f16 mma;
// anything else (float32 or a mix) -> the same kernels with an fp32 FMA emulation of the mma
// (exact fp32 arithmetic, slow). Accumulation, cumulative sums (double inside the chunk, kept as
// a float hi/lo pair) and states are fp32 in every path. Determinism: no atomics at all.
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <type_traits>

#include "cuda/backend.h"
#include "cuda/detail.h"
#include "cuda/common/chunk.cuh"
#include "cuda/common/device.cuh"
#include "cuda/common/mma.cuh"

namespace ssd { namespace cuda {
namespace {

using namespace dev;
using mma::bf16;
using mma::f16;
using mma::FragA;
using mma::FragB;

constexpr int kThreads = 128;   // every kernel: 4 warps
constexpr int kMaxQ = 256;
// Shared-memory header common to kernels 1 and 3: per-position record float4 {s_hi, s_lo, d, seq}
// for up to 256 positions, 4 doubles for the block scan, then 256 floats (kernel 1's weights).
constexpr int kRecBytes = kMaxQ * 16;
constexpr int kHdr = kRecBytes + 64 + kMaxQ * 4;  // 5184, a multiple of 16

struct Dv {
  int Q, nc, hpg;
  int BB, lbb, ntri;       // C B^T block size (min(Q, 64)), log2, lower-triangular blocks per chunk
  int n16;                 // dstate rounded up to 16
  int nib;                 // 64-row blocks per chunk (kernel 3)
  int npt1, nnt1;          // kernel 1 p-tiles (64) and n-tiles (BN1)
  int npt3;                // kernel 3 p-tiles (BP)
  int n_state_blocks;      // kernel 1 blocks of the chunk-state role
  int nes;                 // kernel 2 blocks per (b, head)
  int vx, vB, vC;          // 16-byte vector loads allowed (16-bit paths)
  int st4;                 // states rows allow float4 (dstate % 4 == 0)
  int pass4;               // kernel 2 may use float4 (p*n % 4 == 0, aligned initial/final states)
  int x8, z8, y8, yu8;     // kernel 3 epilogue: 8-element vector accesses allowed (yu: y_ungated)
  int scan_region;         // kernel 3: bytes of the Cs/Hs (and epilogue staging) region
  int64_t PN;              // headdim * dstate
  int64_t cb_per;          // floats of C B^T per (b, chunk, group)
  float* states;           // (b, h, c, p, n)
  float* decay;            // (b, h, c)
  float* cb;               // (b, c, g, ntri, BB, BB)
  void* hs16;              // fixed scan: the entering states (b, h, c, p, n) as T, written by kernel 2
  int pass_f32;            // kernel 2 writes the entering states over `states` (fp32) too
  float4* recs;            // sequential pass: per-position records (b, h, c, Q) for the fixed scan, or null
  int cb_frag;             // C B^T tiles in the fixed scan's fragment order (cb_frag_offset), else row-major
};

// ---- small device helpers ---------------------------------------------------------------------
// Chunk k of (b, head h)'s position records in dv.recs, laid out (b, h, chunk, Q) as float4.
__device__ __forceinline__ float4* chunk_recs(const Dv& dv, int H, int b, int h, int64_t k) {
  return dv.recs + (((int64_t)b * H + h) * dv.nc + k) * dv.Q;
}
// The block stores a chunk's records (all Q, padding included) from shared memory.
__device__ __forceinline__ void store_recs(const Dv& dv, int H, int b, int h, int k, const float4* rec) {
  float4* rg = chunk_recs(dv, H, b, h, k);
  for (int j = threadIdx.x; j < dv.Q; j += blockDim.x) rg[j] = rec[j];
}

// Eight 16-bit values (one 16-byte vector) times sc, rounded back to T.
template <class T>
__device__ __forceinline__ uint4 scale8(uint4 o, float sc) {
  float2 f;
  f = mma::unpack2<T>(o.x); o.x = mma::pack2<T>(f.x * sc, f.y * sc);
  f = mma::unpack2<T>(o.y); o.y = mma::pack2<T>(f.x * sc, f.y * sc);
  f = mma::unpack2<T>(o.z); o.z = mma::pack2<T>(f.x * sc, f.y * sc);
  f = mma::unpack2<T>(o.w); o.w = mma::pack2<T>(f.x * sc, f.y * sc);
  return o;
}

// Load a rows x cols tile (cols a multiple of 8) of a 2-D strided global tensor into shared
// memory dst[r*ld + c] as T, zero outside nr valid rows / nc valid columns; optional row scale.
// 16-bit T: the source has type T (the dispatch guarantees it); vec = 16-byte loads allowed.
template <class T, bool SCALE>
__device__ __forceinline__ void load_tile(T* __restrict__ dst, int ld, int rows, int cols,
                                          const void* __restrict__ src, SsdDtype st, int64_t base,
                                          int64_t rs, int nr, int nc, bool vec,
                                          const float* __restrict__ scale) {
  const int vpr = cols >> 3;
  const int total = rows * vpr;
  if constexpr (sizeof(T) == 2) {
    const uint16_t* s16 = static_cast<const uint16_t*>(src);
    for (int v0 = threadIdx.x; v0 < total; v0 += 4 * kThreads) {
      uint4 raw[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int v = v0 + u * kThreads;
        raw[u] = make_uint4(0u, 0u, 0u, 0u);
        if (v < total) {
          const int r = v / vpr, c = (v - r * vpr) * 8;
          if (r < nr && c < nc) {
            const uint16_t* sp = s16 + base + (int64_t)r * rs + c;
            if (vec && c + 8 <= nc) {
              raw[u] = __ldg(reinterpret_cast<const uint4*>(sp));
            } else {
              uint32_t w[4];
#pragma unroll
              for (int q = 0; q < 4; ++q) {
                const uint32_t lo = (c + 2 * q < nc) ? sp[2 * q] : 0u;
                const uint32_t hi = (c + 2 * q + 1 < nc) ? sp[2 * q + 1] : 0u;
                w[q] = lo | (hi << 16);
              }
              raw[u] = make_uint4(w[0], w[1], w[2], w[3]);
            }
          }
        }
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int v = v0 + u * kThreads;
        if (v < total) {
          const int r = v / vpr, c = (v - r * vpr) * 8;
          uint4 o = raw[u];
          if constexpr (SCALE) {
            o = scale8<T>(o, (r < nr) ? scale[r] : 0.f);
          }
          *reinterpret_cast<uint4*>(dst + r * ld + c) = o;
        }
      }
    }
  } else {
    for (int v = threadIdx.x; v < total; v += kThreads) {
      const int r = v / vpr, c = (v - r * vpr) * 8;
      float f[8];
      const float sc = (SCALE && r < nr) ? scale[r] : 1.f;
#pragma unroll
      for (int e = 0; e < 8; ++e)
        f[e] = (r < nr && c + e < nc) ? ld_f(src, st, base + (int64_t)r * rs + c + e) * sc : 0.f;
      float4* d4 = reinterpret_cast<float4*>(dst + r * ld + c);
      d4[0] = make_float4(f[0], f[1], f[2], f[3]);
      d4[1] = make_float4(f[4], f[5], f[6], f[7]);
    }
  }
}

// One 16-byte cp.async into shared memory (address d); bytes < 16 copies that many and zero-fills the
// rest (bytes 0: no global read, src only needs to be a valid address).
__device__ __forceinline__ void cp_async16(uint32_t d, const void* src, int bytes = 16) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(bytes));
}

// Asynchronous variant for 16-bit T with 16-byte-aligned rows (vec): cp.async with zero fill
// (src-size < 16 fills the rest of the 16 bytes with zeros). Caller commits / waits.
template <class T>
__device__ __forceinline__ void load_tile_async(T* __restrict__ dst, int ld, int rows, int cols,
                                                const void* __restrict__ src, int64_t base, int64_t rs,
                                                int nr, int nc) {
  static_assert(sizeof(T) == 2, "16-bit only");
  const int vpr = cols >> 3;
  const int total = rows * vpr;
  const T* s = static_cast<const T*>(src);
  for (int v = threadIdx.x; v < total; v += kThreads) {
    const int r = v / vpr, c = (v - r * vpr) * 8;
    int bytes = 0;
    if (r < nr && c < nc) bytes = 2 * imin(8, nc - c);
    const T* sp = bytes ? s + base + (int64_t)r * rs + c : s;  // any valid address when bytes == 0
    const uint32_t da = static_cast<uint32_t>(__cvta_generic_to_shared(dst + r * ld + c));
    cp_async16(da, sp, bytes);
  }
}

// Same for an fp32 source (the states), converted to T.
template <class T>
__device__ __forceinline__ void load_tile_f32(T* __restrict__ dst, int ld, int rows, int cols,
                                              const float* __restrict__ src, int64_t rs, int nr,
                                              int nc, bool vec4) {
  const int vpr = cols >> 3;
  const int total = rows * vpr;
  for (int v0 = threadIdx.x; v0 < total; v0 += 4 * kThreads) {
    float f[4][8];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int v = v0 + u * kThreads;
      const int r = v / vpr, c = (v - r * vpr) * 8;
#pragma unroll
      for (int e = 0; e < 8; ++e) f[u][e] = 0.f;
      if (v < total && r < nr && c < nc) {
        const float* sp = src + (int64_t)r * rs + c;
        if (vec4 && c + 8 <= nc) {
          const float4 a = __ldg(reinterpret_cast<const float4*>(sp));
          const float4 b = __ldg(reinterpret_cast<const float4*>(sp) + 1);
          f[u][0] = a.x; f[u][1] = a.y; f[u][2] = a.z; f[u][3] = a.w;
          f[u][4] = b.x; f[u][5] = b.y; f[u][6] = b.z; f[u][7] = b.w;
        } else {
#pragma unroll
          for (int e = 0; e < 8; ++e) f[u][e] = (c + e < nc) ? sp[e] : 0.f;
        }
      }
    }
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const int v = v0 + u * kThreads;
      if (v < total) {
        const int r = v / vpr, c = (v - r * vpr) * 8;
        if constexpr (sizeof(T) == 2) {
          uint4 o;
          o.x = mma::pack2<T>(f[u][0], f[u][1]);
          o.y = mma::pack2<T>(f[u][2], f[u][3]);
          o.z = mma::pack2<T>(f[u][4], f[u][5]);
          o.w = mma::pack2<T>(f[u][6], f[u][7]);
          *reinterpret_cast<uint4*>(dst + r * ld + c) = o;
        } else {
          float4* d4 = reinterpret_cast<float4*>(dst + r * ld + c);
          d4[0] = make_float4(f[u][0], f[u][1], f[u][2], f[u][3]);
          d4[1] = make_float4(f[u][4], f[u][5], f[u][6], f[u][7]);
        }
      }
    }
  }
}

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
  const int k = x % dv.nc;
  const int b = x / dv.nc;
  const int grp = h / dv.hpg;
  const int64_t t0 = (int64_t)k * dv.Q;
  const int len = (int)lmin(dv.Q, p.seqlen - t0);

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
      const int prev = k > 0 ? p.seq_idx[(int64_t)b * p.seq_idx_batch_stride + t0 - 1] : 0;
      keep = (sid_last == prev);
    }
    dv.decay[((int64_t)b * H + h) * dv.nc + k] = keep ? ex2(rl.x + rl.y) : 0.f;
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
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
  int x = blk;
  int tri = x % dv.ntri; x /= dv.ntri;
  const int G = (int)p.ngroups;
  const int grp = x % G; x /= G;
  const int k = x % dv.nc;
  const int b = x / dv.nc;
  const int tri_idx = tri;
  int ib = 0;
  while (tri > ib) { tri -= ib + 1; ++ib; }
  const int jb = tri;
  const int BB = dv.BB;
  const int64_t t0 = (int64_t)k * dv.Q;
  const int len = (int)lmin(dv.Q, p.seqlen - t0);
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
    if (wact) {
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        if (16 * kk < ncv) {
          FragA<T> a[2];
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) mma::ldA<T, mma::kMK>(a[mt], Cs, LD, 32 * wm + 16 * mt, 16 * kk);
#pragma unroll
          for (int np = 0; np < 2; ++np) {
            FragB<T> b0, b1;
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
    __syncthreads();
  }
  if (!wact) return;
  float* out = dv.cb + (((int64_t)b * dv.nc + k) * G + grp) * dv.cb_per + (int64_t)tri_idx * BB * BB;
  if (dv.cb_frag) {  // BB is 64 (the fixed scan's chunks are multiples of 64); acc[mt][nt] is the mma C layout
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int np = 0; np < 2; ++np) {
        float4* o = reinterpret_cast<float4*>(out + cb_frag_offset(2 * wm + mt, 2 * wn + np, lane));
        o[0] = make_float4(acc[mt][2 * np][0], acc[mt][2 * np][1], acc[mt][2 * np][2], acc[mt][2 * np][3]);
        o[1] = make_float4(acc[mt][2 * np + 1][0], acc[mt][2 * np + 1][1], acc[mt][2 * np + 1][2], acc[mt][2 * np + 1][3]);
      }
    return;
  }
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

template <class T, int BN1>
__global__ void __launch_bounds__(kThreads, sizeof(T) == 2 ? StateTuning::kMinBlocks16 : 3)  // fp32 (FMA mma): 3, no spills
k_state_bmm(const __grid_constant__ SsdParams p, const __grid_constant__ Dv dv) {
  extern __shared__ __align__(16) char smem[];
  pdl_launch_dependents();
  if ((int)blockIdx.x < dv.n_state_blocks) state_role<T, BN1>(p, dv, blockIdx.x, smem);
  else bmm_role<T>(p, dv, blockIdx.x - dv.n_state_blocks, smem);
}

// ---- kernel 2: state passing ------------------------------------------------------------------
// Each thread owns 4 consecutive elements of one (b, head)'s p*n state and walks the chunks. The
// state entering chunk k replaces S_k in fp32 (for the generic scan and varlen), and/or is written
// as T into hs16 (for the fixed scan, which multiplies it in T anyway: half the bytes, read by cp.async).
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
  const int64_t bh = blockIdx.x / dv.nes;
  const int64_t e = ((int64_t)eb * 256 + threadIdx.x) * 4;
  const int64_t PN = dv.PN;
  if (e >= PN) return;
  const int nc = dv.nc;
  float* S = dv.states + bh * nc * PN + e;
  const int64_t off0 = bh * nc * PN + e;  // of S, for hs16
  const float* dec = dv.decay + bh * nc;
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
          H.x = fmaf(a[u], H.x, cur[u].x); H.y = fmaf(a[u], H.y, cur[u].y);
          H.z = fmaf(a[u], H.z, cur[u].z); H.w = fmaf(a[u], H.w, cur[u].w);
        }
      }
    }
    if (p.final_states) *reinterpret_cast<float4*>(p.final_states + bh * PN + e) = H;
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
        H = fmaf(dec[k], H, cur);
      }
      if (p.final_states) p.final_states[bh * PN + e + u] = H;
    }
  }
}

// ---- kernel 3: chunk scan (outputs) -----------------------------------------------------------
// Block: 64 rows (positions) of one chunk, p-tile of BP columns, one head. Warp w owns rows
// 16w..16w+15: acc[BP/8][4] (fp32).
//   Y_off: A = C_i (stored Cs[i][n], kMK), B = H^T (k = n, n = p; stored Hs[p][n], kNK).
//   Y_diag: A = P = CB o exp(s_i - s_j) d_j built in registers (C B^T from the workspace),
//           B = X_j (k = j, n = p; stored Xs[j][p], kKN).
template <class T, int BP>
__global__ void __launch_bounds__(kThreads, sizeof(T) == 2 ? (BP == 64 ? 3 : 2) : 1)
k_chunk_scan(const __grid_constant__ SsdParams p, const __grid_constant__ Dv dv) {
  constexpr int NT = BP / 8, LDX = BP + 8;
  constexpr bool k16 = sizeof(T) == 2;
  extern __shared__ __align__(16) char smem[];
  pdl_wait();  // the generic scan reads kernel 1's and 2's outputs from the start
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
  int x = blockIdx.x;
  const int iblk = dv.nib - 1 - x % dv.nib; x /= dv.nib;  // heavy (late) row blocks first
  const int pt = x % dv.npt3; x /= dv.npt3;
  const int H = (int)p.nheads;
  const int h = x % H; x /= H;
  const int k = x % dv.nc;
  const int b = x / dv.nc;
  const int grp = h / dv.hpg;
  const int64_t t0 = (int64_t)k * dv.Q;
  const int len = (int)lmin(dv.Q, p.seqlen - t0);
  const int i0 = iblk * 64;
  if (i0 >= len) return;  // padding only: nothing to write
  const int rows_end = imin(i0 + 64, len);
  const int N = (int)p.dstate;
  const int LDC = dv.n16 + 8;

  float4* rec = reinterpret_cast<float4*>(smem);
  double* wsum = reinterpret_cast<double*>(smem + kRecBytes);
  T* Cs = reinterpret_cast<T*>(smem + kHdr);
  T* Hs = Cs + 64 * LDC;
  float* Ys = reinterpret_cast<float*>(Cs);  // epilogue staging, aliases Cs/Hs (size: see host)
  T* Xs0 = reinterpret_cast<T*>(smem + kHdr + dv.scan_region);
  constexpr int LDY = BP + 4;

  const int p0 = pt * BP;
  const int npv = imin(BP, (int)p.headdim - p0);
  const bool has_prev = (k > 0) || (p.initial_states != nullptr);
  const int BB = dv.BB, lbb = dv.lbb;
  const int64_t xbase = (int64_t)b * p.x_batch_stride + t0 * p.x_seq_stride + (int64_t)h * p.x_head_stride + p0;
  bool use_async = false;
  if constexpr (k16) use_async = dv.vx;
  // X tile of j-block jb into buffer jb & 1 (asynchronous when possible).
  auto load_x = [&](int jb) {
    T* dst = Xs0 + (jb & 1) * 64 * LDX;
    const int j0 = jb * BB;
    if constexpr (k16) {
      if (use_async) {
        load_tile_async<T>(dst, LDX, BB, BP, p.x, xbase + (int64_t)j0 * p.x_seq_stride, p.x_seq_stride,
                           imin(BB, rows_end - j0), npv);
        cp_async_commit();
        return;
      }
    }
    load_tile<T, false>(dst, LDX, BB, BP, p.x, p.x_type, xbase + (int64_t)j0 * p.x_seq_stride, p.x_seq_stride,
                        imin(BB, rows_end - j0), npv, dv.vx, nullptr);
  };
  // Prologue: issue every independent load first (X block 0 and C asynchronously, dt, states).
  load_x(0);
  const int64_t cbase = (int64_t)b * p.C_batch_stride + (t0 + i0) * p.C_seq_stride + (int64_t)grp * p.C_group_stride;
  bool c_async = false;
  if constexpr (k16) {
    if (has_prev && dv.vC) {
      load_tile_async<T>(Cs, LDC, 64, dv.n16, p.C, cbase, p.C_seq_stride, rows_end - i0, N);
      cp_async_commit();
      c_async = true;
    }
  }
  float dreg[2];
  int sreg[2];
  prep_load(p, b, h, t0, len, rows_end, dreg, sreg);
  if (has_prev) {
    if (!c_async)
      load_tile<T, false>(Cs, LDC, 64, dv.n16, p.C, p.C_type, cbase, p.C_seq_stride, rows_end - i0, N, dv.vC, nullptr);
    load_tile_f32<T>(Hs, LDC, BP, dv.n16,
                     dv.states + (((int64_t)b * H + h) * dv.nc + k) * dv.PN + (int64_t)p0 * N, N, npv, N,
                     dv.st4);
  }
  prep_scan(p, h, rows_end, dreg, sreg, rec, wsum);
  if (c_async) cp_async_wait<0>();
  __syncthreads();

  float acc[NT][4];
#pragma unroll
  for (int c = 0; c < NT; ++c)
#pragma unroll
    for (int q = 0; q < 4; ++q) acc[c][q] = 0.f;

  const int wr0 = i0 + 16 * warp;  // chunk-relative first row of this warp
  const bool wact = wr0 < rows_end;
  float4 rI[2];
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const int i = wr0 + g + 8 * hr;
    rI[hr] = (i < rows_end) ? rec[i] : make_float4(0.f, 0.f, 0.f, 0.f);
  }

  // Output from the entering state.
  if (has_prev && wact) {
    for (int kk = 0; kk < dv.n16 / 16; ++kk) {
      FragA<T> a;
      mma::ldA<T, mma::kMK>(a, Cs, LDC, 16 * warp, 16 * kk);
#pragma unroll
      for (int np = 0; np < BP / 16; ++np) {
        if (16 * np < npv) {
          FragB<T> b0, b1;
          mma::ldB2<T, mma::kNK>(b0, b1, Hs, LDC, 16 * kk, 16 * np);
          mma::mma(acc[2 * np], a, b0);
          mma::mma(acc[2 * np + 1], a, b1);
        }
      }
    }
    int sid_prev = 0;
    if (p.seq_idx && k > 0) sid_prev = p.seq_idx[(int64_t)b * p.seq_idx_batch_stride + t0 - 1];
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const int i = wr0 + g + 8 * hr;
      const bool ok = i < rows_end && (!p.seq_idx || __float_as_int(rI[hr].w) == sid_prev);
      const float f = ok ? ex2(rI[hr].x + rI[hr].y) : 0.f;
#pragma unroll
      for (int c = 0; c < NT; ++c) {
        acc[c][2 * hr] *= f;
        acc[c][2 * hr + 1] *= f;
      }
    }
  }

  // Intra-chunk part.
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
  constexpr SsdDtype kT = sizeof(T) == 4 ? SSD_FLOAT32 : (std::is_same<T, bf16>::value ? SSD_BFLOAT16 : SSD_FLOAT16);
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
#pragma unroll
          for (int np = 0; np < BP / 16; ++np) {
            if (16 * np < npv) {
              FragB<T> b0, b1;
              mma::ldB2<T, mma::kKN>(b0, b1, Xs, LDX, 16 * kk, 16 * np);
              mma::mma(acc[2 * np], a, b0);
              mma::mma(acc[2 * np + 1], a, b1);
            }
          }
        }
      }
    }
    __syncthreads();  // all warps done with buffer jb & 1
  }

  // Epilogue: stage the fp32 tile in shared memory, then + D x, gate and store with 8-wide
  // coalesced accesses. Rows past the sequence are never written.
  if (wact) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int hr = 0; hr < 2; ++hr)
        *reinterpret_cast<float2*>(Ys + (16 * warp + g + 8 * hr) * LDY + 8 * nt + 2 * t4) =
            make_float2(acc[nt][2 * hr], acc[nt][2 * hr + 1]);
  }
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

// ---- kernel 3, fixed path ----------------------------------------------------------------------
// Same math and block decomposition as k_chunk_scan (one block = 64 rows of one chunk, one head,
// all P columns), specialised for the common shapes so that every trip count, tile size and
// shared-memory pitch is a compile-time constant and no bounds checks remain inside the tiles:
//   16-bit x/B/C (T), y and z (if any) of type T, chunk >= 64 (C B^T blocks are 64x64),
//   headdim P in {64, 128}, dstate N in {64, 128, 256}, no seq_idx, and 16-byte vector access
//   to x, C, z, y (base aligned, strides multiples of 8 elements). The host selects it.
// Partial last chunk: rows >= len are zero-filled by cp.async (src-size 0), have d = 0 in the
// records (so their P entries are exactly 0) and are never stored.
template <int P, int N>
struct ScanFixed {
  // LDY: P + 8 floats, so that the float2 stores of the accumulators hit each bank twice (P + 4: 4-way)
  static constexpr int LDC = N + 8, LDX = P + 8, LDY = P + 8;
  static constexpr int kRec = kMaxQ * 16;                 // float4 records of up to 256 positions
  static constexpr int kCH = (64 + P) * LDC * 2;          // C tile (64 x N) + H tile (P x N), 16-bit
  static constexpr int kYs = 64 * LDY * 4;                // epilogue staging (fp32), aliases C/H
  static constexpr int kRegion = (((kCH > kYs) ? kCH : kYs) + 15) & ~15;
  static constexpr int kXbuf = 64 * LDX * 2;              // one X (or z) tile
  static constexpr int kSmem = kRec + kRegion + 2 * kXbuf;
};

// 64 rows x COLS (16-bit) of a row-strided global tensor -> shared dst[r*LD + c] by cp.async;
// rows >= nvalid are zero-filled (no global read). src points at row 0 (must be a valid row).
template <int COLS, int LD, class T, int NTH = kThreads>
__device__ __forceinline__ void cp_tile64(T* dst, const T* src, int64_t rs, int nvalid) {
  constexpr int VPR = COLS / 8;   // 16-byte vectors per row
  constexpr int RPI = NTH / VPR;  // rows per pass of the block (NTH threads)
  static_assert(NTH % VPR == 0 && 64 % RPI == 0 && RPI <= 64, "tile shape");
  const int r0 = threadIdx.x / VPR, c = (threadIdx.x % VPR) * 8;
  const T* s = src + r0 * rs + c;
  const int64_t step = RPI * rs;
  uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst + r0 * LD + c));
#pragma unroll
  for (int u = 0; u < 64 / RPI; ++u) {
    const bool ok = r0 + u * RPI < nvalid;
    cp_async16(d, ok ? s : src, ok ? 16 : 0);
    s += step;
    d += RPI * LD * 2;
  }
}

template <class T, int P, int N>
__global__ void __launch_bounds__(kThreads, P == 64 ? 4 : 2)
k_chunk_scan_fixed(const __grid_constant__ SsdParams p, const __grid_constant__ Dv dv) {
  using S = ScanFixed<P, N>;
  constexpr int LDC = S::LDC, LDX = S::LDX, LDY = S::LDY, NT = P / 8;
  extern __shared__ __align__(16) char smem[];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
  int x = blockIdx.x;
  const int iblk = dv.nib - 1 - x % dv.nib; x /= dv.nib;  // heavy (late) row blocks first
  const int H = (int)p.nheads;
  const int h = x % H; x /= H;
  const int k = x % dv.nc;
  const int b = x / dv.nc;
  const int grp = h / dv.hpg;
  const int64_t t0 = (int64_t)k * dv.Q;
  const int len = (int)lmin(dv.Q, p.seqlen - t0);
  const int i0 = iblk * 64;
  if (i0 >= len) return;  // padding only: nothing to write
  const int nrows = imin(64, len - i0);

  float4* rec = reinterpret_cast<float4*>(smem);
  T* Cs = reinterpret_cast<T*>(smem + S::kRec);
  T* Hs = Cs + 64 * LDC;
  float* Ys = reinterpret_cast<float*>(smem + S::kRec);
  T* Xb = reinterpret_cast<T*>(smem + S::kRec + S::kRegion);  // [2][64][LDX]
  // scratch of prep_scan: X buffer 1, untouched until the main loop (after the prologue barrier)
  double* wsum = reinterpret_cast<double*>(Xb + 64 * LDX);

  const bool has_prev = (k > 0) || (p.initial_states != nullptr);
  const T* xg = static_cast<const T*>(p.x) + (int64_t)b * p.x_batch_stride + t0 * p.x_seq_stride +
                (int64_t)h * p.x_head_stride;  // row 0 of the chunk
  const int64_t xss = p.x_seq_stride;

  // ---- prologue: X block 0 and C asynchronously, dt, states through registers
  cp_tile64<P, LDX>(Xb, xg, xss, imin(64, len));
  cp_async_commit();
  if (has_prev) {
    const T* cg = static_cast<const T*>(p.C) + (int64_t)b * p.C_batch_stride + (t0 + i0) * p.C_seq_stride +
                  (int64_t)grp * p.C_group_stride;
    cp_tile64<N, LDC>(Cs, cg, p.C_seq_stride, nrows);
    cp_async_commit();
  }
  float dreg[2];
  int sreg[2];
  const float4* recg = dv.recs ? chunk_recs(dv, H, b, h, k) : nullptr;
  if (!recg) prep_load(p, b, h, t0, len, i0 + 64, dreg, sreg);
  pdl_wait();  // the inputs are on their way; from here on kernels 1 and 2's outputs are read
  if (has_prev) {
    // H_{k-1} (P x N, already T, written by kernel 2) -> Hs[p][n], in C's cp.async group
    const T* hg = static_cast<const T*>(dv.hs16) + (((int64_t)b * H + h) * dv.nc + k) * (int64_t)(P * N);
#pragma unroll
    for (int r = 0; r < P; r += 64) cp_tile64<N, LDC>(Hs + r * LDC, hg + (int64_t)r * N, N, 64);
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

  float acc[NT][4];
#pragma unroll
  for (int c = 0; c < NT; ++c)
#pragma unroll
    for (int q = 0; q < 4; ++q) acc[c][q] = 0.f;

  float4 rI[2];
  rI[0] = rec[i0 + 16 * warp + g];
  rI[1] = rec[i0 + 16 * warp + g + 8];

  // ---- output from the entering state: acc = C_i . H^T, then * exp(s_i)
  if (has_prev) {
#pragma unroll 2
    for (int kk = 0; kk < N / 16; ++kk) {
      FragA<T> a;
      mma::ldA<T, mma::kMK>(a, Cs, LDC, 16 * warp, 16 * kk);
#pragma unroll
      for (int np = 0; np < P / 16; ++np) {
        FragB<T> b0, b1;
        mma::ldB2<T, mma::kNK>(b0, b1, Hs, LDC, 16 * kk, 16 * np);
        mma::mma(acc[2 * np], a, b0);
        mma::mma(acc[2 * np + 1], a, b1);
      }
    }
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const float f = ex2(rI[hr].x + rI[hr].y);
#pragma unroll
      for (int c = 0; c < NT; ++c) {
        acc[c][2 * hr] *= f;
        acc[c][2 * hr + 1] *= f;
      }
    }
  }

  // ---- intra-chunk part: j-blocks 0..iblk (the last one is the diagonal block)
  // this lane's C B^T values of 64x64 block (iblk, jb): rows 16w+g(+8), cols 16kk+2t4(+8), in fragment
  // order (two float4 per 16-column step kk)
  const float* cbl = dv.cb + (((int64_t)b * dv.nc + k) * p.ngroups + grp) * dv.cb_per +
                     (int64_t)(iblk * (iblk + 1) / 2) * 4096 + cb_frag_offset(warp, 0, lane);
  const bool has_z = p.z != nullptr;
  for (int jb = 0; jb <= iblk; ++jb) {
    const T* Xs = Xb + (jb & 1) * 64 * LDX;
    const bool diag = jb == iblk;
    // buffer (jb+1)&1 was released by the barrier ending iteration jb-1
    if (!diag) {
      cp_tile64<P, LDX>(Xb + ((jb + 1) & 1) * 64 * LDX, xg + (int64_t)(jb + 1) * 64 * xss, xss,
                        imin(64, len - (jb + 1) * 64));
      cp_async_commit();
    }
    float2 cbv[4][4];  // index r = hr + 2 c8, as a.r[r]
    ld_cb_frags(cbl + jb * 4096, diag, warp, cbv);
    if (!diag) {
      cp_async_wait<1>();
    } else if (has_z) {
      // last block: the other buffer is free; fetch the gate tile for the epilogue
      const T* zg = static_cast<const T*>(p.z) + (int64_t)b * p.z_batch_stride + (t0 + i0) * p.z_seq_stride +
                    (int64_t)h * p.z_head_stride;
      cp_tile64<P, LDX>(Xb + ((jb + 1) & 1) * 64 * LDX, zg, p.z_seq_stride, nrows);
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
#pragma unroll
      for (int np = 0; np < P / 16; ++np) {
        FragB<T> b0, b1;
        mma::ldB2<T, mma::kKN>(b0, b1, Xs, LDX, 16 * kk, 16 * np);
        mma::mma(acc[2 * np], a, b0);
        mma::mma(acc[2 * np + 1], a, b1);
      }
    }
    __syncthreads();  // all warps done with buffer jb & 1 (and, after jb = 0, with Cs/Hs)
  }

  // ---- epilogue: stage fp32 in shared memory, + D x (x from the diagonal X tile), gate, store
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int hr = 0; hr < 2; ++hr)
      *reinterpret_cast<float2*>(Ys + (16 * warp + g + 8 * hr) * LDY + 8 * nt + 2 * t4) =
          make_float2(acc[nt][2 * hr], acc[nt][2 * hr + 1]);
  if (has_z) cp_async_wait<0>();
  __syncthreads();
  const T* Xl = Xb + (iblk & 1) * 64 * LDX;
  const T* Zs = Xb + ((iblk + 1) & 1) * 64 * LDX;
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

// ---- fixed path: position records, chunk states and state passing in two launches -----------------
// For the shapes of the fixed scan (16-bit x/B/C, no seq_idx, chunk a multiple of 64), with enough
// (b, head, p-tile) chains to fill the GPU (seq_state_ok):
//   k_rec_bmm: per (b, head, chunk) the position records {s_hi, s_lo, d, 0} of the chunk (positions
//     >= len: d = 0) into `recs`, read by k_seq_state and the scan; and the C B^T role.
//   k_seq_state: a block owns 64 p-rows x all n of one (b, head)'s state and walks the chunks in
//     order, the state in its mma accumulators: at chunk k it stores E_k (the state entering the
//     chunk) as T for the scan, scales the accumulators by the chunk's decay exp(s_last), and adds
//     S_k = sum_j exp(s_last - s_j) d_j x_j (x) B_j (tensor cores, K running over the chunk in blocks
//     of 64 positions through a cp.async ring of STG stages, each with its x and B tiles and its 64
//     records, running on across chunk boundaries: no barrier or global wait at a chunk's start).
// No fp32 state crosses memory and there is no state-passing launch; the price is one block per
// chain, so the host keeps the two-launch path when the chains are few.
__device__ __forceinline__ void rec_role(const SsdParams& p, const Dv& dv, int blk, char* smem) {
  int x = blk;
  const int k = x % dv.nc; x /= dv.nc;
  const int H = (int)p.nheads;
  const int h = x % H;
  const int b = x / H;
  const int64_t t0 = (int64_t)k * dv.Q;
  const int len = (int)lmin(dv.Q, p.seqlen - t0);
  float4* rec = reinterpret_cast<float4*>(smem);
  double* wsum = reinterpret_cast<double*>(smem + kRecBytes);
  chunk_prep(p, b, h, t0, len, dv.Q, rec, wsum);
  __syncthreads();
  store_recs(dv, H, b, h, k, rec);
}

template <class T>
__global__ void __launch_bounds__(kThreads, 3)
k_rec_bmm(const __grid_constant__ SsdParams p, const __grid_constant__ Dv dv) {
  extern __shared__ __align__(16) char smem[];
  pdl_launch_dependents();
  if ((int)blockIdx.x < dv.n_state_blocks) rec_role(p, dv, blockIdx.x, smem);
  else bmm_role<T>(p, dv, blockIdx.x - dv.n_state_blocks, smem);
}

// Tile: 64 p-rows x all N columns of one (b, head), so that x is read once; 8 warps, 4 along p
// (16 rows) x 2 along n (N / 2 columns).
constexpr int kSeqThreads = 256;
template <int N, int STG_>
struct SeqState {
  static constexpr int WM = 4, WNC = N / 2, NT = WNC / 8;
  static constexpr int LDX = 64 + 8, LDB = N + 8, STG = STG_;
  static constexpr int kStage = 64 * (LDX + LDB) * 2 + 64 * 16;  // X and B tiles (16-bit), 64 records
  static constexpr int kSmem = STG * kStage;
};

template <class T, int N, int STG>
__global__ void __launch_bounds__(kSeqThreads, N <= 128 ? 2 : 1)
k_seq_state(const __grid_constant__ SsdParams p, const __grid_constant__ Dv dv) {
  using S = SeqState<N, STG>;
  constexpr int LDX = S::LDX, LDB = S::LDB, NT = S::NT, NTH = kSeqThreads;
  extern __shared__ __align__(16) char smem[];
  pdl_launch_dependents();
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
  const int wm = warp % S::WM, wn = warp / S::WM;
  int x = blockIdx.x;
  const int pt = x % dv.npt1; x /= dv.npt1;
  const int H = (int)p.nheads;
  const int h = x % H;
  const int b = x / H;
  const int grp = h / dv.hpg;
  const int P = (int)p.headdim;
  const int p0 = pt * 64;
  const int64_t L = p.seqlen;
  const int Q = dv.Q, kbq = Q / 64;

  auto Xst = [&](int s) { return reinterpret_cast<T*>(smem + s * S::kStage); };
  auto Bst = [&](int s) { return reinterpret_cast<T*>(smem + s * S::kStage) + 64 * LDX; };
  auto Rst = [&](int s) { return reinterpret_cast<float4*>(smem + s * S::kStage + 64 * (LDX + LDB) * 2); };

  const T* xg = static_cast<const T*>(p.x) + (int64_t)b * p.x_batch_stride + (int64_t)h * p.x_head_stride + p0;
  const T* bg = static_cast<const T*>(p.B) + (int64_t)b * p.B_batch_stride + (int64_t)grp * p.B_group_stride;
  const float4* rg = chunk_recs(dv, H, b, h, 0);  // chunk k's records at rg + k * Q
  const int64_t xss = p.x_seq_stride, bss = p.B_seq_stride;
  const int64_t NG = (L + 63) / 64;  // K blocks of 64 positions over the whole sequence
  // The 64 records of K block G into stage G % STG (threads 0-63, one each).
  auto issue_rec = [&](int64_t G) {
    if (tid < 64) {
      const float4* src = rg + (G / kbq) * Q + (G % kbq) * 64 + tid;
      cp_async16(static_cast<uint32_t>(__cvta_generic_to_shared(Rst((int)(G % STG)) + tid)), src);
    }
  };
  // K block G (positions 64G ..; chunk G / kbq's block G % kbq, Q being a multiple of 64): its x and B
  // tiles into stage G % STG, with the records of block G + 1 (one group ahead, so that the barrier
  // of iteration G makes them visible to every thread at iteration G + 1 without another barrier).
  // Always one commit group, empty past the end.
  auto issue = [&](int64_t G) {
    if (G < NG) {
      const int s = (int)(G % STG);
      const int nv = (int)lmin(64, L - 64 * G);
      cp_tile64<64, LDX, T, NTH>(Xst(s), xg + 64 * G * xss, xss, nv);
      cp_tile64<N, LDB, T, NTH>(Bst(s), bg + 64 * G * bss, bss, nv);
      if (G + 1 < NG) issue_rec(G + 1);
    }
    cp_async_commit();
  };

  // the state E_0: initial states or 0
  float acc[NT][4];
  const int r0 = p0 + 16 * wm + g;    // rows r0, r0 + 8
  const int c0 = wn * S::WNC + 2 * t4;  // columns c0 + 8 nt (+1)
#pragma unroll
  for (int nt = 0; nt < NT; ++nt)
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      float2 v = make_float2(0.f, 0.f);
      if (p.initial_states)
        v = *reinterpret_cast<const float2*>(p.initial_states + (((int64_t)b * H + h) * P + r0 + 8 * hr) * N + c0 + 8 * nt);
      acc[nt][2 * hr] = v.x;
      acc[nt][2 * hr + 1] = v.y;
    }
  pdl_wait();  // the records are the previous launch's output
  issue_rec(0);  // in group 0
#pragma unroll
  for (int s = 0; s < STG - 1; ++s) issue(s);
  cp_async_wait<STG - 2>();  // group 0 (block 0's records) ...
  __syncthreads();           // ... visible to every thread

  T* hs = static_cast<T*>(dv.hs16) + ((int64_t)b * H + h) * dv.nc * (int64_t)P * N;
  auto last_rec = [&](int k) { return __ldg(rg + (int64_t)k * Q + (int)lmin(Q, L - (int64_t)k * Q) - 1); };
  float4 rl_next = last_rec(0);
  for (int k = 0; k < dv.nc; ++k) {
    const int64_t t0 = (int64_t)k * Q;
    const int len = (int)lmin(Q, L - t0);
    const float4 rl = rl_next;
    if (k + 1 < dv.nc) rl_next = last_rec(k + 1);  // in flight during this chunk
    // E_k for the scan, then the decay of this chunk
    T* hk = hs + (int64_t)k * P * N;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int hr = 0; hr < 2; ++hr)
        *reinterpret_cast<uint32_t*>(hk + (int64_t)(r0 + 8 * hr) * N + c0 + 8 * nt) =
            mma::pack2<T>(acc[nt][2 * hr], acc[nt][2 * hr + 1]);
    const float dec = ex2(rl.x + rl.y);
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[nt][q] *= dec;

    const int nkb = (len + 63) / 64;
    for (int ib = 0; ib < nkb; ++ib) {
      const int64_t G = (int64_t)k * kbq + ib;
      const int st = (int)(G % STG);
      cp_async_wait<STG - 2>();  // this thread's copies of block G have landed (its records: a group earlier)
      {
        // scale the x rows this thread copied (cp_tile64's mapping) by w_j = exp(s_last - s_j) d_j;
        // rows past the end of the sequence are 0
        constexpr int VPR = 64 / 8, RPI = NTH / VPR;
        const int rr = tid / VPR, cc = (tid % VPR) * 8;
        const int nv = (int)lmin(64, L - 64 * G);
        T* Xs = Xst(st);
        const float4* rs = Rst(st);
#pragma unroll
        for (int u = 0; u < 64 / RPI; ++u) {
          const int r = rr + u * RPI;
          const float4 rj = rs[r];
          const float sc = r < nv ? ex2(sdiff(rl, rj)) * rj.z : 0.f;
          uint4* xv = reinterpret_cast<uint4*>(Xs + r * LDX + cc);
          *xv = scale8<T>(*xv, sc);
        }
      }
      __syncthreads();     // block G scaled and visible to all warps; all done with block G - 1's stage
      issue(G + STG - 1);  // tiles into the stage block G - 1 used, records into block G's (read above)
      const T* Xs = Xst(st);
      const T* Bs = Bst(st);
#pragma unroll
      for (int kk = 0; kk < 4; ++kk) {
        FragA<T> a;
        mma::ldA<T, mma::kKM>(a, Xs, LDX, 16 * wm, 16 * kk);
#pragma unroll
        for (int np = 0; np < NT / 2; ++np) {
          FragB<T> b0, b1;
          mma::ldB2<T, mma::kKN>(b0, b1, Bs, LDB, 16 * kk, wn * S::WNC + 16 * np);
          mma::mma(acc[2 * np], a, b0);
          mma::mma(acc[2 * np + 1], a, b1);
        }
      }
    }
  }
  if (p.final_states) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int hr = 0; hr < 2; ++hr)
        *reinterpret_cast<float2*>(p.final_states + (((int64_t)b * H + h) * P + r0 + 8 * hr) * N + c0 + 8 * nt) =
            make_float2(acc[nt][2 * hr], acc[nt][2 * hr + 1]);
  }
  cp_async_wait<0>();  // no copy may still target shared memory when the block exits
}

// ---- host side ------------------------------------------------------------------------------
inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline size_t align256(size_t v) { return (v + 255) & ~size_t(255); }

bool fixed_scan_ok(const SsdParams& p);  // below, with the fixed scan's host side
bool seq_state_ok(const SsdParams& p);  // below: k_rec_bmm, k_seq_state, then the fixed scan

struct Layout {
  int64_t nc, BB, ntri;
  size_t states_off, decay_off, cb_off, seq_off, hs16_off, recs_off, total;
};
Layout layout_of(const SsdParams& p) {
  Layout l{};
  const int64_t Q = p.chunk_size;
  l.nc = cdiv(p.seqlen, Q);
  l.BB = std::min<int64_t>(Q, 64);
  const int64_t nbb = Q / l.BB;
  l.ntri = nbb * (nbb + 1) / 2;
  size_t off = 0;
  const bool seq = seq_state_ok(p);  // the sequential pass keeps the states in registers
  l.states_off = off;
  if (!seq) off += align256((size_t)p.batch * p.nheads * l.nc * p.headdim * p.dstate * 4);
  l.decay_off = off;
  if (!seq) off += align256((size_t)p.batch * p.nheads * l.nc * 4);
  l.cb_off = off;
  off += align256((size_t)p.batch * l.nc * p.ngroups * l.ntri * l.BB * l.BB * 4);
  l.seq_off = off;  // cu_seqlens: the seq_idx row built from it
  if (p.cu_seqlens) off += align256((size_t)p.seqlen * 4);
  l.hs16_off = off;  // the fixed scan's 16-bit entering states (varlen never takes the fixed scan)
  if (!p.cu_seqlens && fixed_scan_ok(p)) off += align256((size_t)p.batch * p.nheads * l.nc * p.headdim * p.dstate * 2);
  l.recs_off = off;  // per-position records (launch 1 writes them, the fixed scan reads them)
  if (!p.cu_seqlens && fixed_scan_ok(p)) off += align256((size_t)p.batch * p.nheads * l.nc * p.chunk_size * 16);
  l.total = off;
  return l;
}

bool aligned(const void* ptr, size_t a) { return (reinterpret_cast<uintptr_t>(ptr) % a) == 0; }

SsdStatus cuda_fail(cudaError_t e, const char* what, std::string* err) {
  if (err) *err = std::string(what) + ": " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
  return SSD_ERR_CUDA;
}

struct Timer {
  detail::StageTimes* times = nullptr;
  cudaEvent_t ev[detail::kMaxStages + 1] = {};
  cudaStream_t s = nullptr;
};

// The fixed-shape chunk scan (k_chunk_scan_fixed) takes the shapes and layouts below (see the
// conditions above that kernel); every other call runs the any-size scan.
bool vec16_ok(const void* ptr, int64_t s0, int64_t s1, int64_t s2) {
  return ptr && (reinterpret_cast<uintptr_t>(ptr) % 16) == 0 && s0 % 8 == 0 && s1 % 8 == 0 && s2 % 8 == 0;
}
// p passed check_params and supports().
bool fixed_scan_ok(const SsdParams& p) {
  const SsdDtype t = p.x_type;
  if ((t != SSD_BFLOAT16 && t != SSD_FLOAT16) || p.B_type != t || p.C_type != t) return false;
  if (p.seq_idx) return false;
  if (p.chunk_size < 64) return false;  // C B^T blocks of 64 x 64
  if (p.headdim != 64 && p.headdim != 128) return false;
  if (p.dstate != 64 && p.dstate != 128 && p.dstate != 256) return false;
  if (!vec16_ok(p.x, p.x_batch_stride, p.x_seq_stride, p.x_head_stride)) return false;
  if (!vec16_ok(p.C, p.C_batch_stride, p.C_seq_stride, p.C_group_stride)) return false;
  if (p.y_type != t || !vec16_ok(p.y, p.y_batch_stride, p.y_seq_stride, p.y_head_stride)) return false;
  if (p.z && (p.z_type != t || !vec16_ok(p.z, p.z_batch_stride, p.z_seq_stride, p.z_head_stride))) return false;
  if (p.y_ungated && (p.y_ungated_type != t || !vec16_ok(p.y_ungated, p.y_ungated_batch_stride, p.y_ungated_seq_stride,
                                                          p.y_ungated_head_stride)))
    return false;
  return true;
}
// The sequential state pass (k_rec_bmm, k_seq_state): the fixed scan's shapes, B loadable by cp.async
// too, initial / final states 8-byte aligned (float2), and enough (b, head, p-tile) chains to fill
// the GPU: each is one block walking every chunk, so with few of them (G2: 32 chains of 64 chunks)
// the two-launch path (parallel chunk states, then state passing) is faster (bench/NOTES.md). The
// threshold is a constant, not the SM count, so that the workspace size never depends on the device.
constexpr int64_t kSeqMinChains = 64;
bool seq_state_ok(const SsdParams& p) {
  if (p.cu_seqlens || !fixed_scan_ok(p)) return false;
  if (p.chunk_size % 64 != 0) return false;
  if (!vec16_ok(p.B, p.B_batch_stride, p.B_seq_stride, p.B_group_stride)) return false;
  if (!aligned(p.initial_states, 8) || !aligned(p.final_states, 8)) return false;
  return p.batch * p.nheads * (p.headdim / 64) >= kSeqMinChains;
}
// cp.async stages of 64 positions in flight: 4 while two blocks fit an SM (dstate <= 128), else 3.
template <class T>
void (*seq_state_kernel(const SsdParams& p, Dv* dv, size_t* smem))(SsdParams, Dv) {
  dv->npt1 = (int)(p.headdim / 64);
  switch (p.dstate) {
    case 64: *smem = SeqState<64, 4>::kSmem; return k_seq_state<T, 64, 4>;
    case 128: *smem = SeqState<128, 4>::kSmem; return k_seq_state<T, 128, 4>;
    case 256: *smem = SeqState<256, 3>::kSmem; return k_seq_state<T, 256, 3>;
    default: return nullptr;
  }
}
template <class T>
void (*fixed_scan_kernel(int P, int N, size_t* smem))(SsdParams, Dv) {
#define SSD_FAST_CASE(PP, NN)                         \
  if (P == PP && N == NN) {                           \
    *smem = ScanFixed<PP, NN>::kSmem;                  \
    return k_chunk_scan_fixed<T, PP, NN>;              \
  }
  SSD_FAST_CASE(64, 64) SSD_FAST_CASE(64, 128) SSD_FAST_CASE(64, 256)
  SSD_FAST_CASE(128, 64) SSD_FAST_CASE(128, 128) SSD_FAST_CASE(128, 256)
#undef SSD_FAST_CASE
  return nullptr;
}

// ---- variable length (cu_seqlens) ----------------------------------------------------------------
// The packed sequences become a seq_idx row (sequence k covers [cu[k], cu[k+1])), so the three
// launches handle the resets exactly as for seq_idx; each sequence's final state is then rebuilt
// from the state entering the chunk where it ends plus that chunk's positions of the sequence.
__global__ void __launch_bounds__(256) k_fill_seq_idx(const int32_t* cu, int64_t nseq, int64_t L, int32_t* seq) {
  const int64_t t = (int64_t)blockIdx.x * 256 + threadIdx.x;
  if (t >= L) return;
  int64_t lo = 0, hi = nseq;  // the last k with cu[k] <= t (cu[0] = 0 <= t < cu[nseq] = L)
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (cu[mid] <= t) lo = mid;
    else hi = mid - 1;
  }
  seq[t] = (int32_t)lo;
}

// Block: (sequence k, head h, 32 rows of p); 256 threads; thread owns state elements
// tid + 256 m of the 32 x n tile.
__global__ void __launch_bounds__(256) k_varlen_states(const __grid_constant__ SsdParams p, const __grid_constant__ Dv dv) {
  __shared__ float wgt[256], ain[256];
  __shared__ float xs[32][33];
  __shared__ float tot;
  extern __shared__ float Bs[];  // 32 positions x n
  const int P = (int)p.headdim, N = (int)p.dstate, H = (int)p.nheads, Q = dv.Q;
  const int npt = (P + 31) / 32;
  int x = blockIdx.x;
  const int pt = x % npt; x /= npt;
  const int h = x % H;
  const int k = x / H;
  const int tid = threadIdx.x;
  // offsets are validated on the host when they come from there; clamped here so that device-resident
  // offsets that break the contract give wrong states, never out-of-bounds accesses
  const int L = (int)p.seqlen;
  const int s0 = max(0, min(p.cu_seqlens[k], L)), e = max(0, min(p.cu_seqlens[k + 1], L));
  const int p0 = pt * 32, rows = imin(32, P - p0);
  float* out = p.varlen_states + ((int64_t)k * H + h) * dv.PN + (int64_t)p0 * N;
  if (e <= s0) {
    for (int i = tid; i < rows * N; i += 256) out[i] = 0.f;
    return;
  }
  const int c = (e - 1) / Q, t0 = c * Q;
  const int j0 = s0 > t0 ? s0 : t0, len = e - j0;  // len <= Q <= 256
  const float A = p.A[h], bias = p.dt_bias ? p.dt_bias[h] : 0.f;
  if (tid < len) {
    float d = ld_f(p.dt, p.dt_type, (int64_t)(j0 + tid) * p.dt_seq_stride + h) + bias;
    d = math::step_size(d, p.dt_softplus, p.dt_min, p.dt_max);
    wgt[tid] = d;
    ain[tid] = d * A;
  }
  __syncthreads();
  if (tid == 0) {  // weight of position j: exp(sum_{t=j+1}^{e-1} d_t A) d_j
    float run = 0.f;
    for (int j = len - 1; j >= 0; --j) {
      wgt[j] = expf(run) * wgt[j];
      run += ain[j];
    }
    tot = expf(run);
  }
  __syncthreads();
  const int grp = h / dv.hpg;
  const int tile = rows * N;
  float acc[32];
  const float* enter = dv.states + ((int64_t)h * dv.nc + c) * dv.PN + (int64_t)p0 * N;  // batch 0
#pragma unroll
  for (int m = 0; m < 32; ++m) {
    const int i = tid + 256 * m;
    acc[m] = (i < tile && s0 < t0) ? tot * enter[i] : 0.f;
  }
  for (int jb = 0; jb < len; jb += 32) {
    const int nj = imin(32, len - jb);
    for (int i = tid; i < 32 * 32; i += 256) {
      const int jj = i / 32, r = i % 32;
      xs[jj][r] = (jj < nj && r < rows)
                      ? wgt[jb + jj] * ld_f(p.x, p.x_type, (int64_t)(j0 + jb + jj) * p.x_seq_stride + (int64_t)h * p.x_head_stride + p0 + r)
                      : 0.f;
    }
    for (int i = tid; i < nj * N; i += 256) {
      const int jj = i / N, n = i % N;
      Bs[i] = ld_f(p.B, p.B_type, (int64_t)(j0 + jb + jj) * p.B_seq_stride + (int64_t)grp * p.B_group_stride + n);
    }
    __syncthreads();
#pragma unroll
    for (int m = 0; m < 32; ++m) {
      const int i = tid + 256 * m;
      if (i < tile) {
        const int r = i / N, n = i % N;
        float a = acc[m];
        for (int jj = 0; jj < nj; ++jj) a = fmaf(xs[jj][r], Bs[jj * N + n], a);
        acc[m] = a;
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int m = 0; m < 32; ++m) {
    const int i = tid + 256 * m;
    if (i < tile) out[i] = acc[m];
  }
}

template <class T>
SsdStatus run_t(const SsdParams& p, cudaStream_t stream, void* workspace, std::string* err, Timer* tm) {
  constexpr bool k16 = sizeof(T) == 2;
  const Layout l = layout_of(p);
  char* ws = static_cast<char*>(workspace);
  Dv dv{};
  dv.Q = (int)p.chunk_size;
  dv.nc = (int)l.nc;
  dv.hpg = (int)(p.nheads / p.ngroups);
  dv.BB = (int)l.BB;
  dv.lbb = 0;
  while ((1 << dv.lbb) < dv.BB) ++dv.lbb;
  dv.ntri = (int)l.ntri;
  dv.n16 = (int)cdiv(p.dstate, 16) * 16;
  dv.nib = (int)cdiv(p.chunk_size, 64);
  const int BN1 = (!k16 || p.dstate <= 64 || StateTuning::kMaxBn < 128) ? 64 : 128;
  const int BP = (!k16 || p.headdim <= 64) ? 64 : 128;
  dv.npt1 = (int)cdiv(p.headdim, 64);
  dv.nnt1 = (int)cdiv(p.dstate, BN1);
  dv.npt3 = (int)cdiv(p.headdim, BP);
  dv.PN = p.headdim * p.dstate;
  dv.nes = (int)cdiv(cdiv(dv.PN, 4), 256);
  const size_t es = sizeof(T);
  // 16-byte vectors: base 16-aligned, every stride a multiple of 8 elements (the innermost
  // dimension is contiguous by contract).
  auto vec16 = [&](const void* ptr, int64_t s0, int64_t s1, int64_t s2) {
    return k16 && aligned(ptr, 16) && s0 % 8 == 0 && s1 % 8 == 0 && s2 % 8 == 0;
  };
  dv.vx = vec16(p.x, p.x_batch_stride, p.x_seq_stride, p.x_head_stride);
  dv.vB = vec16(p.B, p.B_batch_stride, p.B_seq_stride, p.B_group_stride);
  dv.vC = vec16(p.C, p.C_batch_stride, p.C_seq_stride, p.C_group_stride);
  dv.st4 = (p.dstate % 4) == 0;
  auto vec8 = [&](const void* ptr, SsdDtype t, int64_t s0, int64_t s1, int64_t s2) {
    const int64_t m = t == SSD_FLOAT32 ? 4 : 8;  // elements per 16 bytes
    return ptr && aligned(ptr, 16) && s0 % m == 0 && s1 % m == 0 && s2 % m == 0;
  };
  dv.x8 = vec8(p.x, p.x_type, p.x_batch_stride, p.x_seq_stride, p.x_head_stride);
  dv.z8 = vec8(p.z, p.z_type, p.z_batch_stride, p.z_seq_stride, p.z_head_stride);
  dv.y8 = vec8(p.y, p.y_type, p.y_batch_stride, p.y_seq_stride, p.y_head_stride);
  dv.yu8 = vec8(p.y_ungated, p.y_ungated_type, p.y_ungated_batch_stride, p.y_ungated_seq_stride, p.y_ungated_head_stride);
  dv.pass4 = (dv.PN % 4) == 0 && aligned(p.initial_states, 16) && aligned(p.final_states, 16);
  dv.cb_per = l.ntri * l.BB * l.BB;
  dv.states = reinterpret_cast<float*>(ws + l.states_off);
  dv.decay = reinterpret_cast<float*>(ws + l.decay_off);
  dv.cb = reinterpret_cast<float*>(ws + l.cb_off);
  const bool fixed = k16 && fixed_scan_ok(p);
  dv.hs16 = fixed ? ws + l.hs16_off : nullptr;
  dv.cb_frag = fixed ? 1 : 0;  // read only by the fixed scan, in its fragment order
  dv.pass_f32 = !fixed;
  const int64_t nstate = (int64_t)dv.npt1 * dv.nnt1 * p.nheads * dv.nc * p.batch;
  const int64_t nbmm = (int64_t)dv.ntri * p.ngroups * dv.nc * p.batch;
  const int64_t nscan = (int64_t)dv.nib * dv.npt3 * p.nheads * dv.nc * p.batch;
  const int64_t npass = (int64_t)dv.nes * p.nheads * p.batch;
  if (nstate + nbmm > INT32_MAX || nscan > INT32_MAX || npass > INT32_MAX) {
    if (err) *err = "problem too large for one grid";
    return SSD_ERR_UNSUPPORTED;
  }
  dv.n_state_blocks = (int)nstate;

  const size_t smem1 = kHdr + std::max<size_t>(2 * (k1_kb(BN1, (int)es) * 72 + k1_kb(BN1, (int)es) * (BN1 + 8)) * es, 2 * 64 * 72 * es);
  {
    const size_t csh = (size_t)(64 + BP) * (dv.n16 + 8) * es;
    const size_t ys = (size_t)64 * (BP + 4) * 4;
    dv.scan_region = (int)((std::max(csh, ys) + 15) & ~size_t(15));
  }
  const size_t smem3 = kHdr + dv.scan_region + 2 * 64 * (BP + 8) * es;

  void (*k1)(SsdParams, Dv) = nullptr;
  void (*k3)(SsdParams, Dv) = nullptr;
  if (BN1 == 64) k1 = k_state_bmm<T, 64>;
  else if constexpr (k16) k1 = k_state_bmm<T, 128>;
  if (BP == 64) k3 = k_chunk_scan<T, 64>;
  else if constexpr (k16) k3 = k_chunk_scan<T, 128>;
  size_t smem3_launch = smem3;
  int64_t nscan_launch = nscan;
  size_t smem1_launch = smem1;
  int64_t n1_launch = nstate + nbmm;
  bool seq = false;
  void (*k2)(SsdParams, Dv) = nullptr;  // the sequential state pass
  size_t smem2 = 0;
  int64_t n2 = 0;
  if constexpr (k16) {
    if (fixed_scan_ok(p)) {
      k3 = fixed_scan_kernel<T>((int)p.headdim, (int)p.dstate, &smem3_launch);
      nscan_launch = (int64_t)dv.nib * p.nheads * dv.nc * p.batch;  // one p-tile: all of headdim
      dv.recs = reinterpret_cast<float4*>(ws + l.recs_off);
    }
    if (seq_state_ok(p)) {
      seq = true;
      k2 = seq_state_kernel<T>(p, &dv, &smem2);
      n2 = (int64_t)dv.npt1 * p.nheads * p.batch;
      k1 = k_rec_bmm<T>;
      const int64_t nrec = (int64_t)p.batch * p.nheads * dv.nc;
      dv.n_state_blocks = (int)nrec;  // the records role's blocks, then the C B^T role's
      n1_launch = nrec + nbmm;
      smem1_launch = kHdr + 2 * 64 * 72 * es;  // the C B^T role's tiles
      dv.states = nullptr;
      dv.decay = nullptr;
    }
  }
  if (!k1 || !k3) {
    if (err) *err = "internal: no kernel instance";
    return SSD_ERR_INTERNAL;
  }
  cudaError_t e;
  if ((e = cudaFuncSetAttribute(k1, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem1_launch)) != cudaSuccess)
    return cuda_fail(e, "cudaFuncSetAttribute(k_state_bmm)", err);
  if ((e = cudaFuncSetAttribute(k3, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem3_launch)) != cudaSuccess)
    return cuda_fail(e, "cudaFuncSetAttribute(k_chunk_scan)", err);
  if (k2 && (e = cudaFuncSetAttribute(k2, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem2)) != cudaSuccess)
    return cuda_fail(e, "cudaFuncSetAttribute(k_seq_state)", err);

  auto mark = [&](int i) -> cudaError_t {
    if (!tm) return cudaSuccess;
    return cudaEventRecord(tm->ev[i], stream);
  };
  if ((e = mark(0)) != cudaSuccess) return cuda_fail(e, "cudaEventRecord", err);
  if (n1_launch > INT32_MAX) {
    if (err) *err = "problem too large for one grid";
    return SSD_ERR_UNSUPPORTED;
  }
  k1<<<(unsigned)n1_launch, kThreads, smem1_launch, stream>>>(p, dv);
  if ((e = cudaGetLastError()) != cudaSuccess) return cuda_fail(e, "launch k_state_bmm", err);
  if ((e = mark(1)) != cudaSuccess) return cuda_fail(e, "cudaEventRecord", err);
  // Kernels 2 and 3 start while the one before drains, unless events are recorded between them.
  const bool pdl = !tm && pdl_supported();
  // The sequential pass is an ordinary launch: launched early (programmatic), its long-lived blocks
  // were placed two to an SM beside the draining first launch while other SMs got none (G1 total
  // +0.04 ms, device run S4-3); launched after it, they spread one per SM.
  if (seq) e = launch(k2, (unsigned)n2, kSeqThreads, smem2, stream, false, p, dv);
  else e = launch(k_state_pass<T>, (unsigned)npass, 256, 0, stream, pdl, p, dv);
  if (e != cudaSuccess) return cuda_fail(e, seq ? "launch k_seq_state" : "launch k_state_pass", err);
  if ((e = mark(2)) != cudaSuccess) return cuda_fail(e, "cudaEventRecord", err);
  if ((e = launch(k3, (unsigned)nscan_launch, kThreads, smem3_launch, stream, pdl, p, dv)) != cudaSuccess)
    return cuda_fail(e, "launch k_chunk_scan", err);
  if ((e = mark(3)) != cudaSuccess) return cuda_fail(e, "cudaEventRecord", err);
  if (p.cu_seqlens && p.varlen_states && p.num_seqs > 0) {
    const int64_t nv = p.num_seqs * p.nheads * cdiv(p.headdim, 32);
    if (nv > INT32_MAX) return SSD_ERR_UNSUPPORTED;
    k_varlen_states<<<(unsigned)nv, 256, 32 * p.dstate * sizeof(float), stream>>>(p, dv);
    if ((e = cudaGetLastError()) != cudaSuccess) return cuda_fail(e, "launch k_varlen_states", err);
  }
  if (tm) {
    tm->times->n = 3;
    tm->times->name[0] = seq ? "records+CBt" : "state+CBt";
    tm->times->name[1] = seq ? "seq_state" : "state_pass";
    tm->times->name[2] = (k16 && fixed_scan_ok(p)) ? "chunk_scan_fixed" : "chunk_scan";
  }
  return SSD_OK;
}

enum Path { kPathBf16, kPathF16, kPathF32 };
Path path_of(const SsdParams& p) {
  if (p.x_type == SSD_BFLOAT16 && p.B_type == SSD_BFLOAT16 && p.C_type == SSD_BFLOAT16) return kPathBf16;
  if (p.x_type == SSD_FLOAT16 && p.B_type == SSD_FLOAT16 && p.C_type == SSD_FLOAT16) return kPathF16;
  return kPathF32;
}

SsdStatus forward_impl(const SsdParams& p, void* stream_v, void* workspace, std::string* err, Timer* tm) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_v);
  if (tm) tm->times->n = 0;
  if (!workspace) {
    if (err) *err = "workspace is null";
    return SSD_ERR_INVALID_ARGUMENT;
  }
  SsdParams q = p;
  if (p.cu_seqlens) {
    int32_t* seq = reinterpret_cast<int32_t*>(static_cast<char*>(workspace) + layout_of(p).seq_off);
    k_fill_seq_idx<<<(unsigned)cdiv(p.seqlen, 256), 256, 0, stream>>>(p.cu_seqlens, p.num_seqs, p.seqlen, seq);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return cuda_fail(e, "launch k_fill_seq_idx", err);
    q.seq_idx = seq;
    q.seq_idx_batch_stride = p.seqlen;
  }
  switch (path_of(q)) {
    case kPathBf16: return run_t<bf16>(q, stream, workspace, err, tm);
    case kPathF16: return run_t<f16>(q, stream, workspace, err, tm);
    default: return run_t<float>(q, stream, workspace, err, tm);
  }
}

}  // namespace

size_t forward_workspace_bytes(const SsdParams& p) { return layout_of(p).total; }

SsdStatus forward(const SsdParams& p, void* stream, void* workspace, std::string* error) {
  return forward_impl(p, stream, workspace, error, nullptr);
}

namespace detail {

const char* compute_path(const SsdParams& p) {
  switch (path_of(p)) {
    case kPathBf16: return "bf16-mma";
    case kPathF16: return "f16-mma";
    default: return "f32-fma";
  }
}

const char* scan_kernel(const SsdParams& p) {
  if (!supports(p, nullptr)) return "-";
  return fixed_scan_ok(p) ? "fixed" : "generic";
}

SsdStatus forward_timed(const SsdParams& p, void* stream, void* workspace, std::string* error,
                        StageTimes* times) {
  Timer tm;
  tm.times = times;
  tm.s = static_cast<cudaStream_t>(stream);
  for (auto& ev : tm.ev) {
    cudaError_t e = cudaEventCreate(&ev);
    if (e != cudaSuccess) return cuda_fail(e, "cudaEventCreate", error);
  }
  SsdStatus st = forward_impl(p, stream, workspace, error, &tm);
  if (st == SSD_OK && times->n > 0) {
    cudaError_t e = cudaStreamSynchronize(tm.s);
    if (e != cudaSuccess) st = cuda_fail(e, "cudaStreamSynchronize", error);
    for (int i = 0; st == SSD_OK && i < times->n; ++i) {
      e = cudaEventElapsedTime(&times->ms[i], tm.ev[i], tm.ev[i + 1]);
      if (e != cudaSuccess) st = cuda_fail(e, "cudaEventElapsedTime", error);
    }
  }
  for (auto& ev : tm.ev) cudaEventDestroy(ev);
  return st;
}

}  // namespace detail
}}  // namespace ssd::cuda
