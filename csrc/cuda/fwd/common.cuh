// What the forward's kernels share: the launch constants, the derived launch parameters (Dv) and
// small device helpers. Included by the kernel headers of this folder.
#pragma once
#include <cstdio>

#include "cuda/common/kernel.cuh"

namespace ssd { namespace cuda {
namespace {

// Shared-memory header common to kernels 1 and 3: per-position record float4 {s_hi, s_lo, d, seq}
// for up to 256 positions, 4 doubles for the block scan, then 256 floats (kernel 1's weights).
constexpr int kRecBytes = kMaxQ * 16;
constexpr int kHdr = kRecBytes + 64 + kMaxQ * 4;  // 5184, a multiple of 16

// The forward's chunks: batch row b's chunk k covers positions [kQ, kQ + Q). With cu_seqlens each
// packed sequence is chunked from its own start instead (a chunk never holds two sequences), and the
// row's chunk slots k are the sequences' chunks in order: nc is then their bound, the chunks of the
// row plus one per sequence, and the tables below map a slot to its sequence.
struct Dv {
  int Q, nc, hpg;
  const int2* seg;         // cu_seqlens: each sequence's [start, end), clamped to [0, seqlen]; else null
  const int32_t* tile0;    // cu_seqlens: the first slot of each sequence; tile0[num_seqs] = slots used
  const int32_t* tile_seq; // cu_seqlens: the sequence of each slot, -1 for the unused ones
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

// ---- chunks and chains -------------------------------------------------------------------------
// The chunk of block index x (inner fields divided out: x = b * nc + slot). An unused slot has len 0.
__device__ __forceinline__ ChunkPos fwd_chunk(const SsdParams& p, const Dv& dv, int x) {
  if (!dv.tile_seq) return chunk_pos(x, dv.nc, dv.Q, p.seqlen);
  ChunkPos c;
  c.b = x / dv.nc;
  c.k = x % dv.nc;
  const int s = dv.tile_seq[c.k];
  if (s < 0) {
    c.t0 = 0;
    c.len = 0;
    c.first = true;
    return c;
  }
  const int m = c.k - dv.tile0[s];
  const int2 sg = dv.seg[s];
  c.t0 = (int64_t)sg.x + (int64_t)m * dv.Q;
  c.len = (int)lmin(dv.Q, sg.y - c.t0);
  c.first = m == 0;
  return c;
}

// The chunks one (row or packed sequence, head) walks in order, carrying the state: slots slot0 ..
// slot0 + n - 1 of the workspace arrays laid out (b, h, slot), covering positions t0 .. t0 + len - 1
// of row b; fin: where its final state goes (null: nowhere), last: it also gives final_states.
struct Chain {
  int b, n;
  int64_t slot0, t0, len;
  float* fin;
  float* last;
};
// Chain c (a batch row, or with cu_seqlens a sequence) of head h.
__device__ __forceinline__ Chain fwd_chain(const SsdParams& p, const Dv& dv, int c, int h) {
  const int64_t H = p.nheads, PN = p.headdim * p.dstate;
  Chain ch;
  if (!dv.tile_seq) {
    ch.b = c;
    ch.n = dv.nc;
    ch.slot0 = ((int64_t)c * H + h) * dv.nc;
    ch.t0 = 0;
    ch.len = p.seqlen;
    ch.fin = p.final_states ? p.final_states + ((int64_t)c * H + h) * PN : nullptr;
    ch.last = nullptr;
    return ch;
  }
  const int k0 = dv.tile0[c];
  const int2 sg = dv.seg[c];
  ch.b = 0;
  ch.n = dv.tile0[c + 1] - k0;
  ch.slot0 = (int64_t)h * dv.nc + k0;
  ch.t0 = sg.x;
  ch.len = lmin(sg.y - sg.x, (int64_t)ch.n * dv.Q);
  ch.fin = p.varlen_states ? p.varlen_states + ((int64_t)c * H + h) * PN : nullptr;
  // the state after position seqlen - 1: the last sequence that has chunks
  const bool last = ch.n > 0 && dv.tile0[c + 1] == dv.tile0[p.num_seqs];
  ch.last = (last && p.final_states) ? p.final_states + (int64_t)h * PN : nullptr;
  return ch;
}
// The number of chains: batch rows, or packed sequences.
__host__ __device__ inline int64_t fwd_chains(const SsdParams& p) { return p.cu_seqlens ? p.num_seqs : p.batch; }

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

}  // namespace
}}  // namespace ssd::cuda
