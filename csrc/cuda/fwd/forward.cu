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
// Packed sequences (cu_seqlens) take the same kernels and paths: each sequence is chunked from its
// own start and walked as its own chain, whose final state is the sequence's (k_seq_slots).
//   3. k_chunk_scan  per (b, chunk, head, 64-row block, p-tile): dA cumsum again, then
//      Y = exp(s_i) C_i H_{k-1}^T + (L o CB^T) X + D x, gated by silu(z), stored once.
// Fixed path (16-bit x/B/C, headdim 64/128, dstate 64/128/256, chunk >= 64, no seq_idx, aligned):
//   kernel 1 also stores each chunk's position records (cumsum, step) for the scan, which reads them
//   instead of recomputing; kernel 2 stores the entering states as 16-bit for the scan; and when
//   there are enough (row or packed sequence, head, p-tile) chains to fill the GPU, kernels 1 and 2
//   are replaced by
//      1'. k_rec_bmm    the records and the C B^T role;
//      2'. k_seq_state  per (b, head, 64 p-rows): walks the chunks in order with the state in its
//          accumulators, writing the 16-bit entering states (no fp32 state through memory).
//
// With SSD_KERNELS_FORWARD_PATH=sm90 a call goes to the sm_90a forward instead (../sm90/forward.h,
// one launch); by default every call runs the launches above.
//
// Compute paths: x, B and C all of one dtype that mma.sync takes (bfloat16, float16: the mma column of
// core/dtype.h) -> mma.sync m16n8k16 of that type; anything else (float32 or a mix) -> the same kernels with an fp32 FMA emulation of the mma
// (exact fp32 arithmetic, slow). Accumulation, cumulative sums (double inside the chunk, kept as
// a float hi/lo pair) and states are fp32 in every path. Determinism: no atomics at all.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "cuda/backend.h"
#include "cuda/detail.h"
#include "cuda/common/host.h"
#include "cuda/fwd/common.cuh"
#include "cuda/fwd/scan.cuh"
#include "cuda/fwd/seq_state.cuh"
#include "cuda/fwd/states.cuh"
#include "cuda/sm90/forward.h"

