// The sm_90a state walks alone (chain.cuh states the math): one CTA per (segment or piece, chain, head,
// 64-column part of the state), 256 threads: warp 0's lane 0 the TMA producer, warps 1 to 3 the records
// (chain_records: every third block each), warpgroup 1 the state's 64 x 64 part in registers. The
// state's columns evolve independently (each is decayed and gets its own column of B or C), so a
// dstate-128 chain walks as two CTAs (two to an SM), each with half the products; only the records are
// computed twice. Each block's value is stored 16 bytes at a time (store_acc_row16): those stores, not
// the chain of states, were what the walks waited on (bench/NOTES.md, session 17).
//   forward (kReverse false)  reads x and B; the state H, from the initial state
//   reverse (kReverse true)   reads dy, z and C, walking the blocks from the chain's end; the gradient dH
//                             of the state, from the final state's gradient
// Two forms:
//   kBlocks false  the segments' first launch: each piece of a segment alone (chain.cuh) writes what
//                  it adds to its far side and its decay product into ChainSegs (the forward's segments
//                  and the backward's both start from it); it walks from that far side, each block's share
//                  scaled by the decay between it and the far side as it is read (folded), so that the
//                  blocks' products do not wait on each other;
//   kBlocks true   the backward's state launches: every segment, entered with the ordered sum of what
//                  the others added, writes its value at every block, 16-bit, into `blocks` (H entering
//                  block k going forward, dH leaving block k in reverse: the operands of the backward's
//                  block products), and the reverse walk's first segment the initial state's gradient.
// Block k of a chain lands at blocks + ((block_slot) * heads + h) * p * n (block_slot()).
#pragma once
#include "cuda/sm90/chain.cuh"

