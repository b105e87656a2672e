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

namespace ssd { namespace cuda {
namespace {  // the kernels' names and their helpers (common.cuh) are in this namespace too

// ---- host side ------------------------------------------------------------------------------

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

// The fixed-shape chunk scan (k_chunk_scan<ScanFixed>) takes the shapes and layouts below (see the
// conditions above that kernel); every other call runs the any-size scan.
bool vec16_ok(const void* ptr, int64_t s0, int64_t s1, int64_t s2) {
  return ptr && (reinterpret_cast<uintptr_t>(ptr) % 16) == 0 && s0 % 8 == 0 && s1 % 8 == 0 && s2 % 8 == 0;
}
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
    const int64_t m = vec_elems(t);  // elements per 16 bytes
    return ptr && m && aligned(ptr, 16) && s0 % m == 0 && s1 % m == 0 && s2 % m == 0;
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
  if (p.cu_seqlens && p.varlen_states && p.num_seqs > 0) {
    const int64_t nv = p.num_seqs * p.nheads * cdiv(p.headdim, 32);
    if (nv > INT32_MAX) return SSD_ERR_UNSUPPORTED;
    k_varlen_states<<<(unsigned)nv, 256, 32 * p.dstate * sizeof(float), stream>>>(p, dv);
    if ((e = cudaGetLastError()) != cudaSuccess) return cuda_fail(e, "launch k_varlen_states", err);
  }
  if (tm) {
    stages.name({seq ? "records+CBt" : "state+CBt", seq ? "seq_state" : "state_pass",
                 (k16 && fixed_scan_ok(p)) ? "chunk_scan_fixed" : "chunk_scan"});
  }
  return SSD_OK;
}

SsdStatus forward_impl(const SsdParams& p, void* stream_v, void* workspace, std::string* err, Timer* tm) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_v);
  const SsdStatus st = begin_launches(workspace, tm, err);
  if (st != SSD_OK) return st;
  SsdParams q = p;
  if (p.cu_seqlens) {
    int32_t* seq = reinterpret_cast<int32_t*>(static_cast<char*>(workspace) + layout_of(p).seq_off);
    k_fill_seq_idx<<<(unsigned)cdiv(p.seqlen, 256), 256, 0, stream>>>(p.cu_seqlens, p.num_seqs, p.seqlen, seq);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return cuda_fail(e, "launch k_fill_seq_idx", err);
    q.seq_idx = seq;
    q.seq_idx_batch_stride = p.seqlen;
  }
  return run_path(path_of(q), [&](auto t) { return run_t<decltype(t)>(q, stream, workspace, err, tm); });
}

}  // namespace

size_t forward_workspace_bytes(const SsdParams& p) { return layout_of(p).total; }

SsdStatus forward(const SsdParams& p, void* stream, void* workspace, std::string* error) {
  return forward_impl(p, stream, workspace, error, nullptr);
}

namespace detail {

const char* compute_path(const SsdParams& p) { return path_name(path_of(p)); }

const char* scan_kernel(const SsdParams& p) {
  if (!supports(p, nullptr)) return "-";
  return fixed_scan_ok(p) ? "fixed" : "generic";
}

SsdStatus forward_timed(const SsdParams& p, void* stream, void* workspace, std::string* error,
                        StageTimes* times) {
  return run_timed(stream, error, times, [&](Timer* tm) { return forward_impl(p, stream, workspace, error, tm); });
}

}  // namespace detail
}}  // namespace ssd::cuda