namespace ssd { namespace cuda {
namespace {  // the kernels' names and their helpers (common.cuh) are in this namespace too

// ---- host side ------------------------------------------------------------------------------

bool fixed_scan_ok(const SsdParams& p);  // below, with the fixed scan's host side
bool seq_state_ok(const SsdParams& p);  // below: k_rec_bmm, k_seq_state, then the fixed scan

struct Layout {
  int64_t nc, BB, ntri;
  size_t states_off, decay_off, cb_off, seg_off, tile0_off, tile_seq_off, hs16_off, recs_off, total;
};
Layout layout_of(const SsdParams& p) {
  Layout l{};
  const int64_t Q = p.chunk_size;
  // chunk slots per row; with cu_seqlens each sequence's last chunk may be partial: one more each
  l.nc = cdiv(p.seqlen, Q) + (p.cu_seqlens ? p.num_seqs : 0);
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
  l.seg_off = off;  // cu_seqlens: the sequences' chunk slots (k_seq_slots)
  if (p.cu_seqlens) off += align256((size_t)p.num_seqs * 8);
  l.tile0_off = off;
  if (p.cu_seqlens) off += align256((size_t)(p.num_seqs + 1) * 4);
  l.tile_seq_off = off;
  if (p.cu_seqlens) off += align256((size_t)l.nc * 4);
  l.hs16_off = off;  // the fixed scan's 16-bit entering states
  if (fixed_scan_ok(p)) off += align256((size_t)p.batch * p.nheads * l.nc * p.headdim * p.dstate * 2);
  l.recs_off = off;  // per-position records (launch 1 writes them, the fixed scan reads them)
  if (fixed_scan_ok(p)) off += align256((size_t)p.batch * p.nheads * l.nc * p.chunk_size * 16);
  l.total = off;
  return l;
}

// The fixed-shape chunk scan (k_chunk_scan<ScanFixed>) takes the shapes and layouts below (see the
// conditions above that kernel); every other call runs the any-size scan.
bool vec16_ok(const void* ptr, int64_t s0, int64_t s1, int64_t s2) { return ptr && dev::rows16(ptr, s0, s1, s2); }
// p passed check_params and supports().
bool fixed_scan_ok(const SsdParams& p) {
  const SsdDtype t = p.x_type;
  if (!dtype_mma(t) || p.B_type != t || p.C_type != t) return false;
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
// too, initial / final / varlen states 8-byte aligned (float2), and enough (row or packed sequence,
// head, p-tile) chains to fill the GPU: each is one block walking every chunk, so with few of them
// (G2: 32 chains of 64 chunks) the two-launch path (parallel chunk states, then state passing) is
// faster (bench/NOTES.md). The
// threshold is a constant, not the SM count, so that the workspace size never depends on the device.
constexpr int64_t kSeqMinChains = 64;
bool seq_state_ok(const SsdParams& p) {
  if (!fixed_scan_ok(p)) return false;
  if (p.chunk_size % 64 != 0) return false;
  if (!vec16_ok(p.B, p.B_batch_stride, p.B_seq_stride, p.B_group_stride)) return false;
  if (!aligned(p.initial_states, 8) || !aligned(p.final_states, 8) || !aligned(p.varlen_states, 8)) return false;
  return fwd_chains(p) * p.nheads * (p.headdim / 64) >= kSeqMinChains;
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
// The fixed scan's instance for headdim P, dstate N (the shapes fixed_scan_ok admits), or null.
template <class T, int P, int N>
bool fixed_scan_shape(int p, int n, size_t* smem, void (**k)(SsdParams, Dv)) {
  if (p != P || n != N) return false;
  *smem = ScanFixed<T, P, N>::kSmem;
  *k = k_chunk_scan<ScanFixed<T, P, N>>;
  return true;
}
template <class T>
void (*fixed_scan_kernel(int P, int N, size_t* smem))(SsdParams, Dv) {
  void (*k)(SsdParams, Dv) = nullptr;
  fixed_scan_shape<T, 64, 64>(P, N, smem, &k) || fixed_scan_shape<T, 64, 128>(P, N, smem, &k) ||
      fixed_scan_shape<T, 64, 256>(P, N, smem, &k) || fixed_scan_shape<T, 128, 64>(P, N, smem, &k) ||
      fixed_scan_shape<T, 128, 128>(P, N, smem, &k) || fixed_scan_shape<T, 128, 256>(P, N, smem, &k);
  return k;
}

// ---- packed sequences (cu_seqlens) ----------------------------------------------------------------
// Each sequence is chunked from its own start, so that no chunk holds two sequences: the kernels then
// treat a sequence as they treat a batch row, with no masks, and each chain's final state is the
// sequence's (varlen_states). k_seq_slots gives sequence s the chunk slots tile0[s] ..
// tile0[s + 1] - 1 (the exclusive sum of its chunk counts, in one block) and its clamped bounds seg[s];
// k_slot_seq maps every slot back to its sequence. Offsets that break the contract (only device-
// resident ones can reach here unchecked) are clamped to [0, seqlen] and the slots capped at nc, so
// they give wrong results, never out-of-bounds accesses.
constexpr int kSlotThreads = 1024;
__global__ void __launch_bounds__(kSlotThreads)
k_seq_slots(const int32_t* cu, int nseq, int64_t L, int Q, int nc, int2* seg, int32_t* tile0) {
  __shared__ int64_t warp_sum[kSlotThreads / 32];
  __shared__ int64_t carry;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  if (tid == 0) carry = 0;
  __syncthreads();
  for (int base = 0; base < nseq; base += kSlotThreads) {
    const int s = base + tid;
    int64_t n = 0;
    if (s < nseq) {
      const int a = (int)lmin(lmax(cu[s], 0), L);
      const int e = (int)lmax(a, lmin(lmax(cu[s + 1], 0), L));
      seg[s] = make_int2(a, e);
      n = (e - a + Q - 1) / Q;
    }
    const int64_t v = dev::warp_inclusive_scan(n);  // inclusive scan: warps, then their sums
    if (lane == 31) warp_sum[warp] = v;
    __syncthreads();
    int64_t before = carry;
    for (int w = 0; w < warp; ++w) before += warp_sum[w];
    if (s < nseq) tile0[s] = (int32_t)lmin(before + v - n, nc);
    __syncthreads();
    if (tid == kSlotThreads - 1) carry = before + v;
    __syncthreads();
  }
  if (tid == 0) tile0[nseq] = (int32_t)lmin(carry, nc);
}
__global__ void __launch_bounds__(256) k_slot_seq(const int32_t* tile0, int nseq, int nc, int32_t* tile_seq) {
  const int t = blockIdx.x * 256 + threadIdx.x;
  if (t >= nc) return;
  if (t >= tile0[nseq]) {
    tile_seq[t] = -1;
    return;
  }
  int lo = 0, hi = nseq - 1;  // the last s < nseq with tile0[s] <= t (tile0[0] = 0 <= t)
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (tile0[mid] <= t) lo = mid;
    else hi = mid - 1;
  }
  tile_seq[t] = lo;
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
  auto vec16 = [&](const void* ptr, int64_t s0, int64_t s1, int64_t s2) { return k16 && dev::rows16(ptr, s0, s1, s2); };
  dv.vx = vec16(p.x, p.x_batch_stride, p.x_seq_stride, p.x_head_stride);
  dv.vB = vec16(p.B, p.B_batch_stride, p.B_seq_stride, p.B_group_stride);
  dv.vC = vec16(p.C, p.C_batch_stride, p.C_seq_stride, p.C_group_stride);
  dv.st4 = (p.dstate % 4) == 0;
  auto vec8 = [&](const void* ptr, SsdDtype t, int64_t s0, int64_t s1, int64_t s2) {
    const int64_t m = vec_elems(t);  // elements per 16 bytes
    return ptr && m && aligned(ptr, 16) && s0 % m == 0 && s1 % m == 0 && s2 % m == 0;
  };
  dv.x8 = vec8(p.x, p.x_type, p.x_batch_stride, p.x_seq_stride, p.x_head_stride);
  dv.z8 = vec8(p.z, p.z_type, p.z_batch_stride, p.z_seq_stride, p.z_head_stride);
  dv.y8 = vec8(p.y, p.y_type, p.y_batch_stride, p.y_seq_stride, p.y_head_stride);
  dv.yu8 = vec8(p.y_ungated, p.y_ungated_type, p.y_ungated_batch_stride, p.y_ungated_seq_stride, p.y_ungated_head_stride);
  dv.pass4 = (dv.PN % 4) == 0 && aligned(p.initial_states, 16) && aligned(p.final_states, 16) &&
             aligned(p.varlen_states, 16);
  dv.cb_per = l.ntri * l.BB * l.BB;
  dv.states = reinterpret_cast<float*>(ws + l.states_off);
  dv.decay = reinterpret_cast<float*>(ws + l.decay_off);
  dv.cb = reinterpret_cast<float*>(ws + l.cb_off);
  if (p.cu_seqlens) {
    dv.seg = reinterpret_cast<const int2*>(ws + l.seg_off);
    dv.tile0 = reinterpret_cast<const int32_t*>(ws + l.tile0_off);
    dv.tile_seq = reinterpret_cast<const int32_t*>(ws + l.tile_seq_off);
  }
  const bool fixed = k16 && fixed_scan_ok(p);
  dv.hs16 = fixed ? ws + l.hs16_off : nullptr;
  dv.cb_frag = fixed ? 1 : 0;  // read only by the fixed scan, in its fragment order
  dv.pass_f32 = !fixed;
  const int64_t nstate = (int64_t)dv.npt1 * dv.nnt1 * p.nheads * dv.nc * p.batch;
  const int64_t nbmm = (int64_t)dv.ntri * p.ngroups * dv.nc * p.batch;
  const int64_t nscan = (int64_t)dv.nib * dv.npt3 * p.nheads * dv.nc * p.batch;
  const int64_t npass = (int64_t)dv.nes * p.nheads * fwd_chains(p);
  if (l.nc > INT32_MAX || nstate + nbmm > INT32_MAX || nscan > INT32_MAX || npass > INT32_MAX) {
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
  if (BP == 64) k3 = k_chunk_scan<ScanAnySize<T, 64>>;
  else if constexpr (k16) k3 = k_chunk_scan<ScanAnySize<T, 128>>;
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
      n2 = (int64_t)dv.npt1 * p.nheads * fwd_chains(p);
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
  SsdStatus st;
  if ((st = allow_smem(k1, smem1_launch, "k_state_bmm", err)) != SSD_OK) return st;
  if ((st = allow_smem(k3, smem3_launch, "k_chunk_scan", err)) != SSD_OK) return st;
  if (k2 && (st = allow_smem(k2, smem2, "k_seq_state", err)) != SSD_OK) return st;

  Stages stages(stream, tm, err);
  if ((st = stages.begin()) != SSD_OK) return st;
  if (n1_launch > INT32_MAX) {
    if (err) *err = "problem too large for one grid";
    return SSD_ERR_UNSUPPORTED;
  }
  k1<<<(unsigned)n1_launch, kThreads, smem1_launch, stream>>>(p, dv);
  if ((st = stages.done(cudaGetLastError(), "launch k_state_bmm")) != SSD_OK) return st;
  // Kernels 2 and 3 start while the one before drains, unless events are recorded between them.
  const bool pdl = !tm && pdl_supported();
  // The sequential pass is an ordinary launch: launched early (programmatic), its long-lived blocks
  // would be placed two to an SM beside the draining first launch while other SMs get none;
  // launched after it, they spread one per SM.
  cudaError_t e;
  if (seq) e = launch(k2, (unsigned)n2, kSeqThreads, smem2, stream, false, p, dv);
  else e = launch(k_state_pass<T>, (unsigned)npass, 256, 0, stream, pdl, p, dv);
  if ((st = stages.done(e, seq ? "launch k_seq_state" : "launch k_state_pass")) != SSD_OK) return st;
  e = launch(k3, (unsigned)nscan_launch, kThreads, smem3_launch, stream, pdl, p, dv);
  if ((st = stages.done(e, "launch k_chunk_scan")) != SSD_OK) return st;
  if (tm) {
    stages.name({seq ? "records+CBt" : "state+CBt", seq ? "seq_state" : "state_pass",
                 (k16 && fixed_scan_ok(p)) ? "chunk_scan_fixed" : "chunk_scan"});
  }
  return SSD_OK;
}

// Whether the call runs on the sm_90a forward (sm90/forward.h: path_verdict).
int sm90_verdict(const SsdParams& p, std::string* why) {
  return sm90::path_verdict(sm90::path_choice(), sm90::kForwardByDefault, [&](std::string* w) { return sm90::takes(p, w); }, why);
}

// The sm_80 kernels: for a packed call, its chunk slots first.
SsdStatus forward_sm80(const SsdParams& p, cudaStream_t stream, void* workspace, std::string* err, Timer* tm) {
  if (p.cu_seqlens) {
    const Layout l = layout_of(p);
    if (l.nc > INT32_MAX) {
      if (err) *err = "problem too large for one grid";
      return SSD_ERR_UNSUPPORTED;
    }
    char* ws = static_cast<char*>(workspace);
    int2* seg = reinterpret_cast<int2*>(ws + l.seg_off);
    int32_t* tile0 = reinterpret_cast<int32_t*>(ws + l.tile0_off);
    int32_t* tile_seq = reinterpret_cast<int32_t*>(ws + l.tile_seq_off);
    const int nseq = (int)p.num_seqs, nc = (int)l.nc, Q = (int)p.chunk_size;
    k_seq_slots<<<1, kSlotThreads, 0, stream>>>(p.cu_seqlens, nseq, p.seqlen, Q, nc, seg, tile0);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return cuda_fail(e, "launch k_seq_slots", err);
    k_slot_seq<<<(unsigned)cdiv(nc, 256), 256, 0, stream>>>(tile0, nseq, nc, tile_seq);
    if ((e = cudaGetLastError()) != cudaSuccess) return cuda_fail(e, "launch k_slot_seq", err);
  }
  return run_path(path_of(p), [&](auto t) { return run_t<decltype(t)>(p, stream, workspace, err, tm); });
}

SsdStatus forward_impl(const SsdParams& p, void* stream_v, void* workspace, std::string* err, Timer* tm) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_v);
  return run_on_verdict(
      "SSD_KERNELS_FORWARD_PATH", [&](std::string* why) { return sm90_verdict(p, why); }, workspace, tm, err,
      [&] {  // one or two launches (segments), timed as one stage
        const char* name = sm90::segments(p) > 1 ? "chain_fwd (sm90, segments)" : "chain_fwd (sm90)";
        return one_stage(stream, tm, err, "launch k_chain_fwd", name, [&] { return sm90::forward(p, stream, workspace, err); });
      },
      [&] { return forward_sm80(p, stream, workspace, err, tm); });
}

}  // namespace

size_t forward_workspace_bytes(const SsdParams& p) {
  // that of the path the call takes (begin_launches wants a workspace even where the sm_90a forward
  // needs none: its unsegmented calls get 256 bytes)
  if (sm90_verdict(p, nullptr) == 1) return std::max<size_t>(sm90::workspace_bytes(p), 256);
  return layout_of(p).total;
}

SsdStatus forward(const SsdParams& p, void* stream, void* workspace, std::string* error) {
  return forward_impl(p, stream, workspace, error, nullptr);
}

namespace detail {

const char* compute_path(const SsdParams& p) { return path_name(path_of(p)); }

const char* scan_kernel(const SsdParams& p) {
  if (!supports(p, nullptr)) return "-";
  if (sm90_verdict(p, nullptr) == 1) return "sm90";
  return fixed_scan_ok(p) ? "fixed" : "generic";
}

SsdStatus forward_timed(const SsdParams& p, void* stream, void* workspace, std::string* error,
                        StageTimes* times) {
  return run_timed(stream, error, times, [&](Timer* tm) { return forward_impl(p, stream, workspace, error, tm); });
}

}  // namespace detail
}}  // namespace ssd::cuda
