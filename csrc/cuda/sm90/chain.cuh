// What the sm_90a chain kernels share (fwd_chain.cuh: the forward; chain_states.cuh: the states alone,
// forward or in reverse): a CTA walks one chain (a batch row, a packed sequence, or a segment of either)
// for one head in blocks of 64 positions, fed by TMA into a ring of stages, with records warps that
// turn dt into each block's position records, and a state warpgroup that keeps the 64 x N state (or
// its gradient) in registers.
//
// Per block (positions j = 0 .. 63 from the block's start; s_j = log2(e) * the cumulative sum of d*A):
//   forward  H  <- 2^(s_63) H  + sum_j 2^(s_63 - s_j) d_j  x_j (x) B_j     (the state after the block)
//   reverse  dH <- 2^(s_63) dH + sum_j 2^(s_j) dY_j (x) C_j                 (the gradient of the state
//            before the block, from that of the state after it; dY = dy o silu(z), or dy without z)
// Records per position: {s_j, d_j, w_j = 2^(s_63 - s_j) d_j, 2^(s_j)}.
//
// Segments: where the (chain, head) pairs are too few to fill the GPU, each chain is cut into nseg
// segments of whole blocks, one CTA each. A first launch walks pieces of the segments alone (each
// segment in `fine` pieces, to give that launch CTAs enough) and writes what each adds to its far side
// (forward: the state at its end, from a zero state, the first piece from the initial state; reverse:
// the gradient at its start, from a zero gradient, the last from the final state's gradient) and the
// product of its blocks' decays 2^(s_63); the next launch enters segment i with the ordered sum over
// the pieces before it (forward) or after it (reverse), deterministic.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "core/math.h"
#include "cuda/common/chunk.cuh"
#include "cuda/common/device.cuh"
#include "cuda/common/mma.cuh"
#include "cuda/sm90/arch.cuh"
#include "cuda/sm90/mbarrier.cuh"
#include "cuda/sm90/swizzle.h"
#include "cuda/sm90/tma.cuh"
#include "cuda/sm90/wgmma.cuh"
#include "ssd_kernels.h"

