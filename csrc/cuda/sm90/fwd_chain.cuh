// The sm_90a forward: one CTA per chain (a batch row or a packed sequence) and head, walking the
// chain in blocks of 64 positions with the running state in registers, wgmma fed by TMA.
//
// Per block of 64 positions (i, j index positions in it; s = log2(e) * the cumulative sum of d*A from
// the block start, H the state entering the block, w_j = 2^(s_last - s_j) d_j):
//   Y     = 2^(s_i) (C Hᵀ)_i + sum_{j <= i} (C_i . B_j) 2^(s_i - s_j) d_j x_j      (+ D x, gate)
//   H_out = 2^(s_last) H + sum_j w_j x_j (x) B_j
// which is ssd-math.md's chunked form with chunks of 64: the function does not depend on the chunk
// size, so the caller's chunk size only picks the path (sm90/forward.cu).
//
// Warp roles (512 threads, four warpgroups):
//   warp 0, one lane   the producer: TMA loads of a block's x, z, B and C tiles into a ring of kStages
//                      stages (full[s]: the bytes have landed; empty[s]: both consumers are done);
//   warps 1 to 3       the records (every third block each): d_j (dt, bias, softplus, clamp), s_j, w_j
//                      and 2^(s_j) of the block into the stage's records, and in a block cut short by the
//                      chain's end the rows of x and B past it zeroed (they hold the next sequence, or
//                      row, or zero fill), then ready[s];
//   warpgroups 1 and 2 the outputs, of the even and the odd blocks, so that one builds its decayed
//                      matrix and runs its epilogue while the other's products run on the tensor cores:
//                      S = C Bᵀ and C Hᵀ (wgmma, A and B from shared memory), the decayed matrix built in
//                      registers as the A operand of P X, the epilogue from registers;
//   warpgroup 3        the state: it publishes H (16-bit; hfull[k & 1] / hempty[k & 1], so that each
//                      outputs warpgroup has its own barriers; into buffer k & 1, or one buffer where
//                      the shared memory goes to stages) for block k, then H <- 2^(s_last) H + (w o X)ᵀ B
//                      (A from registers: x read transposed by ldmatrix and scaled by w_j); at the
//                      chain's end it writes the state.
// Segments (chain.cuh): where the (chain, head) pairs are too few to fill the GPU, a first launch of
// k_chain_states (chain_states.cuh) writes each segment's end state, from which the state warpgroup here
// enters segment i with H = sum_{j < i} (prod_{j < m < i} decay_m) end_j, summed in order j = 0, 1, ...
// Every tile is 64 rows of 128 bytes (64 16-bit values) in the 128-byte swizzle; B and C of dstate N
// take N / 64 such tiles side by side (the 3D view of the wgmma header).
#pragma once
#include "cuda/sm90/chain.cuh"

