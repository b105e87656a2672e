// The fixed shapes' sequential state pass: position records and C·Bᵀ (k_rec_bmm), then one block per chain of chunks with the state in its accumulators (k_seq_state).
#pragma once
#include "cuda/fwd/common.cuh"
#include "cuda/fwd/scan.cuh"
#include "cuda/fwd/states.cuh"

namespace ssd { namespace cuda {
namespace {

// ---- fixed path: position records, chunk states and state passing in two launches -----------------
// For the shapes of the fixed scan (16-bit x/B/C, no seq_idx, chunk a multiple of 64), with enough
// (row or packed sequence, head, p-tile) chains to fill the GPU (seq_state_ok):
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
  const int H = (int)p.nheads;
  const int k = blk % dv.nc;
  const int h = (blk / dv.nc) % H;
  const int b = blk / dv.nc / H;
  const ChunkPos cpos = fwd_chunk(p, dv, b * dv.nc + k);
  const int64_t t0 = cpos.t0;
  const int len = cpos.len;
  if (len <= 0) return;  // an unused slot (cu_seqlens)
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
  const Chain ch = fwd_chain(p, dv, x / H, h);
  const int b = ch.b;
  const int grp = h / dv.hpg;
  const int P = (int)p.headdim;
  const int p0 = pt * 64;
  const int64_t L = ch.len;  // positions ch.t0 .. ch.t0 + L - 1 of row b
  const int Q = dv.Q, kbq = Q / 64;

  auto Xst = [&](int s) { return reinterpret_cast<T*>(smem + s * S::kStage); };
  auto Bst = [&](int s) { return reinterpret_cast<T*>(smem + s * S::kStage) + 64 * LDX; };
  auto Rst = [&](int s) { return reinterpret_cast<float4*>(smem + s * S::kStage + 64 * (LDX + LDB) * 2); };

  const T* xg = static_cast<const T*>(p.x) + (int64_t)b * p.x_batch_stride + ch.t0 * p.x_seq_stride +
                (int64_t)h * p.x_head_stride + p0;
  const T* bg = static_cast<const T*>(p.B) + (int64_t)b * p.B_batch_stride + ch.t0 * p.B_seq_stride +
                (int64_t)grp * p.B_group_stride;
  const float4* rg = dv.recs + ch.slot0 * Q;  // chunk k's records at rg + k * Q
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
      cp_tile<64, LDX, 64, NTH>(Xst(s), xg + 64 * G * xss, xss, nv);
      cp_tile<N, LDB, 64, NTH>(Bst(s), bg + 64 * G * bss, bss, nv);
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
  if (NG > 0) issue_rec(0);  // in group 0
#pragma unroll
  for (int s = 0; s < STG - 1; ++s) issue(s);
  cp_async_wait<STG - 2>();  // group 0 (block 0's records) ...
  __syncthreads();           // ... visible to every thread

  T* hs = static_cast<T*>(dv.hs16) + ch.slot0 * (int64_t)P * N;
  auto last_rec = [&](int k) { return __ldg(rg + (int64_t)k * Q + (int)lmin(Q, L - (int64_t)k * Q) - 1); };
  float4 rl_next = ch.n > 0 ? last_rec(0) : make_float4(0.f, 0.f, 0.f, 0.f);
  for (int k = 0; k < ch.n; ++k) {
    const int64_t t0 = (int64_t)k * Q;
    const int len = (int)lmin(Q, L - t0);
    const float4 rl = rl_next;
    if (k + 1 < ch.n) rl_next = last_rec(k + 1);  // in flight during this chunk
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
        // scale the x rows this thread copied (cp_tile's mapping) by w_j = exp(s_last - s_j) d_j;
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
  float* const fins[2] = {ch.fin, ch.last};
  for (float* fin : fins) {
    if (!fin) continue;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt)
#pragma unroll
      for (int hr = 0; hr < 2; ++hr)
        *reinterpret_cast<float2*>(fin + (int64_t)(r0 + 8 * hr) * N + c0 + 8 * nt) =
            make_float2(acc[nt][2 * hr], acc[nt][2 * hr + 1]);
  }
  cp_async_wait<0>();  // no copy may still target shared memory when the block exits
}

}  // namespace
}}  // namespace ssd::cuda