namespace ssd { namespace cuda { namespace sm90 {

// The tensor maps of one call (kernel parameter): rows are batch * seqlen + position.
struct ChainMaps {
  CUtensorMap x, z, B, C;  // (headdim, heads, rows), (dstate, groups, rows): boxes {64, 1, 64}
  CUtensorMap dy;          // the reverse walk's output gradient, as x
};

// How the chains are cut (chain_host.h picks it): nseg segments of seg_blocks blocks (the last may be
// shorter); nseg = 1 (no workspace) for a CTA per chain. The first launch walks finer pieces, `fine` to a
// segment, of piece_blocks blocks each (a segment's last piece may be shorter, or empty), so that it has
// CTAs enough to fill the GPU; the workspace holds what each piece adds to its far side (fp32, p x n
// each, by (piece slot, chain, head)) followed by their decay products. Slot j holds piece j going
// forward (the pieces of segments 0 .. nseg - 2) and piece j + fine in reverse (those of 1 .. nseg - 1).
struct ChainSegs {
  int nseg, seg_blocks;
  int fine, piece_blocks;
  float* ends;
  float* decays;
};

// The chain a CTA walks: positions t0 .. t0 + len - 1 of batch row b.
struct FwdChain {
  int b;
  int64_t t0, len;
  float* fin;   // where its final state goes, or null
  float* last;  // final_states too (cu_seqlens: the last sequence with positions), or null
  bool is_last; // the sequence of final_states (cu_seqlens), or a batch row
};
// Packed sequence c's first position: cu_seqlens[c] clamped to [0, seqlen] (offsets that break the
// contract, which device-resident ones may, then give wrong results, never out-of-bounds accesses).
__device__ __forceinline__ int64_t packed_start(const SsdParams& p, int64_t c) {
  return dev::lmin(dev::lmax(p.cu_seqlens[c], 0), p.seqlen);
}

__device__ __forceinline__ FwdChain chain_of(const SsdParams& p, int c, int h) {
  const int64_t H = p.nheads, PN = p.headdim * p.dstate;
  FwdChain ch;
  if (!p.cu_seqlens) {
    ch.b = c;
    ch.t0 = 0;
    ch.len = p.seqlen;
    ch.fin = p.final_states ? p.final_states + ((int64_t)c * H + h) * PN : nullptr;
    ch.last = nullptr;
    ch.is_last = true;
    return ch;
  }
  // offsets that break the contract (device-resident ones reach here unchecked) are clamped
  const int64_t a = packed_start(p, c);
  const int64_t e = dev::lmax(a, packed_start(p, c + 1));
  const int64_t end = packed_start(p, p.num_seqs);
  ch.b = 0;
  ch.t0 = a;
  ch.len = e - a;
  ch.fin = p.varlen_states ? p.varlen_states + ((int64_t)c * H + h) * PN : nullptr;
  ch.is_last = e > a && e == end;
  ch.last = (ch.is_last && p.final_states) ? p.final_states + (int64_t)h * PN : nullptr;
  return ch;
}

// The positions of blocks first .. first + nb - 1 of the chain, and its final states only where `last`.
__device__ __forceinline__ void cut_blocks(FwdChain& ch, int64_t first, int64_t nb, bool last) {
  ch.t0 += 64 * first;
  ch.len = dev::lmax(0, dev::lmin(ch.len - 64 * first, 64 * dev::lmax(nb, 0)));
  if (!last) {
    ch.fin = ch.last = nullptr;
    ch.is_last = false;
  }
}
// The segment seg of nseg: its positions, and no final state but in the last.
__device__ __forceinline__ void cut_segment(FwdChain& ch, const ChainSegs& segs, int seg) {
  if (segs.nseg <= 1) return;
  cut_blocks(ch, (int64_t)seg * segs.seg_blocks, segs.seg_blocks, seg == segs.nseg - 1);
}
// Piece `piece` of the first launch (segment piece / fine, the (piece % fine)-th of it).
__device__ __forceinline__ void cut_piece(FwdChain& ch, const ChainSegs& segs, int piece) {
  const int seg = piece / segs.fine, j = piece % segs.fine;
  const int64_t in_seg = (int64_t)j * segs.piece_blocks;
  cut_blocks(ch, (int64_t)seg * segs.seg_blocks + in_seg, dev::lmin(segs.piece_blocks, segs.seg_blocks - in_seg),
             piece == segs.nseg * segs.fine - 1);
}

// Byte offset of the 16-byte chunk holding column c (16-bit elements) of row r in a swizzled tile.
__device__ __forceinline__ uint32_t tile_off(int r, int c) {
  return (uint32_t)(r * 128 + ((((c >> 3) ^ (r & 7)) & 7) << 4) + (c & 7) * 2);
}

// Issues acc (64 x 64) = A Bᵀ over k < K (no commit or wait): A and B are 64 rows of K 16-bit values each,
// in K / 64 swizzled tiles side by side (8 KB apart), both K-major: C Bᵀ, C Hᵀ, dY X̄ᵀ, B dHᵀ.
template <class T, int K>
__device__ __forceinline__ void wgmma_abt(float (&acc)[32], const char* a, const char* b) {
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    const uint32_t off = (kk >> 2) * (64 * 128) + (kk & 3) * 32;
    wgmma_ss<T, 64>(acc, smem_desc(a + off, 16, 1024, Swizzle::k128B), smem_desc(b + off, 16, 1024, Swizzle::k128B), kk > 0);
  }
}

// The ring's barriers at the CTA's start (thread 0): full[s] (the producer's expect_tx), ready[s] (the
// records warp) and empty[s] (Tr::kEmptyArrivals) of each of the Tr::kStages stages.
template <class Tr>
__device__ __forceinline__ void ring_bars_init(uint64_t* bars) {
  for (int s = 0; s < Tr::kStages; ++s) {
    mbar_init(bars + Tr::kFull + s, 1);
    mbar_init(bars + Tr::kReady + s, 32);
    mbar_init(bars + Tr::kEmpty + s, Tr::kEmptyArrivals);
  }
}

// The state's accumulator element pairs: element i (even) of thread t of the state warpgroup is row
// 16 w + g + 8 ((i >> 1) & 1), columns cc, cc + 1 with cc = 8 (i >> 2) + 2 q (w = warp in the
// warpgroup, g = lane / 4, q = lane % 4): the wgmma m64nN accumulator layout.
__device__ __forceinline__ int acc_row(int i, int w, int g) { return 16 * w + g + 8 * ((i >> 1) & 1); }
__device__ __forceinline__ int acc_col(int i, int q) { return 8 * (i >> 2) + 2 * q; }

// Columns 16 m .. 16 m + 15 of a 64 x 64 16-bit tile (swizzled, tile_off) in a warpgroup's accumulator
// layout, by one ldmatrix: v[c][hr] holds row 16 w + g + 8 hr, columns 16 m + 8 c + 2q, +1 (the values of
// acc[4 (2m + c) + 2 hr], +1). Every lane of the warp must call it.
__device__ __forceinline__ void ld_acc_cols16(uint32_t (&v)[2][2], const char* tile, int m, int w, int lane) {
  const int row = 16 * w + (lane & 7) + 8 * ((lane >> 3) & 1);
  mma::ldsm_x4(v[0][0], v[0][1], v[1][0], v[1][1], tile + tile_off(row, 16 * m + 8 * (lane >> 4)));
}
// Its inverse, by one stmatrix.
__device__ __forceinline__ void st_acc_cols16(char* tile, const uint32_t (&v)[2][2], int m, int w, int lane) {
  const int row = 16 * w + (lane & 7) + 8 * ((lane >> 3) & 1);
  mma::stsm_x4(tile + tile_off(row, 16 * m + 8 * (lane >> 4)), v[0][0], v[0][1], v[1][0], v[1][1]);
}

// A 4 x 4 transpose of 4-byte words across the four lanes of a quad (q = lane % 4): afterwards word j
// of lane q is what word q of lane j was. In a wgmma accumulator layout, word j of lane q holds the two
// 16-bit values at columns 8 c + 2q, 8 c + 2q + 1 of 8-column group c = j of one row; after the swap
// lane q holds group q's eight columns in order, one 16-byte store. Every lane of the warp must call it.
__device__ __forceinline__ void quad_transpose(uint32_t (&a)[4], int q) {
#pragma unroll
  for (int m = 1; m < 4; m <<= 1) {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      if (j & m) continue;
      const bool hi = (q & m) != 0;
      const uint32_t y = __shfl_xor_sync(0xffffffffu, hi ? a[j] : a[j ^ m], m);
      if (hi) a[j] = y;
      else a[j ^ m] = y;
    }
  }
}

// Row hr (0: 16 w + g, 1: that + 8) of a warpgroup's 64 x NC accumulators, 16-bit, stored at row
// (16-byte aligned; column 0 of the fragment): 16-byte stores, the quad's words swapped first.
template <class T, int NC>
__device__ __forceinline__ void store_acc_row16(T* row, const float (&acc)[NC / 2], int hr, int q) {
#pragma unroll
  for (int cb = 0; cb < NC / 32; ++cb) {
    uint32_t a[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int i = 4 * (4 * cb + j) + 2 * hr;
      a[j] = mma::pack2<T>(acc[i], acc[i + 1]);
    }
    quad_transpose(a, q);
    *reinterpret_cast<uint4*>(row + 8 * (4 * cb + q)) = make_uint4(a[0], a[1], a[2], a[3]);
  }
}

// The state warpgroup's accumulators (Tr::NC columns from column c0) into a p x n fp32 state at dst
// (row-major, Tr::N columns).
template <class Tr>
__device__ __forceinline__ void chain_store_state(float* dst, const float (&acc)[Tr::NC / 2], int w, int g, int q, int c0) {
#pragma unroll
  for (int i = 0; i < Tr::NC / 2; i += 2)
    *reinterpret_cast<float2*>(dst + (int64_t)acc_row(i, w, g) * Tr::N + c0 + acc_col(i, q)) = make_float2(acc[i], acc[i + 1]);
}

constexpr int kDtAhead = 4;      // blocks whose dt each records warp has in flight
constexpr int kRecordsWarps = 3;  // warps 1 .. 3: the records of every third block each

// Records warp r (0 .. kRecordsWarps - 1, warp 1 + r): the records {s_j, d_j, w_j, 2^(s_j)} of the
// positions of blocks r, r + kRecordsWarps, ... in the order the CTA walks the blocks (Tr::kWalkBack:
// from the chain's end), and the rows of the stage's tiles that the state reads past the chain's end
// zeroed (they hold the next sequence, or row, or zero fill), then ready[s]. A block's records are one
// chain of dependent steps (softplus, a double-precision scan over the warp, exponentials), long enough
// that a single warp held the walks back (bench/NOTES.md, session 20): warps take turns by block.
template <class Tr>
__device__ __forceinline__ void chain_records(const SsdParams& p, char* smem, const FwdChain& ch, int nblk, int h,
                                              int r, int lane) {
  constexpr int S = Tr::kStages;
  uint64_t* bars = Tr::bars(smem);
  const float A = p.A[h];
  const float bias = p.dt_bias ? p.dt_bias[h] : 0.f;
  // dt of this lane's two positions of block kb (0 past the chain's end): loaded kDtAhead of this warp's
  // blocks ahead, so that the global loads' latency overlaps the records of the blocks before
  auto load_dt = [&](int kb, float (&raw)[2]) {
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int64_t j = 64 * (int64_t)kb + 2 * lane + e;
      raw[e] = j < ch.len ? dev::ld_f(p.dt, p.dt_type, (int64_t)ch.b * p.dt_batch_stride + (ch.t0 + j) * p.dt_seq_stride + h) : 0.f;
    }
  };
  auto block = [&](int k) { return Tr::kWalkBack ? nblk - 1 - k : k; };
  constexpr int R = kRecordsWarps;
  float ahead[kDtAhead][2];
#pragma unroll
  for (int u = 0; u < kDtAhead; ++u)
    if (r + R * u < nblk) load_dt(block(r + R * u), ahead[u]);
  // unrolled by kDtAhead, so that each block's dt stays in registers of its own
  for (int k0 = r; k0 < nblk; k0 += R * kDtAhead)
#pragma unroll
  for (int u = 0; u < kDtAhead; ++u) {
    const int k = k0 + R * u;
    if (k >= nblk) break;
    const int s = k % S, kb = block(k);
    const int len = (int)dev::lmin(64, ch.len - 64 * (int64_t)kb);
    float d[2];
#pragma unroll
    for (int e = 0; e < 2; ++e)
      d[e] = 2 * lane + e < len ? math::step_size(ahead[u][e] + bias, p.dt_softplus, p.dt_min, p.dt_max) : 0.f;
    // the next load into the same registers, once read (so that no copy waits on a load in flight)
    if (k + R * kDtAhead < nblk) load_dt(block(k + R * kDtAhead), ahead[u]);
    const double v0 = (double)d[0] * (double)A;
    const double v1 = v0 + (double)d[1] * (double)A;
    double ex;  // the sum before this lane's two positions
    const double x = dev::warp_inclusive_sum(v1, &ex);
    const float s0 = (float)((ex + v0) * 1.4426950408889634);
    const float s1 = (float)(x * 1.4426950408889634);
    const float slast = __shfl_sync(0xffffffffu, s1, 31);
    mbar_wait(bars + Tr::kFull + s, (k / S) & 1);  // the stage's tiles have landed (and its records are free)
    float4* rec = Tr::recs(smem, s);
    rec[2 * lane] = make_float4(s0, d[0], dev::ex2(slast - s0) * d[0], dev::ex2(s0));
    rec[2 * lane + 1] = make_float4(s1, d[1], dev::ex2(slast - s1) * d[1], dev::ex2(s1));
    if (len < 64) {
      char* st = Tr::stage(smem, s);
      const int nz = (64 - len) * 8;  // 16-byte chunks per tile past the end
      for (int t = 0; t < Tr::kZeroTiles; ++t) {
        char* tile = st + Tr::zero_tile(t) + len * 128;
        for (int v = lane; v < nz; v += 32) *reinterpret_cast<uint4*>(tile + 16 * v) = make_uint4(0u, 0u, 0u, 0u);
      }
      fence_proxy_async_smem();
    }
    __syncwarp();
    mbar_arrive(bars + Tr::kReady + s);
  }
}

