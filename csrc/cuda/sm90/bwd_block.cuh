// The sm_90a backward's block launch: one CTA per (block slot, group), a block being 64 positions of a
// chain (chain_states.cuh: block_slot), looping over the group's heads. H entering the block and dL/dH
// leaving it come from the state walks (per head, 16-bit), so nothing crosses blocks here.
//
// Per head, with i, j positions of the block (j <= i < len), s_j = log2(e) * the cumulative sum of d*A
// from the block's start, e_i = 2^(s_i), w'_j = 2^(s_last - s_j), L_ij = 2^(s_i - s_j), G = C Bᵀ (per
// group), M = G o L, X̄_j = d_j x_j, dY = dy o silu(z) (dy without z):
//   Y     = e o (C Hᵀ) + M X̄ + D x                      (the output before the gate, recomputed)
//   dz    = dy o Y o silu'(z)
//   dX̄   = Mᵀ dY + w' o (B dHᵀ),   dx = d o dX̄ + D dY
//   dG    = (dY X̄ᵀ) o L,           P = dG o G
//   dC   += dG B + (e o dY) H,      dB += dGᵀ C + (w' o X̄) dH     (summed over the heads)
//   ds_i  = dY_i . (e_i C_i Hᵀ) + sum_{j<i} P_ij - sum_{k>i} P_ki - q_i,   q_j = X̄_j . (w'_j B_j dHᵀ),
//   ds_last += 2^(s_last) <dH, H> + sum_{j<last} q_j      (last = len - 1; the terms that cancel left out)
//   dd_j  = x_j . dX̄_j + A sum_{t>=j} ds_t,   ddt = dd o step_size', dA += sum_j d_j sum_{t>=j} ds_t
// dA, dDtBias and dD go to per-CTA partials that k_bwd_finish sums in a fixed order. As every CUDA
// backward, it writes each gradient in its input's dtype and layout (dy has x's: cuda_supports_backward).
// Y is recomputed even where the caller kept y_ungated from the forward: reading it was the slower of
// the two (bench/NOTES.md, session 19).
//
// Roles (384 threads; warps 2 and 3 leave at once):
//   warp 0, one lane  the producer: B and C of the block once, then per head x, dy, z, H and dH into a
//                     ring of kStages stages (full[s] / empty[s]);
//   warp 1            the records: per head d_j, s_j, w'_j, e_j (and the rows past len zeroed), ready[r]
//                     in a ring of kRecs slots; then, once both warpgroups are done with the head
//                     (done[r]), ds, its reverse sum, ddt, and the head's dA / dDtBias / dD partials;
//   warpgroup 1       per head: the first half of dY (into the stage, dyready[s]), C Hᵀ, dY X̄ᵀ, Mᵀ dY, B dHᵀ,
//                     M X̄; dx, dz, the ds terms; dG summed over the heads, written
//                     to shared memory at the end (dgready);
//   warpgroup 2       per head: the second half of dY, dC += (e o dY) H, dB += (w' o X̄) dH, <dH, H>; at
//                     the end dC += dG B, dB += dGᵀ C, the stores of dB and dC.
#pragma once
#include "cuda/sm90/chain_states.cuh"