namespace ssd { namespace cuda { namespace sm90 {

constexpr int kStateCols = 64;  // a CTA's columns of the state

template <class T, int N_, bool kReverse_, bool kBlocks_>
struct ChainStates {
  using Elem = T;
  static constexpr bool kReverse = kReverse_, kBlocks = kBlocks_;
  // the order of the walk: the state's own direction where every block's value is written; the first
  // launch walks the other way (folded, chain.cuh), from the far side its result belongs to
  static constexpr bool kWalkBack = kBlocks ? kReverse : !kReverse;
  static constexpr int P = 64, N = N_, BQ = 64;
  static constexpr int NC = kStateCols, kParts = N / NC;  // CTAs per chain and head
  static constexpr int kStages = 4;
  static constexpr int kThreads = 256, kMinBlocks = 2;
  static constexpr int kEmptyArrivals = 128;  // the state warpgroup
  static constexpr int kNT = NC / 64;         // 64-column tiles of B or C in a stage
  static constexpr int kTile = 64 * 128;      // 64 rows x 128 bytes
  // a stage: x (forward) or dy and z (reverse), then B (forward) or C (reverse), back to back
  static constexpr int kATiles = kReverse ? 2 : 1;
  static constexpr int kX = 0, kZ = kTile, kB = kATiles * kTile;
  static constexpr int kStageBytes = kB + kNT * kTile;
  static constexpr int kRec = kStages * kStageBytes;  // records: float4 per position and stage
  static constexpr int kBar = kRec + kStages * BQ * 16;
  enum { kFull = 0, kReady = kStages, kEmpty = 2 * kStages, kBars = 3 * kStages };
  static constexpr int kSmem = kBar + kBars * 8 + 1024;  // + alignment of the base to 1024
  static __device__ __forceinline__ uint64_t* bars(char* smem) { return reinterpret_cast<uint64_t*>(smem + kBar); }
  static __device__ __forceinline__ char* stage(char* smem, int s) { return smem + s * kStageBytes; }
  static __device__ __forceinline__ float4* recs(char* smem, int s) { return reinterpret_cast<float4*>(smem + kRec) + s * BQ; }
  // every tile of a stage is read by the state, so every one is zeroed past the chain's end
  static constexpr int kZeroTiles = kATiles + kNT;
  static __device__ __forceinline__ int zero_tile(int t) { return t * kTile; }
  static_assert(N == 64 || N == 128, "dstate 64 or 128");
};

// The slot of block kb (from the chain's start; segments start on whole blocks) of chain c: batch rows
// take ceil(seqlen / 64) slots each; packed sequences start at slot floor(t0 / 64) + c, which leaves
// room for each one's ceil(len / 64) blocks, ceil(seqlen / 64) + num_seqs slots in all (with the
// starts clamped as chain_of clamps them, the slots stay in that range whatever the offsets).
__device__ __forceinline__ int64_t block_slot(const SsdParams& p, int c, const FwdChain& ch, int kb) {
  if (!p.cu_seqlens) return (int64_t)c * ((p.seqlen + 63) / 64) + ch.t0 / 64 + kb;
  const int64_t a = packed_start(p, c);
  return a / 64 + c + (ch.t0 - a) / 64 + kb;
}

// Warp 0's lane 0: the TMA loads of the blocks, in the order of the walk (B or C from column c0).
template <class Tr>
__device__ __forceinline__ void states_producer(const ChainMaps& maps, char* smem, int nblk, int h, int grp, int64_t row0,
                                                bool has_z, int c0) {
  constexpr int S = Tr::kStages, kNT = Tr::kNT, kTile = Tr::kTile;
  uint64_t* bars = Tr::bars(smem);
  const CUtensorMap* a = Tr::kReverse ? &maps.dy : &maps.x;
  const CUtensorMap* bmap = Tr::kReverse ? &maps.C : &maps.B;
  has_z = has_z && Tr::kReverse;
  tma_prefetch(a);
  tma_prefetch(bmap);
  if (has_z) tma_prefetch(&maps.z);
  const uint32_t bytes = (uint32_t)kTile * (1 + (has_z ? 1 : 0) + kNT);
  for (int k = 0; k < nblk; ++k) {
    const int s = k % S, kb = Tr::kWalkBack ? nblk - 1 - k : k;
    mbar_wait(bars + Tr::kEmpty + s, ((k / S) & 1) ^ 1);
    uint64_t* full = bars + Tr::kFull + s;
    mbar_arrive_expect_tx(full, bytes);
    const int r = (int)(row0 + 64 * (int64_t)kb);
    char* st = Tr::stage(smem, s);
    tma_load_3d(st + Tr::kX, a, full, 0, h, r);
    if (has_z) tma_load_3d(st + Tr::kZ, &maps.z, full, 0, h, r);
#pragma unroll
    for (int t = 0; t < kNT; ++t) tma_load_3d(st + Tr::kB + t * kTile, bmap, full, c0 + 64 * t, grp, r);
  }
}

// What the state launches write besides ChainSegs (kBlocks): the 16-bit values per block, and in
// reverse the final state's gradient read and the initial state's written (each (b, h, p, n), or null).
struct ChainStatesIO {
  void* blocks;
  const float* d_final;
  float* d_initial;
};

template <class Tr>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocks)
k_chain_states(const __grid_constant__ SsdParams p, const __grid_constant__ ChainMaps maps,
               const __grid_constant__ ChainSegs segs, const __grid_constant__ ChainStatesIO io) {
#if SSD_SM90A || defined(SSD_CUDA_EMULATION)
  using T = typename Tr::Elem;
  constexpr int N = Tr::N, NC = Tr::NC, S = Tr::kStages;
  extern __shared__ char smem_dyn[];
  // aligned to 1024 as an offset from smem_dyn, so that the compiler knows every access is to shared memory
  char* smem = smem_dyn + ((1024 - (reinterpret_cast<uintptr_t>(smem_dyn) & 1023)) & 1023);
  uint64_t* bars = Tr::bars(smem);

  const int tid = threadIdx.x, warp = __shfl_sync(0xffffffffu, tid >> 5, 0), lane = tid & 31;
  const int H = (int)p.nheads;
  const int64_t pairs = (p.cu_seqlens ? p.num_seqs : p.batch) * (int64_t)H;  // CTAs per segment
  // the parts of one chain and head are neighbours in the grid, so that they share their x (dy, z) loads in L2
  const int c0 = NC * (int)(blockIdx.x % Tr::kParts);
  const int64_t cta = blockIdx.x / Tr::kParts, pair = cta % pairs;
  // the first launch walks the pieces whose additions others need: those of all segments but the last
  // going forward, of all but the first in reverse (slot j holds piece j + fine there); the others walk
  // segment `slot`
  const int slot = (int)(cta / pairs);
  const int piece = (!Tr::kBlocks && Tr::kReverse) ? slot + segs.fine : slot;
  const int seg = Tr::kBlocks ? slot : piece / segs.fine;
  const int chain = (int)(pair / H), h = (int)(pair % H);
  const int grp = h / (int)(p.nheads / p.ngroups);
  FwdChain ch = chain_of(p, chain, h);
  if (Tr::kBlocks) cut_segment(ch, segs, seg);
  else if (segs.nseg > 1) cut_piece(ch, segs, piece);
  const int nblk = (int)((ch.len + 63) / 64);
  const int64_t row0 = (int64_t)ch.b * p.seqlen + ch.t0;  // the tensor maps' row of the segment's start

  if (tid == 0) {
    ring_bars_init<Tr>(bars);
    mbar_init_fence();
  }
  __syncthreads();

  if (warp < 4) {
    if (warp == 0 && lane == 0) states_producer<Tr>(maps, smem, nblk, h, grp, row0, p.z != nullptr, c0);
    else if (warp >= 1 && warp <= kRecordsWarps) chain_records<Tr>(p, smem, ch, nblk, h, warp - 1, lane);
    return;
  }

  // ---- warpgroup 1: the state (or its gradient), 64 p rows x N columns in the accumulators
  const int t = tid & 127, w = t >> 5, g = lane >> 2, q = lane & 3;
  const int64_t PN = (int64_t)Tr::P * N;
  const int64_t bh = (int64_t)ch.b * H + h;
  // where the walk starts from a given value: the chain's first segment (or piece) going forward (the
  // initial state), its last in reverse (the final state's gradient: batch rows, or the packed sequence whose
  // state final_states is)
  const float* start = nullptr;
  const bool first_part = Tr::kBlocks ? seg == 0 : piece == 0;
  const bool last_part = Tr::kBlocks ? seg == segs.nseg - 1 : piece == segs.nseg * segs.fine - 1;
  if (!Tr::kReverse && first_part && p.initial_states) start = p.initial_states + bh * PN;
  if (Tr::kReverse && last_part && ch.is_last && io.d_final) start = io.d_final + (p.cu_seqlens ? h : bh) * PN;
  float acc[NC / 2];
  float decay = 1.f;  // the product of the walked blocks' 2^(s_63)
  if (Tr::kBlocks) {
    chain_enter<Tr>(acc, segs, seg, true, start, pair, pairs, w, g, q, c0);
    for (int k = 0; k < nblk; ++k) {
      const int s = k % S, kb = Tr::kWalkBack ? nblk - 1 - k : k;
      mbar_wait(bars + Tr::kFull + s, (k / S) & 1);
      mbar_wait(bars + Tr::kReady + s, (k / S) & 1);
      T* out = static_cast<T*>(io.blocks) + (block_slot(p, chain, ch, kb) * H + h) * PN + c0;
#pragma unroll
      for (int hr = 0; hr < 2; ++hr) store_acc_row16<T, NC>(out + acc_row(2 * hr, w, g) * N, acc, hr, q);
      decay *= chain_state_block<Tr>(acc, Tr::stage(smem, s), Tr::recs(smem, s), p.z != nullptr, w, lane);
      mbar_arrive(bars + Tr::kEmpty + s);
    }
  } else {
    // folded: walking from the far side, block b's share reaches it scaled by the decays of the blocks
    // walked before it (`decay`), a factor folded into its operand, so that no block's operand waits on
    // the accumulators: block k + 1's operand is made while block k's products run
#pragma unroll
    for (int i = 0; i < NC / 2; ++i) acc[i] = 0.f;
    uint32_t xa[2][4][4];
    auto prep = [&](int k, uint32_t(&a)[4][4]) {
      const int s = k % S;
      mbar_wait(bars + Tr::kFull + s, (k / S) & 1);
      mbar_wait(bars + Tr::kReady + s, (k / S) & 1);
      const float4* rec = Tr::recs(smem, s);
      chain_state_operand<Tr>(a, Tr::stage(smem, s), rec, p.z != nullptr, decay, w, lane);
      decay *= dev::ex2(rec[63].x);
    };
    auto run = [&](int k, const uint32_t(&a)[4][4], uint32_t(&next)[4][4]) {
      chain_state_mma<Tr>(acc, a, Tr::stage(smem, k % S));
      wgmma_commit();
      if (k + 1 < nblk) prep(k + 1, next);
      wgmma_wait<0>();
      mbar_arrive(bars + Tr::kEmpty + k % S);
    };
    if (nblk > 0) prep(0, xa[0]);
    for (int k = 0; k < nblk; k += 2) {
      run(k, xa[0], xa[1]);
      if (k + 1 < nblk) run(k + 1, xa[1], xa[0]);
    }
    wgmma_hold(acc);
    if (start) {
      // the walk's starting value crosses every block: what it adds is the whole decay times it
      float v[NC / 2];
      chain_enter<Tr>(v, segs, seg, false, start, pair, pairs, w, g, q, c0);
#pragma unroll
      for (int i = 0; i < NC / 2; ++i) acc[i] = fmaf(decay, v[i], acc[i]);
    }
  }
  float* dst = nullptr;
  if (!Tr::kBlocks) {
    dst = segs.ends + ((int64_t)slot * pairs + pair) * PN;
    if (t == 0 && c0 == 0) segs.decays[(int64_t)slot * pairs + pair] = decay;
  } else if (Tr::kReverse && seg == 0 && io.d_initial && !p.cu_seqlens) {
    dst = io.d_initial + bh * PN;
  }
  if (dst) chain_store_state<Tr>(dst, acc, w, g, q, c0);
#else
  SSD_SM90A_MISSING();
#endif
}

}}}  // namespace ssd::cuda::sm90