// The state warpgroup's value entering segment seg (acc, its accumulator fragment): `start` (the
// initial state going forward, the final state's gradient in reverse; null: zero) where the walk
// starts from it, plus the ordered sum of what the pieces on the near side added (ahead of a launch
// that walks every segment; `summed` false for the first launch, which starts each piece from zero);
// the Tr::NC columns from column c0 of the p x Tr::N state. A piece at a time, all of its loads issued
// together, so that the sum costs one round trip to L2 per piece.
template <class Tr>
__device__ __forceinline__ void chain_enter(float (&acc)[Tr::NC / 2], const ChainSegs& segs, int seg, bool summed,
                                            const float* start, int64_t slot0, int64_t slot_stride, int w, int g, int q, int c0) {
  constexpr int N = Tr::N;
  const int64_t PN = (int64_t)Tr::P * N;
  // the pieces whose additions reach this segment, nearest last: forward those of segments 0 .. seg - 1
  // (slots 0 .. seg * fine - 1), reverse those of nseg - 1 .. seg + 1 (slots (nseg - 1) fine - 1 down to
  // seg * fine)
  const int nnear = summed ? (Tr::kReverse ? segs.nseg - 1 - seg : seg) * segs.fine : 0;
#pragma unroll
  for (int i = 0; i < Tr::NC / 2; i += 2) {
    float2 v = make_float2(0.f, 0.f);
    if (start) v = *reinterpret_cast<const float2*>(start + (int64_t)acc_row(i, w, g) * N + c0 + acc_col(i, q));
    acc[i] = v.x;
    acc[i + 1] = v.y;
  }
  for (int m = 0; m < nnear; ++m) {
    const int j = Tr::kReverse ? (segs.nseg - 1) * segs.fine - 1 - m : m;  // slot
    const int64_t sj = slot0 + (int64_t)j * slot_stride;
    const float dj = segs.decays[sj];
    const float* e = segs.ends + sj * PN + c0;
#pragma unroll
    for (int i = 0; i < Tr::NC / 2; i += 2) {
      const float2 ev = *reinterpret_cast<const float2*>(e + (int64_t)acc_row(i, w, g) * N + acc_col(i, q));
      acc[i] = fmaf(dj, acc[i], ev.x);
      acc[i + 1] = fmaf(dj, acc[i + 1], ev.y);
    }
  }
}