namespace ssd { namespace cuda { namespace sm90 {

template <class T, int N_>
struct BwdBlock {
  using Elem = T;
  static constexpr int P = 64, N = N_, BQ = 64;
  static constexpr int kStages = 2, kRecs = 4;
  static constexpr int kThreads = 384;
  static constexpr int kProducerRegs = 40, kMainRegs = 256, kAccRegs = 208;
  static_assert(kProducerRegs * 128 + kMainRegs * 128 + kAccRegs * 128 <= 65536, "more registers than an SM has");
  static constexpr int kNT = N / 64;
  static constexpr int kTile = 64 * 128;
  // resident: B and C of the block (kNT tiles each), a head's M = G o L (for Mᵀ dY) and the heads' dG
  // (16-bit, one tile each)
  static constexpr int kB = 0, kC = kNT * kTile, kM = 2 * kNT * kTile, kDG = kM + kTile;
  static constexpr int kStage0 = kDG + kTile;
  // a stage: x, dy, z, dY (made by the two warpgroups), H (kNT tiles), dH (kNT tiles)
  static constexpr int kX = 0, kDy = kTile, kZ = 2 * kTile, kDY = 3 * kTile, kH = 4 * kTile, kDH = kH + kNT * kTile;
  static constexpr int kStageBytes = kDH + kNT * kTile;
  // a records slot: float4 {s, d, w', e} and the raw dt + bias per position, then the ds terms
  struct Recs {
    float4 rec[BQ];
    float u[BQ];
    float yoffdy[BQ], rowp[BQ], q[BQ], xdx[BQ];
    float colp[4][BQ];  // per warp of warpgroup 1
    float ddp[4][BQ];   // dD per channel, per warp of warpgroup 1 (D per head: the warp's sum in [w][0])
    float pass[4];      // <dH, H> per warp of warpgroup 2
  };
  static constexpr int kRec = kStage0 + kStages * kStageBytes;
  static constexpr int kBar = kRec + kRecs * (int)sizeof(Recs);
  enum {
    kBC = 0, kFull = 1, kEmpty = kFull + kStages, kDyReady = kEmpty + kStages, kReady = kDyReady + kStages,
    kDone = kReady + kRecs, kDgReady = kDone + kRecs, kMReady = kDgReady + 1, kBars = kMReady + 1
  };
  static constexpr int kSmem = kBar + kBars * 8 + 1024;
  static __device__ __forceinline__ uint64_t* bars(char* smem) { return reinterpret_cast<uint64_t*>(smem + kBar); }
  static __device__ __forceinline__ char* stage(char* smem, int s) { return smem + kStage0 + s * kStageBytes; }
  static __device__ __forceinline__ Recs* recs(char* smem, int r) { return reinterpret_cast<Recs*>(smem + kRec) + r; }
  static_assert(N == 64 || N == 128, "dstate 64 or 128");
  static_assert(sizeof(Recs) % 16 == 0, "records slots 16-byte aligned");
};

// The tensor maps of the block launch: those of the chains and the per-block H and dH (2D: dstate
// columns, slots * heads * headdim rows; boxes {64, 64}).
struct BlockMaps {
  ChainMaps c;
  CUtensorMap h, dh;
};

// The block a CTA takes: chain c, block kb of it, positions t0 .. t0 + len - 1 of batch row b (len 0:
// an unused slot).
struct BlockPos {
  int c, kb, b, len;
  int64_t t0;
};
__device__ __forceinline__ BlockPos block_of(const SsdParams& p, int64_t slot) {
  BlockPos bp;
  const int64_t per_row = (p.seqlen + 63) / 64;
  if (!p.cu_seqlens) {
    bp.c = bp.b = (int)(slot / per_row);
    bp.kb = (int)(slot % per_row);
    bp.t0 = 64 * (int64_t)bp.kb;
    bp.len = (int)dev::lmin(64, p.seqlen - bp.t0);
    return bp;
  }
  // the sequence whose slots hold this one: the last c with start_c / 64 + c <= slot (chain_states.cuh:
  // block_slot, with the same clamped starts)
  int lo = 0, hi = (int)p.num_seqs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (packed_start(p, mid) / 64 + mid <= slot) lo = mid;
    else hi = mid - 1;
  }
  const FwdChain ch = chain_of(p, lo, 0);
  const int64_t kb = slot - (packed_start(p, lo) / 64 + lo);  // < 0 only for offsets that break the contract
  bp.c = lo;
  bp.b = 0;
  bp.kb = (int)dev::lmax(kb, 0);
  bp.t0 = ch.t0 + 64 * (int64_t)bp.kb;
  bp.len = kb < 0 ? 0 : (int)dev::lmax(0, dev::lmin(64, ch.len - 64 * kb));
  return bp;
}

// Where the per-CTA partials of dA, dDtBias and dD go: by (slot, head), dD per channel after them.
struct BlockParts {
  float* dA;      // slots x heads
  float* dbias;   // slots x heads
  float* dD;      // slots x heads (x headdim with D per channel)
};

// The partials of slot `slot` for the heads of group grp, zeros (a slot that holds no block).
__device__ __forceinline__ void zero_slot_parts(const SsdParams& p, const BlockParts& parts, int64_t slot, int grp) {
  const int hpg = (int)(p.nheads / p.ngroups);
  const int64_t ph0 = slot * p.nheads + (int64_t)grp * hpg;
  const int nd = p.D ? (p.D_per_channel ? 64 : 1) : 0;  // dD partials per head
  for (int i = threadIdx.x; i < hpg; i += blockDim.x) {
    parts.dA[ph0 + i] = 0.f;
    parts.dbias[ph0 + i] = 0.f;
  }
  for (int i = threadIdx.x; i < hpg * nd; i += blockDim.x) parts.dD[ph0 * nd + i] = 0.f;
}

// The per-position sums of a warpgroup's 64 x 64 accumulator layout: a and b hold this thread's
// partials of rows r0 and r0 + 8 (summed here over the quad, into ra[] and rb[]).
__device__ __forceinline__ void store_row_sums(float (&a)[2], float (&b)[2], float* ra, float* rb, int r0, int q) {
#pragma unroll
  for (int o = 1; o < 4; o <<= 1) {
    a[0] += __shfl_xor_sync(0xffffffffu, a[0], o);
    a[1] += __shfl_xor_sync(0xffffffffu, a[1], o);
    b[0] += __shfl_xor_sync(0xffffffffu, b[0], o);
    b[1] += __shfl_xor_sync(0xffffffffu, b[1], o);
  }
  if (q == 0) {
    ra[r0] = a[0];
    ra[r0 + 8] = a[1];
    rb[r0] = b[0];
    rb[r0 + 8] = b[1];
  }
}
// col holds this thread's partials of columns 8 (c >> 1) + 2q + (c & 1) over its two rows: summed here
// over the warp's 16 rows, into cw[].
__device__ __forceinline__ void store_col_sums(float (&col)[16], float* cw, int g, int q) {
#pragma unroll
  for (int c = 0; c < 16; ++c) {
#pragma unroll
    for (int o = 4; o < 32; o <<= 1) col[c] += __shfl_xor_sync(0xffffffffu, col[c], o);
  }
  if (g == 0) {
#pragma unroll
    for (int c = 0; c < 16; ++c) cw[8 * (c >> 1) + 2 * q + (c & 1)] = col[c];
  }
}

// Half `half` of a head's dY = dy o silu(z) (dy without z: a copy) into the stage's dY tile: rows 32 half ..
// 32 half + 31, two 16-byte chunks a thread of a warpgroup (t its thread). The rows past len are zero in
// dy (the records warp zeroed them before ready).
template <class Tr>
__device__ __forceinline__ void make_dY(char* st, int half, int t, bool has_z) {
  using T = typename Tr::Elem;
#pragma unroll
  for (int v = 0; v < 2; ++v) {
    const int chunk = 256 * half + t + 128 * v;  // 512 chunks of 8 values
    const int row = chunk >> 3, col = (chunk & 7) * 8;
    const uint32_t off = tile_off(row, col);
    uint4 dy4 = *reinterpret_cast<const uint4*>(st + Tr::kDy + off);
    if (has_z) {
      const uint4 z4 = *reinterpret_cast<const uint4*>(st + Tr::kZ + off);
      uint32_t* dv = reinterpret_cast<uint32_t*>(&dy4);
      const uint32_t* zv = reinterpret_cast<const uint32_t*>(&z4);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 a = mma::unpack2<T>(dv[e]), zz = mma::unpack2<T>(zv[e]);
        dv[e] = mma::pack2<T>(a.x * dev::silu(zz.x), a.y * dev::silu(zz.y));
      }
    }
    *reinterpret_cast<uint4*>(st + Tr::kDY + off) = dy4;
  }
}

template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads, 1)
k_bwd_block(const __grid_constant__ SsdBackwardParams bw, const __grid_constant__ BlockMaps maps,
            const __grid_constant__ BlockParts parts) {
#if SSD_SM90A || defined(SSD_CUDA_EMULATION)
  using T = typename Tr::Elem;
  using Recs = typename Tr::Recs;
  constexpr int N = Tr::N, S = Tr::kStages, R = Tr::kRecs, kTile = Tr::kTile, kNT = Tr::kNT;
  const SsdParams& p = bw.fwd;
  extern __shared__ char smem_dyn[];
  // aligned to 1024 as an offset from smem_dyn, so that the compiler knows every access is to shared memory
  char* smem = smem_dyn + ((1024 - (reinterpret_cast<uintptr_t>(smem_dyn) & 1023)) & 1023);
  uint64_t* bars = Tr::bars(smem);

  const int tid = threadIdx.x, warp = __shfl_sync(0xffffffffu, tid >> 5, 0), lane = tid & 31;
  const int H = (int)p.nheads, hpg = (int)(p.nheads / p.ngroups);
  const int64_t slot = blockIdx.x / p.ngroups;
  const int grp = (int)(blockIdx.x % p.ngroups);
  const BlockPos bp = block_of(p, slot);
  if (bp.len <= 0) {
    // a slot between packed sequences: its partials of dA, dDtBias and dD (which k_bwd_block_finish
    // sums over every slot) are zeros; then the whole CTA leaves before any barrier
    zero_slot_parts(p, parts, slot, grp);
    return;
  }
  const int len = bp.len, h0 = grp * hpg, nh = hpg;
  const int64_t row0 = (int64_t)bp.b * p.seqlen + bp.t0;  // the tensor maps' row of the block's start
  const bool has_z = p.z != nullptr;

  if (tid == 0) {
    mbar_init(bars + Tr::kBC, 1);
    for (int s = 0; s < S; ++s) {
      mbar_init(bars + Tr::kFull + s, 1);
      mbar_init(bars + Tr::kEmpty + s, 256);
      mbar_init(bars + Tr::kDyReady + s, 256);
    }
    for (int r = 0; r < R; ++r) {
      mbar_init(bars + Tr::kReady + r, 32);
      mbar_init(bars + Tr::kDone + r, 256);
    }
    mbar_init(bars + Tr::kDgReady, 128);
    mbar_init(bars + Tr::kMReady, 128);
    mbar_init_fence();
  }
  __syncthreads();

  if (warp < 4) {
    regs_lower<Tr::kProducerRegs>();
    if (warp == 0 && lane == 0) {
      // ---- the producer
      tma_prefetch(&maps.c.x);
      tma_prefetch(&maps.c.dy);
      if (has_z) tma_prefetch(&maps.c.z);
      tma_prefetch(&maps.h);
      tma_prefetch(&maps.dh);
      mbar_arrive_expect_tx(bars + Tr::kBC, 2u * kNT * kTile);
      for (int t = 0; t < kNT; ++t) {
        tma_load_3d(smem + Tr::kB + t * kTile, &maps.c.B, bars + Tr::kBC, 64 * t, grp, (int)row0);
        tma_load_3d(smem + Tr::kC + t * kTile, &maps.c.C, bars + Tr::kBC, 64 * t, grp, (int)row0);
      }
      const uint32_t bytes = (uint32_t)kTile * (2 + (has_z ? 1 : 0) + 2 * kNT);
      for (int k = 0; k < nh; ++k) {
        const int s = k % S, h = h0 + k;
        mbar_wait(bars + Tr::kEmpty + s, ((k / S) & 1) ^ 1);
        uint64_t* full = bars + Tr::kFull + s;
        mbar_arrive_expect_tx(full, bytes);
        char* st = Tr::stage(smem, s);
        tma_load_3d(st + Tr::kX, &maps.c.x, full, 0, h, (int)row0);
        tma_load_3d(st + Tr::kDy, &maps.c.dy, full, 0, h, (int)row0);
        if (has_z) tma_load_3d(st + Tr::kZ, &maps.c.z, full, 0, h, (int)row0);
        const int prow = (int)((slot * H + h) * 64);
        for (int t = 0; t < kNT; ++t) {
          tma_load_2d(st + Tr::kH + t * kTile, &maps.h, full, 64 * t, prow);
          tma_load_2d(st + Tr::kDH + t * kTile, &maps.dh, full, 64 * t, prow);
        }
      }
    } else if (warp == 1) {
      // ---- the records, and each head's ds once both warpgroups are done with it
      const float lo = p.dt_min, hi = p.dt_max;
      auto records = [&](int k) {
        const int s = k % S, r = k % R, h = h0 + k;
        const float A = p.A[h], bias = p.dt_bias ? p.dt_bias[h] : 0.f;
        float u[2], d[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int j = 2 * lane + e;
          u[e] = j < len ? dev::ld_f(p.dt, p.dt_type, (int64_t)bp.b * p.dt_batch_stride + (bp.t0 + j) * p.dt_seq_stride + h) + bias : 0.f;
          d[e] = j < len ? math::step_size(u[e], p.dt_softplus, lo, hi) : 0.f;
        }
        const double v0 = (double)d[0] * (double)A;
        const double v1 = v0 + (double)d[1] * (double)A;
        double ex;
        const double x = dev::warp_inclusive_sum(v1, &ex);
        const float s0 = (float)((ex + v0) * 1.4426950408889634), s1 = (float)(x * 1.4426950408889634);
        const float slast = __shfl_sync(0xffffffffu, s1, 31);
        mbar_wait(bars + Tr::kFull + s, (k / S) & 1);
        if (k == 0) mbar_wait(bars + Tr::kBC, 0);
        Recs* rc = Tr::recs(smem, r);
        rc->rec[2 * lane] = make_float4(s0, d[0], dev::ex2(slast - s0), dev::ex2(s0));
        rc->rec[2 * lane + 1] = make_float4(s1, d[1], dev::ex2(slast - s1), dev::ex2(s1));
        rc->u[2 * lane] = u[0];
        rc->u[2 * lane + 1] = u[1];
        if (len < 64) {
          const int nz = (64 - len) * 8;  // 16-byte chunks per tile past the end
          char* st = Tr::stage(smem, s);
          const int tiles[3] = {Tr::kX, Tr::kDy, Tr::kZ};
          for (int t : tiles) {
            char* tile = st + t + len * 128;
            for (int v = lane; v < nz; v += 32) *reinterpret_cast<uint4*>(tile + 16 * v) = make_uint4(0u, 0u, 0u, 0u);
          }
          if (k == 0)
            for (int t = 0; t < 2 * kNT; ++t) {
              char* tile = smem + Tr::kB + t * kTile + len * 128;
              for (int v = lane; v < nz; v += 32) *reinterpret_cast<uint4*>(tile + 16 * v) = make_uint4(0u, 0u, 0u, 0u);
            }
          fence_proxy_async_smem();
        }
        __syncwarp();
        mbar_arrive(bars + Tr::kReady + r);
      };
      auto finish = [&](int k) {
        const int r = k % R, h = h0 + k;
        mbar_wait(bars + Tr::kDone + r, (k / R) & 1);
        const Recs* rc = Tr::recs(smem, r);
        const float A = p.A[h];
        const int last = len - 1;
        float q[2], ds[2];
        double qsum = 0;
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int j = 2 * lane + e;
          q[e] = j == last ? 0.f : rc->q[j];
          ds[e] = rc->yoffdy[j] + rc->rowp[j] - (rc->colp[0][j] + rc->colp[1][j] + rc->colp[2][j] + rc->colp[3][j]) - q[e];
          qsum += q[e];
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) qsum += __shfl_xor_sync(0xffffffffu, qsum, o);
        // the decay of the state entering the block to its end: 2^(s_last)
        const float pass = (rc->pass[0] + rc->pass[1] + rc->pass[2] + rc->pass[3]) * dev::ex2(rc->rec[last].x);
        if (2 * lane == last) ds[0] += pass + (float)qsum;
        if (2 * lane + 1 == last) ds[1] += pass + (float)qsum;
        // R_j = sum_{t >= j} ds_t: this lane's pair, then the lanes above it
        double tail = (double)ds[0] + (double)ds[1];
        double suffix = tail;  // inclusive sum over lanes >= this one
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
          const double v = __shfl_down_sync(0xffffffffu, suffix, o);
          if (lane + o < 32) suffix += v;
        }
        const double above = suffix - tail;  // lanes > this one
        const double R1 = above + ds[1], R0 = R1 + ds[0];
        const double Rj[2] = {R0, R1};
        float dAp = 0.f, dbp = 0.f;
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int j = 2 * lane + e;
          if (j >= len) continue;
          const float d = rc->rec[j].y, u = rc->u[j];
          const float dd = rc->xdx[j] + (float)(A * Rj[e]);
          dAp += (float)(d * Rj[e]);
          const float v = p.dt_softplus ? math::softplus(u) : u;
          const float g = math::clamp_passes(v, p.dt_min, p.dt_max) ? dd * math::softplus_grad(u, p.dt_softplus) : 0.f;
          dev::st_f(bw.ddt, p.dt_type, (int64_t)bp.b * p.dt_batch_stride + (bp.t0 + j) * p.dt_seq_stride + h, g);
          dbp += g;
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
          dAp += __shfl_xor_sync(0xffffffffu, dAp, o);
          dbp += __shfl_xor_sync(0xffffffffu, dbp, o);
        }
        const int64_t ph = slot * H + h;
        if (lane == 0) {
          parts.dA[ph] = dAp;
          parts.dbias[ph] = dbp;
        }
        if (p.D) {
          if (p.D_per_channel) {
            for (int c = lane; c < 64; c += 32)
              parts.dD[ph * 64 + c] = rc->ddp[0][c] + rc->ddp[1][c] + rc->ddp[2][c] + rc->ddp[3][c];
          } else if (lane == 0) {
            parts.dD[ph] = rc->ddp[0][0] + rc->ddp[1][0] + rc->ddp[2][0] + rc->ddp[3][0];
          }
        }
      };
      // records run two heads ahead of the ds (R slots): head k + 2 reuses the stage of head k, whose
      // ds are done first
      for (int k = 0; k < nh && k < 2; ++k) records(k);
      for (int k = 0; k < nh; ++k) {
        finish(k);
        if (k + 2 < nh) records(k + 2);
      }
    }
    return;
  }

  const int t = tid & 127, w = t >> 5, g = lane >> 2, q = lane & 3;
  if (warp < 8) {
    // ---- warpgroup 1: per head
    regs_raise<Tr::kMainRegs>();
    const bool has_D = p.D != nullptr, dch = p.D_per_channel != 0;
    float gm[32];    // G = C Bᵀ (rows i, columns j)
    float dgs[32];   // dG summed over the heads
#pragma unroll
    for (int i = 0; i < 32; ++i) dgs[i] = 0.f;
    for (int k = 0; k < nh; ++k) {
      const int s = k % S, r = k % R, h = h0 + k;
      mbar_wait(bars + Tr::kFull + s, (k / S) & 1);
      mbar_wait(bars + Tr::kReady + r, (k / R) & 1);
      char* st = Tr::stage(smem, s);
      Recs* rc = Tr::recs(smem, r);
      const float4* rec = rc->rec;
      if (k == 0) {
        // G once per CTA, kept in registers (fp32)
        wgmma_fence();
        wgmma_abt<T, N>(gm, smem + Tr::kC, smem + Tr::kB);
        wgmma_commit();
        wgmma_wait<0>();
        wgmma_hold(gm);
      }
      // dY's first half (warpgroup 2 makes the second)
      make_dY<Tr>(st, 0, t, has_z);
      fence_proxy_async_smem();
      mbar_arrive(bars + Tr::kDyReady + s);
      mbar_wait(bars + Tr::kDyReady + s, (k / S) & 1);

      // C Hᵀ (rows i, columns p) and dY X̄ᵀ / d (rows i, columns j)
      float ya[32], dm[32];
      wgmma_fence();
      wgmma_abt<T, N>(ya, smem + Tr::kC, st + Tr::kH);
      wgmma_abt<T, 64>(dm, st + Tr::kDY, st + Tr::kX);
      wgmma_commit();
      wgmma_wait<0>();
      wgmma_hold(ya);
      wgmma_hold(dm);

      const int r0 = 16 * w + g;
      const float4 ri[2] = {rec[r0], rec[r0 + 8]};
      // dG, P's row sums (this thread's two rows) and column sums (this warp's 16 rows), the decayed
      // matrix M with d_j as the A operand of M X̄, and M without it into the M tile (the A operand of
      // Mᵀ dY, read transposed), 16 columns at a time
      uint32_t pa[4][4];
      float rowp[2] = {0.f, 0.f};
      float colp[16];
      uint32_t mt[2][2];
#pragma unroll
      for (int i = 0; i < 32; i += 2) {
        const int hr = (i >> 1) & 1, rr = r0 + 8 * hr, c = acc_col(i, q);
        float mv[2], mw[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int cj = c + e;
          const float4 rj = rec[cj];
          const bool in = cj <= rr && rr < len;
          const float l = in ? dev::ex2(ri[hr].x - rj.x) : 0.f;
          const float dg = dm[i + e] * rj.y * l;  // (dY_i . x_j) d_j L_ij
          const float pv = cj < rr ? dg * gm[i + e] : 0.f;
          rowp[hr] += pv;
          colp[(i >> 2) * 2 + e] = (hr ? colp[(i >> 2) * 2 + e] : 0.f) + pv;
          dgs[i + e] += dg;
          mw[e] = gm[i + e] * l;
          mv[e] = mw[e] * rj.y;
        }
        pa[i >> 3][(i >> 1) & 3] = mma::pack2<T>(mv[0], mv[1]);
        mt[(i >> 2) & 1][hr] = mma::pack2<T>(mw[0], mw[1]);
        if ((i & 7) == 6) st_acc_cols16(smem + Tr::kM, mt, i >> 3, w, lane);
      }
      // Yoff = e o (C Hᵀ), dY . Yoff per row
      float yod[2] = {0.f, 0.f};
#pragma unroll
      for (int m = 0; m < 4; ++m) {
        uint32_t dyw[2][2];
        ld_acc_cols16(dyw, st + Tr::kDY, m, w, lane);
#pragma unroll
        for (int c = 0; c < 2; ++c)
#pragma unroll
          for (int hr = 0; hr < 2; ++hr) {
            const int i = 4 * (2 * m + c) + 2 * hr;
            ya[i] *= ri[hr].w;
            ya[i + 1] *= ri[hr].w;
            const float2 dyv = mma::unpack2<T>(dyw[c][hr]);
            yod[hr] += dyv.x * ya[i] + dyv.y * ya[i + 1];
          }
      }
      store_row_sums(rowp, yod, rc->rowp, rc->yoffdy, r0, q);
      store_col_sums(colp, rc->colp[w], g, q);

      // the M tile complete (every warp's rows) before Mᵀ dY reads it
      fence_proxy_async_smem();
      mbar_arrive(bars + Tr::kMReady);
      mbar_wait(bars + Tr::kMReady, k & 1);
      // M X̄ onto Yoff, Mᵀ dY, B dHᵀ
      float dxa[32], bdh[32];
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < 4; ++kk)
        wgmma_rs<T, 64, kMNMajor>(ya, pa[kk], smem_desc(st + Tr::kX + kk * 2048, 8192, 1024, Swizzle::k128B), true);
#pragma unroll
      for (int kk = 0; kk < 4; ++kk)
        wgmma_ss<T, 64, kMNMajor, kMNMajor>(dxa, smem_desc(smem + Tr::kM + kk * 2048, 8192, 1024, Swizzle::k128B),
                                            smem_desc(st + Tr::kDY + kk * 2048, 8192, 1024, Swizzle::k128B), kk > 0);
      wgmma_abt<T, N>(bdh, smem + Tr::kB, st + Tr::kDH);
      wgmma_commit();
      wgmma_wait<0>();
      wgmma_hold(ya);
      wgmma_hold(dxa);
      wgmma_hold(bdh);

      // the epilogue: rows are positions (i for Y, j for dX̄), columns p
      const float dh = (has_D && !dch) ? p.D[h] : 0.f;
      const float* Dc = (has_D && dch) ? p.D + (int64_t)h * 64 : nullptr;
      float qj[2] = {0.f, 0.f}, xdx[2] = {0.f, 0.f};
      float ddp[16];
      // x, dY (and dy, z) of the 16 columns from 16 m, loaded once per m in the accumulator layout
      const bool dz_here = bw.dz != nullptr;
      uint32_t xw[2][2], dyw[2][2], dyrw[2][2], zw[2][2];
#pragma unroll
      for (int i = 0; i < 32; i += 2) {
        const int hr = (i >> 1) & 1, rr = r0 + 8 * hr, c = acc_col(i, q), m = i >> 3, cm = (i >> 2) & 1;
        if ((i & 7) == 0) {
          ld_acc_cols16(xw, st + Tr::kX, m, w, lane);
          ld_acc_cols16(dyw, st + Tr::kDY, m, w, lane);
          if (dz_here) {
            ld_acc_cols16(dyrw, st + Tr::kDy, m, w, lane);
            ld_acc_cols16(zw, st + Tr::kZ, m, w, lane);
          }
        }
        const float2 xv = mma::unpack2<T>(xw[cm][hr]);
        const float2 dyv = mma::unpack2<T>(dyw[cm][hr]);
        const float D0 = Dc ? Dc[c] : dh, D1 = Dc ? Dc[c + 1] : dh;
        const float4 rj = ri[hr];
        // dX̄ and dx
        const float b0 = rj.z * bdh[i], b1 = rj.z * bdh[i + 1];
        const float dx0 = dxa[i] + b0, dx1 = dxa[i + 1] + b1;
        qj[hr] += rj.y * (xv.x * b0 + xv.y * b1);
        xdx[hr] += xv.x * dx0 + xv.y * dx1;
        ddp[(i >> 2) * 2] = (hr ? ddp[(i >> 2) * 2] : 0.f) + dyv.x * xv.x;
        ddp[(i >> 2) * 2 + 1] = (hr ? ddp[(i >> 2) * 2 + 1] : 0.f) + dyv.y * xv.y;
        if (rr < len) {
          const int64_t tpos = bp.t0 + rr;
          *reinterpret_cast<uint32_t*>(static_cast<T*>(bw.dx) + (int64_t)bp.b * p.x_batch_stride + tpos * p.x_seq_stride +
                                       (int64_t)h * p.x_head_stride + c) = mma::pack2<T>(rj.y * dx0 + D0 * dyv.x, rj.y * dx1 + D1 * dyv.y);
          if (dz_here) {
            const float y0 = ya[i] + D0 * xv.x, y1 = ya[i + 1] + D1 * xv.y;
            const float2 dyr = mma::unpack2<T>(dyrw[cm][hr]);
            const float2 zv = mma::unpack2<T>(zw[cm][hr]);
            *reinterpret_cast<uint32_t*>(static_cast<T*>(bw.dz) + (int64_t)bp.b * p.z_batch_stride + tpos * p.z_seq_stride +
                                         (int64_t)h * p.z_head_stride + c) =
                mma::pack2<T>(dev::gate_grad(dyr.x, y0, zv.x), dev::gate_grad(dyr.y, y1, zv.y));
          }
        }
      }
      store_row_sums(qj, xdx, rc->q, rc->xdx, r0, q);
      if (dch) {
        store_col_sums(ddp, rc->ddp[w], g, q);
      } else if (has_D) {
        // D per head: the warp's whole sum, in ddp[w][0]
        float v = 0.f;
#pragma unroll
        for (int c = 0; c < 16; ++c) v += ddp[c];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) rc->ddp[w][0] = v;
      }
      mbar_arrive(bars + Tr::kEmpty + s);
      mbar_arrive(bars + Tr::kDone + r);
    }
    // dG summed over the heads, 16-bit, for warpgroup 2's dG B and dGᵀ C