namespace ssd { namespace cuda { namespace sm90 {

template <class T, int N_>
struct ChainFwd {
  using Elem = T;
  static constexpr bool kReverse = false, kWalkBack = false;  // the state's own direction, from the chain's start
  static constexpr int P = 64, N = N_, BQ = 64;
  static constexpr int NC = N;  // the state warpgroup's columns: all of them
  // stages of the ring, as many as the shared memory holds beside H: dstate 128 (48 KB a stage) keeps
  // one buffer of H for four stages, dstate 64 two for six
  static constexpr int kStages = N == 64 ? 6 : 4;
  static constexpr int kHBufs = N == 64 ? 2 : 1;
  static constexpr int kThreads = 512;
  // the arrivals that free a stage: its outputs warpgroup (one of the two) and the state warpgroup
  static constexpr int kEmptyArrivals = 256;
  // the register budgets of warpgroup 0 and of the others: the 64K registers of the SM
  static constexpr int kProducerRegs = 56, kConsumerRegs = 152;
  static_assert(kProducerRegs * 128 + kConsumerRegs * 384 <= 65536, "more registers than an SM has");
  static constexpr int kNT = N / 64;           // 64-column tiles of B, C and H
  static constexpr int kTile = 64 * 128;       // 64 rows x 128 bytes
  static constexpr int kX = 0, kZ = kTile, kB = 2 * kTile, kC = kB + kNT * kTile;
  static constexpr int kStageBytes = kC + kNT * kTile;
  static constexpr int kH = kStages * kStageBytes;  // kHBufs buffers of H (16-bit, kNT tiles: p rows, n columns)
  static constexpr int kRec = kH + kHBufs * kNT * kTile;  // records: float4 per position and stage
  static constexpr int kBar = kRec + kStages * BQ * 16;
  enum { kFull = 0, kReady = kStages, kEmpty = 2 * kStages, kHFull = 3 * kStages, kHEmpty = 3 * kStages + 2,
         kBars = 3 * kStages + 4 };
  static constexpr int kSmem = kBar + kBars * 8 + 1024;  // + alignment of the base to 1024
  static_assert(kSmem <= 227 * 1024, "more shared memory than a CTA may have");
  // where the pieces lie in the (1024-aligned) shared memory smem
  static __device__ __forceinline__ uint64_t* bars(char* smem) { return reinterpret_cast<uint64_t*>(smem + kBar); }
  static __device__ __forceinline__ char* stage(char* smem, int s) { return smem + s * kStageBytes; }
  static __device__ __forceinline__ float4* recs(char* smem, int s) { return reinterpret_cast<float4*>(smem + kRec) + s * BQ; }
  static __device__ __forceinline__ char* hbuf(char* smem, int u) { return smem + kH + (u % kHBufs) * kNT * kTile; }
  // the tiles the records warp zeroes past the chain's end (chain_records): x and B, which the state reads
  static constexpr int kZeroTiles = 1 + kNT;
  static __device__ __forceinline__ int zero_tile(int t) { return t == 0 ? kX : kB + (t - 1) * kTile; }
  static_assert(N == 64 || N == 128, "dstate 64 or 128");
};

// Warp 0's lane 0: the TMA loads of the chain's blocks into the ring of stages.
template <class Tr>
__device__ __forceinline__ void chain_producer(const ChainMaps& maps, char* smem, int nblk, int h, int grp, int64_t row0,
                                               bool has_z) {
  constexpr int S = Tr::kStages, kNT = Tr::kNT, kTile = Tr::kTile;
  uint64_t* bars = Tr::bars(smem);
  tma_prefetch(&maps.x);
  tma_prefetch(&maps.B);
  tma_prefetch(&maps.C);
  if (has_z) tma_prefetch(&maps.z);
  const uint32_t bytes = (uint32_t)kTile * (1 + (has_z ? 1 : 0) + 2 * kNT);
  for (int k = 0; k < nblk; ++k) {
    const int s = k % S;
    mbar_wait(bars + Tr::kEmpty + s, ((k / S) & 1) ^ 1);
    uint64_t* full = bars + Tr::kFull + s;
    mbar_arrive_expect_tx(full, bytes);
    const int r = (int)(row0 + 64 * (int64_t)k);
    char* st = Tr::stage(smem, s);
    tma_load_3d(st + Tr::kX, &maps.x, full, 0, h, r);
    if (has_z) tma_load_3d(st + Tr::kZ, &maps.z, full, 0, h, r);
#pragma unroll
    for (int t = 0; t < kNT; ++t) {
      tma_load_3d(st + Tr::kB + t * kTile, &maps.B, full, 64 * t, grp, r);
      tma_load_3d(st + Tr::kC + t * kTile, &maps.C, full, 64 * t, grp, r);
    }
  }
}

// Output pair (column pair c8 of the accumulator layout, row half hr) of a block: yacc + D x, and that
// times silu(z) where has_z (the pair before the gate into *ungated, when given); x and z are the pair's
// packed 16-bit values.
template <class T>
__device__ __forceinline__ float2 fwd_output(const float (&yacc)[32], const float (&dcol)[16], uint32_t xw, uint32_t zw, int c8,
                                             int hr, bool has_D, bool has_z, float2* ungated) {
  const int i = 4 * c8 + 2 * hr;
  float o0 = yacc[i], o1 = yacc[i + 1];
  if (has_D) {
    const float2 xv = mma::unpack2<T>(xw);
    o0 = fmaf(dcol[2 * c8], xv.x, o0);
    o1 = fmaf(dcol[2 * c8 + 1], xv.y, o1);
  }
  if (ungated) *ungated = make_float2(o0, o1);
  if (has_z) {
    const float2 zv = mma::unpack2<T>(zw);
    o0 *= dev::silu(zv.x);
    o1 *= dev::silu(zv.y);
  }
  return make_float2(o0, o1);
}

// Eight consecutive 16-bit values (one 16-byte chunk of a staged row in shared memory) to dst: one
// 16-byte store where dst is 16-byte aligned (a16), four 4-byte ones else.
template <class T>
__device__ __forceinline__ void store_row_chunk(T* dst, const char* src, bool a16) {
  const uint4 v = *reinterpret_cast<const uint4*>(src);
  if (a16) {
    *reinterpret_cast<uint4*>(dst) = v;
  } else {
    uint32_t* d = reinterpret_cast<uint32_t*>(dst);
    d[0] = v.x;
    d[1] = v.y;
    d[2] = v.z;
    d[3] = v.w;
  }
}

template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads, 1)
k_chain_fwd(const __grid_constant__ SsdParams p, const __grid_constant__ ChainMaps maps,
            const __grid_constant__ ChainSegs segs) {
#if SSD_SM90A || defined(SSD_CUDA_EMULATION)
  using T = typename Tr::Elem;
  constexpr int N = Tr::N, S = Tr::kStages, kTile = Tr::kTile;
  extern __shared__ char smem_dyn[];
  // aligned to 1024 as an offset from smem_dyn, so that the compiler knows every access is to shared memory
  char* smem = smem_dyn + ((1024 - (reinterpret_cast<uintptr_t>(smem_dyn) & 1023)) & 1023);
  uint64_t* bars = Tr::bars(smem);
  auto stage = [&](int s) { return Tr::stage(smem, s); };
  auto recs = [&](int s) { return Tr::recs(smem, s); };
  auto hbuf = [&](int u) { return Tr::hbuf(smem, u); };

  // the warp index through a shuffle, so that the compiler knows it is the same in every lane and
  // does not treat the roles' branches as divergent (which serializes their wgmmas)
  const int tid = threadIdx.x, warp = __shfl_sync(0xffffffffu, tid >> 5, 0), lane = tid & 31;
  const int H = (int)p.nheads;
  const int64_t pairs = (p.cu_seqlens ? p.num_seqs : p.batch) * (int64_t)H;  // CTAs per segment
  const int seg = (int)(blockIdx.x / pairs), chain = (int)((blockIdx.x % pairs) / H), h = (int)(blockIdx.x % H);
  const int grp = h / (int)(p.nheads / p.ngroups);
  FwdChain ch = chain_of(p, chain, h);
  cut_segment(ch, segs, seg);
  const int nblk = (int)((ch.len + 63) / 64);
  const int64_t row0 = (int64_t)ch.b * p.seqlen + ch.t0;  // the tensor maps' row of the chain's start

  if (tid == 0) {
    ring_bars_init<Tr>(bars);
    for (int u = 0; u < 2; ++u) {
      mbar_init(bars + Tr::kHFull + u, 128);
      mbar_init(bars + Tr::kHEmpty + u, 128);
    }
    mbar_init_fence();
  }
  __syncthreads();

  // warpgroup 0 (producer, records) needs few registers, the three consumer warpgroups many: each
  // branch sets its budget first, and no code after it is shared between the two kinds.
  if (warp < 4) {
    regs_lower<Tr::kProducerRegs>();
    if (warp == 0 && lane == 0) chain_producer<Tr>(maps, smem, nblk, h, grp, row0, p.z != nullptr);
    else if (warp >= 1 && warp <= kRecordsWarps) chain_records<Tr>(p, smem, ch, nblk, h, warp - 1, lane);
    return;
  }
  regs_raise<Tr::kConsumerRegs>();


  const int t = tid & 127, w = t >> 5, g = lane >> 2, q = lane & 3;
  if (warp < 12) {
    // ---- warpgroups 1 and 2: the outputs of blocks k = first, first + 2, ..., with H barriers k & 1 = first
    const int first = (warp - 4) >> 2;
    const bool has_D = p.D != nullptr, dch = p.D_per_channel != 0;
    const float dh = (has_D && !dch) ? p.D[h] : 0.f;
    const float* Dc = (has_D && dch) ? p.D + (int64_t)h * Tr::P : p.D;
    float dcol[16];  // D of this thread's columns 8 (i >> 2) + 2q + (i & 1), as pairs
#pragma unroll
    for (int c = 0; c < 8; ++c) {
      dcol[2 * c] = dch ? Dc[8 * c + 2 * q] : dh;
      dcol[2 * c + 1] = dch ? Dc[8 * c + 2 * q + 1] : dh;
    }
    // whether every row of y (y_ungated) starts 16-byte aligned: 16-byte stores, else 4-byte ones
    const bool y16 = dev::rows16(p.y, p.y_batch_stride, p.y_seq_stride, p.y_head_stride);
    const bool yu16 = dev::rows16(p.y_ungated, p.y_ungated_batch_stride, p.y_ungated_seq_stride, p.y_ungated_head_stride);
    for (int k = first; k < nblk; k += 2) {
      const int s = k % S, u = first;
      const int len = (int)dev::lmin(64, ch.len - 64 * (int64_t)k);
      mbar_wait(bars + Tr::kFull + s, (k / S) & 1);
      mbar_wait(bars + Tr::kReady + s, (k / S) & 1);
      char* st = stage(s);
      float sacc[32], yacc[32];
      wgmma_fence();
      wgmma_abt<T, N>(sacc, st + Tr::kC, st + Tr::kB);
      wgmma_commit();
      mbar_wait(bars + Tr::kHFull + u, (k >> 1) & 1);
      wgmma_abt<T, N>(yacc, st + Tr::kC, hbuf(u));
      wgmma_commit();
      wgmma_wait<1>();
      wgmma_hold(sacc);
      const float4* rec = recs(s);
      const int r0 = 16 * w + g;
      const float4 ri0 = rec[r0], ri1 = rec[r0 + 8];
      uint32_t pa[4][4];  // the decayed matrix as the A operand of P X, k-block kk = columns 16 kk ..
#pragma unroll
      for (int i = 0; i < 32; i += 2) {
        const int r = r0 + 8 * ((i >> 1) & 1), c = 8 * (i >> 2) + 2 * q;
        const float4 ri = ((i >> 1) & 1) ? ri1 : ri0;
        float v[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float4 rj = rec[c + e];
          v[e] = (c + e <= r && c + e < len) ? sacc[i + e] * dev::ex2(ri.x - rj.x) * rj.y : 0.f;
        }
        pa[i >> 3][(i >> 1) & 3] = mma::pack2<T>(v[0], v[1]);
      }
      wgmma_wait<0>();
      wgmma_hold(yacc);
      mbar_arrive(bars + Tr::kHEmpty + u);
#pragma unroll
      for (int i = 0; i < 32; ++i) yacc[i] *= ((i >> 1) & 1) ? ri1.w : ri0.w;
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < 4; ++kk)
        wgmma_rs<T, 64, kMNMajor>(yacc, pa[kk], smem_desc(st + Tr::kX + kk * 2048, 8192, 1024, Swizzle::k128B), true);
      wgmma_commit();
      wgmma_wait<0>();
      wgmma_hold(yacc);
      const int64_t tb = ch.t0 + 64 * (int64_t)k;
      if (!p.y_ungated) {
        // epilogue: + D x, gate, 4-byte stores of y's rows inside the chain (r0 + 8 hr)
        T* yrow[2];
#pragma unroll
        for (int hr = 0; hr < 2; ++hr)
          yrow[hr] = static_cast<T*>(p.y) + (int64_t)ch.b * p.y_batch_stride + (tb + r0 + 8 * hr) * p.y_seq_stride +
                     (int64_t)h * p.y_head_stride;
#pragma unroll
        for (int m = 0; m < 4; ++m) {
          // x and z of columns 16 m .. 16 m + 15 in the accumulator layout
          uint32_t xw[2][2] = {}, zw[2][2] = {};
          if (has_D) ld_acc_cols16(xw, st + Tr::kX, m, w, lane);
          if (p.z) ld_acc_cols16(zw, st + Tr::kZ, m, w, lane);
#pragma unroll
          for (int cm = 0; cm < 2; ++cm)
#pragma unroll
            for (int hr = 0; hr < 2; ++hr) {
              if (r0 + 8 * hr >= len) continue;
              const int c8 = 2 * m + cm;
              const float2 o = fwd_output<T>(yacc, dcol, xw[cm][hr], zw[cm][hr], c8, hr, has_D, p.z != nullptr, nullptr);
              *reinterpret_cast<uint32_t*>(yrow[hr] + 8 * c8 + 2 * q) = mma::pack2<T>(o.x, o.y);
            }
        }
      } else {
        // epilogue with y_ungated: + D x, gate; each warp's 16 rows of y and of y_ungated go through
        // shared memory (stmatrix into rows of the stage that nothing reads any more: z's tile once z is
        // in registers, C's once C Bᵀ and C Hᵀ are done; the state warpgroup reads neither) and leave as
        // whole rows, 16 bytes a lane where the rows are 16-byte aligned. Two streams of 4-byte stores
        // scattered over eight rows cost the forward more than their bytes (bench/NOTES.md, session 20);
        // with y alone the direct stores measured faster.
        uint32_t xw[4][2][2] = {}, zw[4][2][2] = {}, yv[4][2][2], yuv[4][2][2];
#pragma unroll
        for (int m = 0; m < 4; ++m) {
          if (has_D) ld_acc_cols16(xw[m], st + Tr::kX, m, w, lane);
          if (p.z) ld_acc_cols16(zw[m], st + Tr::kZ, m, w, lane);
        }
#pragma unroll
        for (int m = 0; m < 4; ++m)
#pragma unroll
          for (int cm = 0; cm < 2; ++cm)
#pragma unroll
            for (int hr = 0; hr < 2; ++hr) {
              float2 ung;
              const float2 o = fwd_output<T>(yacc, dcol, xw[m][cm][hr], zw[m][cm][hr], 2 * m + cm, hr, has_D, p.z != nullptr, &ung);
              yuv[m][cm][hr] = mma::pack2<T>(ung.x, ung.y);
              yv[m][cm][hr] = mma::pack2<T>(o.x, o.y);
            }
        __syncwarp();  // the warp's rows of z are read before they are overwritten
        char* ys = st + Tr::kZ;
        char* yus = st + Tr::kC;
#pragma unroll
        for (int m = 0; m < 4; ++m) {
          st_acc_cols16(ys, yv[m], m, w, lane);
          st_acc_cols16(yus, yuv[m], m, w, lane);
        }
        __syncwarp();
        // lane l takes 16-byte chunk l + 32 it of the warp's 16 rows x 8 chunks: eight lanes a row
#pragma unroll
        for (int it = 0; it < 4; ++it) {
          const int chunk = lane + 32 * it, r = 16 * w + (chunk >> 3), c = 8 * (chunk & 7);
          if (r >= len) continue;
          const int64_t tpos = tb + r;
          store_row_chunk<T>(static_cast<T*>(p.y) + (int64_t)ch.b * p.y_batch_stride + tpos * p.y_seq_stride +
                                 (int64_t)h * p.y_head_stride + c,
                             ys + tile_off(r, c), y16);
          store_row_chunk<T>(static_cast<T*>(p.y_ungated) + (int64_t)ch.b * p.y_ungated_batch_stride +
                                 tpos * p.y_ungated_seq_stride + (int64_t)h * p.y_ungated_head_stride + c,
                             yus + tile_off(r, c), yu16);
        }
        fence_proxy_async_smem();  // the stage's next tiles come by TMA over these rows
      }
      mbar_arrive(bars + Tr::kEmpty + s);
    }
    return;
  }