// The A operand of a block's state product, read transposed by ldmatrix into registers: the stage's x
// scaled by w_j (forward) or dy o silu(z) scaled by 2^(s_j) (reverse; z at Tr::kZ when has_z), each times
// `carry` (1 in a sequential walk; the folded walk's decay between the block and the far end).
template <class Tr>
__device__ __forceinline__ void chain_state_operand(uint32_t (&xa)[4][4], const char* st, const float4* rec, bool has_z,
                                                    float carry, int w, int lane) {
  using T = typename Tr::Elem;
  const int q = lane & 3;
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    // ldmatrix (transposed) of A: matrices (p 0-7, pos 0-7), (p 8-15, pos 0-7), (p 0-7, pos 8-15),
    // (p 8-15, pos 8-15) of warp w's 16 p rows; lane 8m + rr addresses position row 16 kk + rr + 8 (m >> 1)
    const int m = lane >> 3, rr = lane & 7;
    const int pos = 16 * kk + rr + 8 * (m >> 1), pc = 16 * w + 8 * (m & 1);
    mma::ldsm_x4_t(xa[kk][0], xa[kk][1], xa[kk][2], xa[kk][3], st + Tr::kX + tile_off(pos, pc));
    uint32_t za[4] = {0u, 0u, 0u, 0u};
    if (Tr::kReverse && has_z) mma::ldsm_x4_t(za[0], za[1], za[2], za[3], st + Tr::kZ + tile_off(pos, pc));
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int j = 16 * kk + 2 * q + 8 * (r >> 1);
      float2 v = mma::unpack2<T>(xa[kk][r]);
      if (Tr::kReverse && has_z) {
        const float2 zv = mma::unpack2<T>(za[r]);
        v.x *= dev::silu(zv.x);
        v.y *= dev::silu(zv.y);
      }
      const float c0 = (Tr::kReverse ? rec[j].w : rec[j].z) * carry, c1 = (Tr::kReverse ? rec[j + 1].w : rec[j + 1].z) * carry;
      xa[kk][r] = mma::pack2<T>(v.x * c0, v.y * c1);
    }
  }
}