#pragma unroll
    for (int i = 0; i < 32; i += 2)
      *reinterpret_cast<uint32_t*>(smem + Tr::kDG + tile_off(acc_row(i, w, g), acc_col(i, q))) = mma::pack2<T>(dgs[i], dgs[i + 1]);
    fence_proxy_async_smem();
    mbar_arrive(bars + Tr::kDgReady);
    return;
  }

  // ---- warpgroup 2: dC and dB over the heads
  regs_raise<Tr::kAccRegs>();
  float dc[N / 2], db[N / 2];
#pragma unroll
  for (int i = 0; i < N / 2; ++i) dc[i] = db[i] = 0.f;
  const int r0 = 16 * w + g;
  for (int k = 0; k < nh; ++k) {
    const int s = k % S, r = k % R;
    mbar_wait(bars + Tr::kFull + s, (k / S) & 1);
    mbar_wait(bars + Tr::kReady + r, (k / R) & 1);
    char* st = Tr::stage(smem, s);
    // dY's second half
    make_dY<Tr>(st, 1, t, has_z);
    fence_proxy_async_smem();
    mbar_arrive(bars + Tr::kDyReady + s);
    mbar_wait(bars + Tr::kDyReady + s, (k / S) & 1);
    Recs* rc = Tr::recs(smem, r);
    const float4* rec = rc->rec;
    // A operands: e o dY (rows i) and w' d o x (rows j), columns p
    uint32_t ea[4][4], xa[4][4];
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      const int m = lane >> 3, rr = lane & 7;
      const int row = 16 * w + rr + 8 * (m & 1), col = 16 * kk + 8 * (m >> 1);
      mma::ldsm_x4(ea[kk][0], ea[kk][1], ea[kk][2], ea[kk][3], st + Tr::kDY + tile_off(row, col));
      mma::ldsm_x4(xa[kk][0], xa[kk][1], xa[kk][2], xa[kk][3], st + Tr::kX + tile_off(row, col));
#pragma unroll
      for (int rq = 0; rq < 4; ++rq) {
        const float4 rj = rec[r0 + 8 * (rq & 1)];
        const float2 ev = mma::unpack2<T>(ea[kk][rq]), xv = mma::unpack2<T>(xa[kk][rq]);
        ea[kk][rq] = mma::pack2<T>(ev.x * rj.w, ev.y * rj.w);
        xa[kk][rq] = mma::pack2<T>(xv.x * rj.z * rj.y, xv.y * rj.z * rj.y);
      }
    }
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      wgmma_rs<T, N, kMNMajor>(dc, ea[kk], smem_desc(st + Tr::kH + kk * 2048, kTile, 1024, Swizzle::k128B), true);
      wgmma_rs<T, N, kMNMajor>(db, xa[kk], smem_desc(st + Tr::kDH + kk * 2048, kTile, 1024, Swizzle::k128B), true);
    }
    wgmma_commit();
    // <dH, H> while the products run: this thread's 16-byte chunks of the two stages' tiles
    float pv = 0.f;
    for (int v = t; v < kNT * 512; v += 128) {
      const int tile = v >> 9, chunk = v & 511;
      const uint32_t off = tile * kTile + chunk * 16;
      const uint4 a4 = *reinterpret_cast<const uint4*>(st + Tr::kH + off);
      const uint4 b4 = *reinterpret_cast<const uint4*>(st + Tr::kDH + off);
      const uint32_t* av = reinterpret_cast<const uint32_t*>(&a4);
      const uint32_t* bv = reinterpret_cast<const uint32_t*>(&b4);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 x2 = mma::unpack2<T>(av[e]), y2 = mma::unpack2<T>(bv[e]);
        pv += x2.x * y2.x + x2.y * y2.y;
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) pv += __shfl_xor_sync(0xffffffffu, pv, o);
    if (lane == 0) rc->pass[w] = pv;
    wgmma_wait<0>();
    wgmma_hold(dc);
    wgmma_hold(db);
    mbar_arrive(bars + Tr::kEmpty + s);
    mbar_arrive(bars + Tr::kDone + r);
  }
  // dC += dG B, dB += dGᵀ C
  mbar_wait(bars + Tr::kDgReady, 0);
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    wgmma_ss<T, N, kKMajor, kMNMajor>(dc, smem_desc(smem + Tr::kDG + kk * 32, 16, 1024, Swizzle::k128B),
                                      smem_desc(smem + Tr::kB + kk * 2048, kTile, 1024, Swizzle::k128B), true);
    wgmma_ss<T, N, kMNMajor, kMNMajor>(db, smem_desc(smem + Tr::kDG + kk * 2048, 8192, 1024, Swizzle::k128B),
                                       smem_desc(smem + Tr::kC + kk * 2048, kTile, 1024, Swizzle::k128B), true);
  }
  wgmma_commit();
  wgmma_wait<0>();
  wgmma_hold(dc);
  wgmma_hold(db);