  // ---- warpgroup 3: the state, 64 p rows x N columns in the accumulators
  float acc[N / 2];
  // the state entering the segment: the initial state in the first, else the sum over those before it
  const float* init = (p.initial_states && seg == 0) ? p.initial_states + ((int64_t)ch.b * H + h) * (int64_t)(Tr::P * N) : nullptr;
  chain_enter<Tr>(acc, segs, seg, true, init, blockIdx.x % pairs, pairs, w, g, q, 0);
  for (int k = 0; k < nblk; ++k) {
    const int s = k % S, u = k & 1;
    mbar_wait(bars + Tr::kFull + s, (k / S) & 1);
    mbar_wait(bars + Tr::kReady + s, (k / S) & 1);
    // H entering block k, 16-bit, for the C Hᵀ of the outputs warpgroup of block k
    // the buffer is free once the outputs warpgroup of the last block that read it has its C Hᵀ:
    // block k - 2 with two buffers, k - 1 with one
    if (Tr::kHBufs == 2) mbar_wait(bars + Tr::kHEmpty + u, ((k >> 1) & 1) ^ 1);
    else if (k > 0) mbar_wait(bars + Tr::kHEmpty + (u ^ 1), ((k - 1) >> 1) & 1);
    char* hb = hbuf(u);
#pragma unroll
    for (int m = 0; m < N / 16; ++m) {
      uint32_t v[2][2];
#pragma unroll
      for (int c = 0; c < 2; ++c)
#pragma unroll
        for (int hr = 0; hr < 2; ++hr) {
          const int i = 4 * (2 * m + c) + 2 * hr;
          v[c][hr] = mma::pack2<T>(acc[i], acc[i + 1]);
        }
      st_acc_cols16(hb + (m >> 2) * kTile, v, m & 3, w, lane);
    }
    fence_proxy_async_smem();
    mbar_arrive(bars + Tr::kHFull + u);
    chain_state_block<Tr>(acc, stage(s), recs(s), false, w, lane);  // H <- 2^(s_last) H + (w o X)ᵀ B
    mbar_arrive(bars + Tr::kEmpty + s);
  }
  float* fins[2] = {ch.fin, ch.last};
  for (float* fin : fins)
    if (fin) chain_store_state<Tr>(fin, acc, w, g, q, 0);
#else
  SSD_SM90A_MISSING();
#endif
}

}}}  // namespace ssd::cuda::sm90