// Issues acc += Aᵀ Bt for the operand xa and the stage's Tr::NC columns of B (forward) or C (reverse),
// 64-column tiles at Tr::kB (no commit or wait).
template <class Tr>
__device__ __forceinline__ void chain_state_mma(float (&acc)[Tr::NC / 2], const uint32_t (&xa)[4][4], const char* st) {
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < 4; ++kk)
    wgmma_rs<typename Tr::Elem, Tr::NC, kMNMajor>(acc, xa[kk], smem_desc(st + Tr::kB + kk * 2048, Tr::kTile, 1024, Swizzle::k128B),
                                                   true);
}

// One block of a sequential walk (the state warpgroup's, on stage st with records rec):
// acc <- 2^(s_63) acc + Aᵀ Bt (chain_state_operand, chain_state_mma). Returns the block's decay 2^(s_63).
template <class Tr>
__device__ __forceinline__ float chain_state_block(float (&acc)[Tr::NC / 2], const char* st, const float4* rec, bool has_z,
                                                  int w, int lane) {
  const float dec = dev::ex2(rec[63].x);
#pragma unroll
  for (int i = 0; i < Tr::NC / 2; ++i) acc[i] *= dec;
  uint32_t xa[4][4];
  chain_state_operand<Tr>(xa, st, rec, has_z, 1.f, w, lane);
  chain_state_mma<Tr>(acc, xa, st);
  wgmma_commit();
  wgmma_wait<0>();
  wgmma_hold(acc);
  return dec;
}

}}}  // namespace ssd::cuda::sm90