#pragma unroll
  for (int i = 0; i < N / 2; i += 2) {
    const int rr = acc_row(i, w, g), c = acc_col(i, q);
    if (rr >= len) continue;
    const int64_t tpos = bp.t0 + rr;
    *reinterpret_cast<uint32_t*>(static_cast<T*>(bw.dC) + (int64_t)bp.b * p.C_batch_stride + tpos * p.C_seq_stride +
                                 (int64_t)grp * p.C_group_stride + c) = mma::pack2<T>(dc[i], dc[i + 1]);
    *reinterpret_cast<uint32_t*>(static_cast<T*>(bw.dB) + (int64_t)bp.b * p.B_batch_stride + tpos * p.B_seq_stride +
                                 (int64_t)grp * p.B_group_stride + c) = mma::pack2<T>(db[i], db[i + 1]);
  }
#else
  SSD_SM90A_MISSING();
#endif
}

// dA, dDtBias and dD: the partials of every slot summed per head (and channel), a warp per sum: lane l
// adds slots l, l + 32, ... in order, then the lanes' sums meet in a fixed butterfly, so the bits never
// depend on timing. (One thread per sum walking every slot was a chain of dependent loads: 0.1 ms on G1.)
constexpr int kFinishWarps = 8;
__global__ void __launch_bounds__(32 * kFinishWarps) k_bwd_block_finish(const __grid_constant__ SsdBackwardParams bw, BlockParts parts,
                                                                         int64_t slots) {
  const SsdParams& p = bw.fwd;
  const int h = blockIdx.x, H = (int)p.nheads, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int nd = p.D ? (p.D_per_channel ? 64 : 1) : 0;
  for (int c = warp; c < 2 + nd; c += kFinishWarps) {
    float v = 0.f;
    for (int64_t s = lane; s < slots; s += 32) {
      const int64_t ph = s * H + h;
      v += c == 0 ? parts.dA[ph] : c == 1 ? parts.dbias[ph] : (p.D_per_channel ? parts.dD[ph * 64 + (c - 2)] : parts.dD[ph]);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (lane != 0) continue;
    if (c == 0) bw.dA[h] = v;
    else if (c == 1) { if (bw.d_dt_bias) bw.d_dt_bias[h] = v; }
    else if (bw.dD) bw.dD[p.D_per_channel ? (int64_t)h * 64 + (c - 2) : h] = v;
  }
}

}}}  // namespace ssd::cuda::sm90
