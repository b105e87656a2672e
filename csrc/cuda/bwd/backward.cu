// CUDA backward of Mamba-2's SSD chunked scan (shared/design/ssd-math.md §3). Nothing is saved by the
// forward: cumulative sums, C·Bᵀ, chunk states and the pre-gate output are recomputed here; only the
// last may come from the forward instead (fwd.y_ungated, which launch 3 then reads for dz).
//
// Notation per (batch b, chunk k, head h): positions i, j of the chunk, d_j the step, s_j the
// inclusive cumulative sum of d·A in the chunk, x̄_j = d_j x_j, G = C Bᵀ (per group), L the
// decay mask (exp(s_i − s_j), j ≤ i, same seqIdx), M = L ∘ G, dY = dy ⊙ silu(z) (dy without z),
// H_{k-1} the state entering the chunk, G_k = dL/dH_k (the gradient of the state after it),
//   e_i = exp(s_i)·[seq_i = seq before the chunk]      (weight of H_{k-1} in output i)
//   w_j = exp(s_last − s_j)·[seq_j = seq_last]         (weight of x̄_j in the chunk's state)
//
// Packed sequences (cu_seqlens): a first launch writes the equivalent seq_idx row into the workspace
// (packed.cuh), and the five launches below run as that row's backward. The sm_90a backward
// (../sm90) takes cu_seqlens as they are.
//
// Five launches:
//   1. k_bwd_prep      three roles (split by blockIdx.x):
//        a. chunk state S_k = Σ_j w_j x̄_j ⊗ B_j (tensor cores) into `states`; the block with the
//           first tile also stores the chunk's position records (cumsum, d, seq) and its decay.
//        b. dHoff_k = Σ_i e_i dY_i ⊗ C_i, the gradient reaching H_{k-1} from the chunk's outputs,
//           into `dstates`. Given fwd.y_ungated, its fixed instance also writes dz (bw.dz_l1).
//        c. C·Bᵀ per (b, chunk, group), lower-triangular BB×BB blocks (BB = min(Q, 64)), as the forward:
//           row-major for the generic launches 2 / 3, in mma-fragment order for the fixed ones (and
//           transposed for the fixed launch 3).
//   2. k_bwd_pass_dcb  two roles:
//        a. state passing, forward then reverse, per (b, h, 512 state elements): `states` becomes
//           H_{k-1}; `dstates` becomes G_k (G_{c-1} = dFinal, G_{k-1} = dHoff_k + decay_k G_k);
//           d_initial_states = G_{-1}; per-warp partials of decay_k ⟨G_k, H_{k-1}⟩ (→ ds_last). For
//           the fixed launch 3 both end up rounded to T inside their own slabs (bw.tslab).
//        b. dG = Σ_heads L ∘ (dY X̄ᵀ) per (b, chunk, group, BB×BB block, head slice): each block loops
//           over the heads of one slice of the group in a fixed order and writes that slice's fp32
//           partial of dG, plus per head the row and column sums of P = dM ∘ M (→ ds). 16-bit inputs
//           with headdim 64 and chunks a multiple of 64 take a fixed-shape instance
//           (k_bwd_pass_dcb<DcbFixedShape>, same sums), whose last slice block per tile sums the partials into
//           slice 0 in slice order (dg_slices_sum); otherwise launch 3 sums them, in the same order,
//           where it stages dG.
//   3. k_bwd_main      three roles (the two group roles first in block order):
//        a. per (b, chunk, head, BB positions, p-tile): dX̄ = w ⊙ (B G_kᵀ) + Mᵀ dY, hence dx; the
//           pre-gate output (e ⊙ C H_{k-1}ᵀ + M X̄ + D x, or fwd.y_ungated) when dz is wanted and
//           launch 1 has not written it, hence dz; per position
//           the partial sums dY·Y_off, w x̄·(G_k B), x·dX̄ (→ ds, dd) and per-block dD partials.
//        b. dC per (b, chunk, group, BB rows, n-tile, head slice) = dG B + Σ_heads (e ⊙ dY) H_{k-1}.
//        c. dB per (b, chunk, group, BB rows, n-tile, head slice) = dGᵀ C + Σ_heads (w d ⊙ x) G_k.
//           Slice 0 adds the dG term; with one slice the result is stored directly, otherwise each
//           slice writes an fp32 partial that launch 4 sums in slice order.
//      Head slices (launches 2 and 3, chosen on the host, head_split): with few groups the per-group
//      head loops would otherwise give few, very long blocks (ngroups 1, 32 heads: 640 dG blocks of
//      32 heads each on G1).
//   4. k_bwd_ddt       per (b, chunk, head): assembles ds, reverse cumulative sum → da, then ddt,
//                      and per-(b, chunk, head) partials of dA and dDtBias (dD: its position-block
//                      partials summed in place); plus, with several head
//                      slices in launch 3, blocks that sum the dB / dC partials in slice order.
//      Terms that enter ds twice with opposite signs and cancel exactly in da (the diagonal P_ii, and
//      q_last) are left out: with large steps the true da is tiny and they would leave rounding noise.
//   5. k_bwd_reduce    per head: dA, dDtBias, dD summed over the partials in a fixed order.
//
// Determinism: no atomics; every sum runs in an order fixed by the code (per-tile partial buffers
// in the workspace, reduced by later launches in index order).
// Compute paths (as the forward): x, B, C all of one mma dtype (core/dtype.h) → mma.sync of that type;
// otherwise the same kernels with an exact fp32 FMA emulation of the mma. States, cumulative sums
// (double inside the chunk) and accumulators are fp32 in every path.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "cuda/backend.h"
#include "cuda/detail.h"
#include "cuda/common/host.h"
#include "cuda/bwd/common.cuh"
#include "cuda/bwd/prep.cuh"
#include "cuda/bwd/pass.cuh"
#include "cuda/bwd/main.cuh"
#include "cuda/bwd/main_fixed.cuh"
#include "cuda/bwd/finish.cuh"
#include "cuda/bwd/packed.cuh"
#include "cuda/sm90/backward.h"

namespace ssd { namespace cuda {
namespace {  // the kernels' names and their helpers (common.cuh) are in this namespace too

// ---- host side ------------------------------------------------------------------------------
// Tile choices (shared by the workspace layout and the launches).
struct Tiles {
  int BN1, BPm, BNg;
};
Tiles tiles_of(const SsdParams& p) {
  const bool k16 = path_of(p) != SSD_FLOAT32;
  Tiles t;
  t.BN1 = (k16 && p.dstate > 64) ? 128 : 64;
  t.BPm = (k16 && p.headdim > 64) ? 128 : 64;
  t.BNg = (k16 && p.dstate > 64) ? 128 : 64;
  return t;
}

// Head slices of the per-group loops over heads (launch 2's dG, launch 3's dB / dC): the role's
// blocks (one per tile) each loop over the hpg heads of their group; split that loop into s slices
// of hps heads (the last may be shorter, none empty), one block each, so that the launch has at
// least kSplitBlocks blocks (~4 per SM of a 132-SM GPU; `base` is the launch's blocks without
// splitting) and no block loops over more than maxh heads; at least 2 heads per slice (s = 1 for
// hpg <= 3), at most smax slices.
// - Launch 2 allows 24 heads a block: the last slice block of each tile sums the slices' dG
//   partials, so fewer, longer slices cost less than many short ones.
// - Launch 3, whose main role already fills the GPU, allows 80: each extra slice there costs fp32
//   partials of dB and dC (workspace) written and summed again by launch 4.
// (bench/NOTES.md has the measurements behind both limits.)
constexpr int64_t kSplitBlocks = 4 * 132, kSplitMaxHeads2 = 24, kSplitMaxHeads3 = 80;
void head_split(int64_t base, int64_t hpg, int64_t smax, int64_t maxh, int64_t* s, int64_t* hps) {
  int64_t v = std::max<int64_t>(cdiv(kSplitBlocks, std::max<int64_t>(base, 1)), cdiv(hpg, maxh));
  v = std::min<int64_t>(v, std::min<int64_t>(smax, std::max<int64_t>(hpg / 2, 1)));
  if (detail::forced_head_slices > 0) v = std::min<int64_t>(hpg, detail::forced_head_slices);
  *hps = cdiv(hpg, v);
  *s = cdiv(hpg, *hps);
}

struct Layout {
  int64_t nc, BB, nbb, ntri, npt, nes, npp;
  int64_t s2, h2, s3, h3;  // head slices and heads per slice: launch 2 dG, launch 3 dB / dC
  int64_t dgS, pbcS;       // floats per dG slice, per dB / dC partial slice
  size_t rec, decay, states, dstates, cb, dg, dgcnt, prow, pcol, ppass, poff, pq, pxdx, pdD, pdA, pdb, pbc, cbf, cbt, seq, total;
};
bool fixed_main_shape(const SsdParams& p);  // below
bool fixed_cbf_shape(const SsdParams& p);
Layout layout_of(const SsdBackwardParams& bp) {
  const SsdParams& p = bp.fwd;
  const Tiles tl = tiles_of(p);
  Layout l{};
  const int64_t Q = p.chunk_size, b = p.batch, H = p.nheads, G = p.ngroups, P = p.headdim, N = p.dstate;
  l.nc = cdiv(p.seqlen, Q);
  l.BB = std::min<int64_t>(Q, 64);
  l.nbb = Q / l.BB;
  l.ntri = l.nbb * (l.nbb + 1) / 2;
  l.npt = cdiv(P, tl.BPm);
  l.nes = cdiv(P * N, 4 * kThreads);
  l.npp = l.nes * 4;
  const int64_t bhc = b * H * l.nc;
  // head slices; their partials (dG slices 1.., dB / dC partials) kept within 2 × the states buffer
  const int64_t hpg = H / G;
  l.dgS = b * l.nc * G * l.ntri * l.BB * l.BB;
  l.pbcS = b * l.nc * G * Q * N;
  const size_t cap = 2 * (size_t)bhc * P * N * 4;
  for (int64_t smax = hpg;;) {
    head_split(b * l.nc * G * l.ntri, hpg, smax, kSplitMaxHeads2, &l.s2, &l.h2);
    // launch 3: its two group roles and the main role (one block per position block and p-tile)
    const int64_t group3 = cdiv(N, tl.BNg) * l.nbb * G * l.nc * b, main3 = l.nbb * l.npt * H * l.nc * b;
    head_split(2 * group3 + main3, hpg, smax, kSplitMaxHeads3, &l.s3, &l.h3);
    const size_t extra = (size_t)(l.s2 - 1) * l.dgS * 4 + (l.s3 > 1 ? (size_t)2 * l.s3 * l.pbcS * 4 : 0);
    if (extra <= cap || smax == 1) break;
    smax = std::max<int64_t>(std::max(l.s2, l.s3) / 2, 1);
  }
  size_t off = 0;
  auto take = [&](size_t bytes) {
    const size_t o = off;
    off += align256(bytes);
    return o;
  };
  l.rec = take((size_t)bhc * Q * 16);
  l.decay = take((size_t)bhc * 4);
  l.states = take((size_t)bhc * P * N * 4);
  l.dstates = take((size_t)bhc * P * N * 4);
  l.cb = take((size_t)b * l.nc * G * l.ntri * l.BB * l.BB * 4);
  l.dg = take((size_t)l.s2 * l.dgS * 4);
  l.dgcnt = take(l.s2 > 1 && fixed_cbf_shape(p) ? (size_t)b * l.nc * G * l.ntri * 4 : 0);
  l.prow = take((size_t)bhc * l.ntri * l.BB * 4);
  l.pcol = take((size_t)bhc * l.ntri * l.BB * 4);
  l.ppass = take((size_t)bhc * l.npp * 4);
  l.poff = take((size_t)bhc * l.npt * Q * 4);
  l.pq = take((size_t)bhc * l.npt * Q * 4);
  l.pxdx = take((size_t)bhc * l.npt * Q * 4);
  l.pdD = take(bp.dD ? (size_t)bhc * l.nbb * P * 4 : 0);
  l.pdA = take((size_t)bhc * 4);
  l.pdb = take((size_t)bhc * 4);
  l.pbc = take(l.s3 > 1 ? (size_t)2 * l.s3 * l.pbcS * 4 : 0);
  // C·Bᵀ in fragment order for the fixed launches 2 and 3, its transpose for the fixed launch 3 (where
  // their shapes allow them)
  const size_t tile_bytes = (size_t)b * l.nc * G * l.ntri * 4096 * 4;
  l.cbf = take(fixed_cbf_shape(p) ? tile_bytes : 0);
  l.cbt = take(fixed_main_shape(p) ? tile_bytes : 0);
  // last, so that the offsets above are those of the seq_idx block run_t hands the launches
  l.seq = take(p.cu_seqlens ? (size_t)p.seqlen * 4 : 0);  // packed.cuh: the seq_idx row of cu_seqlens
  l.total = off;
  return l;
}

// bw has its shapes and vector flags filled in; the compute path is 16-bit.
// Launch 1's fixed instance (k_bwd_prep<..., true>): 16-bit x/B/C, dy and z of the same type, all loadable by
// cp.async (16-byte rows), headdim a multiple of 64 and dstate of the n-tile BN1.
bool fixed_prep_ok(const SsdBackwardParams& bp, const Bw& bw, int BN1) {
  const SsdParams& p = bp.fwd;
  const SsdDtype t = p.x_type;
  if (!dtype_mma(t) || p.B_type != t || p.C_type != t) return false;
  if (bp.dy_type != t || (p.z && p.z_type != t)) return false;
  if (!bw.vx || !bw.vdy || !bw.vB || !bw.vC || (p.z && !bw.vz)) return false;
  return bw.P % 64 == 0 && bw.N % BN1 == 0;
}
// The shapes of the fixed launch 3 (the workspace holds its C·Bᵀ copies for them).
bool fixed_main_shape(const SsdParams& p) {
  const SsdDtype t = p.x_type;
  if (!dtype_mma(t) || p.B_type != t || p.C_type != t) return false;
  return p.headdim == 64 && (p.dstate == 64 || p.dstate == 128) && p.chunk_size % 64 == 0;
}
// The shapes of the fixed launch 2 or 3 (the workspace holds C·Bᵀ in fragment order for them).
bool fixed_cbf_shape(const SsdParams& p) {
  const SsdDtype t = p.x_type;
  if (!dtype_mma(t) || p.B_type != t || p.C_type != t) return false;
  return p.headdim == 64 && p.chunk_size % 64 == 0;
}
bool fixed_main_ok(const SsdBackwardParams& bp, const Bw& bw) {
  if (!fixed_main_shape(bp.fwd)) return false;
  const SsdParams& p = bp.fwd;
  const SsdDtype t = p.x_type;
  if (bw.P != 64 || (bw.N != 64 && bw.N != 128) || bw.Q % 64 != 0 || bw.BB != 64 || bw.npt != 1) return false;
  if (bp.dy_type != t || (p.z && p.z_type != t)) return false;
  if (!bw.vx || !bw.vdx || !bw.vdy || !bw.vB || !bw.vC) return false;
  if (p.z && !bw.vz) return false;
  if (bp.dz && !bw.vdz) return false;
  return bw.nnt == 1;  // group roles with BN = N
}

// The fixed-shape dG role of launch 2 (k_bwd_pass_dcb<DcbFixedShape>): see the conditions above that kernel.
// bw has its shapes and vector flags filled in; the compute path is 16-bit. dstate does not matter.
bool fixed_dcb_ok(const SsdBackwardParams& bp, const Bw& bw) {
  const SsdParams& p = bp.fwd;
  const SsdDtype t = p.x_type;
  if (!dtype_mma(t) || p.B_type != t || p.C_type != t) return false;
  if (bw.P != 64 || bw.Q % 64 != 0 || bw.BB != 64) return false;
  if (bp.dy_type != t || (p.z && p.z_type != t)) return false;
  if (!bw.vx || !bw.vdy) return false;
  return !p.z || bw.vz;
}

template <class T>
SsdStatus run_t(const SsdBackwardParams& given, cudaStream_t stream, void* workspace, std::string* err, Timer* tm) {
  constexpr bool k16 = sizeof(T) == 2;
  const Layout l = layout_of(given);
  char* ws = static_cast<char*>(workspace);
  int32_t* seq = reinterpret_cast<int32_t*>(ws + l.seq);
  // a pack runs as its seq_idx row (packed.cuh), which the first launch writes
  const SsdBackwardParams bp = packed_as_seq_idx(given, seq);
  const SsdParams& p = bp.fwd;
  const Tiles tl = tiles_of(p);
  Bw bw{};
  bw.Q = (int)p.chunk_size;
  bw.nc = (int)l.nc;
  bw.hpg = (int)(p.nheads / p.ngroups);
  bw.H = (int)p.nheads;
  bw.P = (int)p.headdim;
  bw.N = (int)p.dstate;
  bw.G = (int)p.ngroups;
  bw.BB = (int)l.BB;
  bw.nbb = (int)l.nbb;
  bw.ntri = (int)l.ntri;
  bw.npt1 = (int)cdiv(p.headdim, 64);
  bw.nnt1 = (int)cdiv(p.dstate, tl.BN1);
  bw.nes = (int)l.nes;
  bw.npp = (int)l.npp;
  bw.npt = (int)l.npt;
  bw.nnt = (int)cdiv(p.dstate, tl.BNg);
  bw.PN = p.headdim * p.dstate;
  bw.want_dz = bp.dz != nullptr;
  bw.use_yu = bw.want_dz && p.y_ungated != nullptr;  // the fixed launch 3 narrows it below
  bw.s2 = (int)l.s2;
  bw.s2r = bw.s2;  // 1 below where the fixed launch 2 sums the slices
  bw.h2 = (int)l.h2;
  bw.s3 = (int)l.s3;
  bw.h3 = (int)l.h3;
  bw.dgS = l.dgS;
  bw.pbcS = l.pbcS;
  auto vec8 = [&](const void* ptr, SsdDtype t, int64_t s0, int64_t s1, int64_t s2) -> int {
    const int64_t m = vec_elems(t);  // elements per 16 bytes
    return ptr && m && aligned(ptr, 16) && s0 % m == 0 && s1 % m == 0 && s2 % m == 0;
  };
  bw.vx = vec8(p.x, p.x_type, p.x_batch_stride, p.x_seq_stride, p.x_head_stride);
  bw.vdx = vec8(bp.dx, p.x_type, p.x_batch_stride, p.x_seq_stride, p.x_head_stride);
  bw.vdy = vec8(bp.dy, bp.dy_type, bp.dy_batch_stride, bp.dy_seq_stride, bp.dy_head_stride);
  bw.vz = vec8(p.z, p.z_type, p.z_batch_stride, p.z_seq_stride, p.z_head_stride);
  bw.vyu = vec8(p.y_ungated, p.y_ungated_type, p.y_ungated_batch_stride, p.y_ungated_seq_stride,
                p.y_ungated_head_stride);
  bw.vdz = vec8(bp.dz, p.z_type, p.z_batch_stride, p.z_seq_stride, p.z_head_stride);
  bw.vB = vec8(p.B, p.B_type, p.B_batch_stride, p.B_seq_stride, p.B_group_stride);
  bw.vdB = vec8(bp.dB, p.B_type, p.B_batch_stride, p.B_seq_stride, p.B_group_stride);
  bw.vC = vec8(p.C, p.C_type, p.C_batch_stride, p.C_seq_stride, p.C_group_stride);
  bw.vdC = vec8(bp.dC, p.C_type, p.C_batch_stride, p.C_seq_stride, p.C_group_stride);
  bw.st4 = (p.dstate % 4) == 0;
  bw.pass4 = (bw.PN % 4) == 0 && aligned(p.initial_states, 16) && aligned(bp.d_final_states, 16) &&
             aligned(bp.d_initial_states, 16);
  bw.rec = reinterpret_cast<float4*>(ws + l.rec);
  bw.decay = reinterpret_cast<float*>(ws + l.decay);
  bw.states = reinterpret_cast<float*>(ws + l.states);
  bw.dstates = reinterpret_cast<float*>(ws + l.dstates);
  bw.cb = reinterpret_cast<float*>(ws + l.cb);
  bw.dg = reinterpret_cast<float*>(ws + l.dg);
  bw.prow = reinterpret_cast<float*>(ws + l.prow);
  bw.pcol = reinterpret_cast<float*>(ws + l.pcol);
  bw.ppass = reinterpret_cast<float*>(ws + l.ppass);
  bw.poff = reinterpret_cast<float*>(ws + l.poff);
  bw.pq = reinterpret_cast<float*>(ws + l.pq);
  bw.pxdx = reinterpret_cast<float*>(ws + l.pxdx);
  bw.pdD = reinterpret_cast<float*>(ws + l.pdD);
  bw.pdA = reinterpret_cast<float*>(ws + l.pdA);
  bw.pdb = reinterpret_cast<float*>(ws + l.pdb);
  bw.pbc = reinterpret_cast<float*>(ws + l.pbc);

  const int64_t B_ = p.batch, H = p.nheads, G = p.ngroups;
  const int64_t n1a = (int64_t)bw.npt1 * bw.nnt1 * H * bw.nc * B_;
  const int64_t n1c = (int64_t)bw.ntri * G * bw.nc * B_;
  const int64_t n2a = (int64_t)bw.nes * H * B_;
  const int64_t n2b = n1c * bw.s2;
  const int64_t n3a = (int64_t)bw.nbb * bw.npt * H * bw.nc * B_;
  const int64_t n3b = (int64_t)bw.nnt * bw.nbb * G * bw.nc * B_ * bw.s3;
  const int64_t nddt = (int64_t)B_ * bw.nc * H;
  const int64_t n4c = bw.s3 > 1 ? 2 * B_ * bw.nc * G * cdiv(bw.Q, kCombRows) : 0;
  if (2 * n1a + n1c > INT32_MAX || n2a + n2b > INT32_MAX || n3a + 2 * n3b > INT32_MAX || nddt + n4c > INT32_MAX) {
    if (err) *err = "problem too large for one grid";
    return SSD_ERR_UNSUPPORTED;
  }
  bw.n1a = bw.n1b = (int)n1a;
  bw.n2a = (int)n2a;
  bw.n3a = (int)n3a;
  bw.n3b = (int)n3b;
  bw.n4a = (int)nddt;

  const size_t es = sizeof(T);
  // role c: two 64-row tiles (C, B) per K block of 64; 16-bit types copy up to two K blocks at once
  const size_t cb_tiles = (k16 ? 4 : 2) * 64 * kLD * es;
  size_t smem1 = std::max<size_t>(kHdr + 64 * kLD * es + 64 * (tl.BN1 + 8) * es, cb_tiles);
  size_t smem2 = 2 * 64 * kLD * es + 2 * 64 * 16 + 4 * 64 * 4;
  void (*k1)(SsdBackwardParams, Bw) = nullptr;
  bool prep_fixed = false;  // launch 1 is k_bwd_prep<..., true>
  void (*k3)(SsdBackwardParams, Bw) = nullptr;
  size_t smem3 = 0;
  if (tl.BN1 == 64) k1 = k_bwd_prep<T, 64, false>;
  else if constexpr (k16) k1 = k_bwd_prep<T, 128, false>;
  if constexpr (k16) {
    if (fixed_prep_ok(bp, bw, tl.BN1)) {  // role b's stages (with the raw z tile) are the larger
      prep_fixed = true;
      k1 = tl.BN1 == 64 ? k_bwd_prep<T, 64, true> : k_bwd_prep<T, 128, true>;
      smem1 = std::max<size_t>(tl.BN1 == 64 ? PrepFixed<64, true>::kSmem : PrepFixed<128, true>::kSmem, cb_tiles);
    }
  }
  auto main_any = [&](auto tr) {
    using Tr = decltype(tr);
    k3 = k_bwd_main<Tr>;
    smem3 = Tr::kSmem;
  };
  if (tl.BPm == 64 && tl.BNg == 64) main_any(MainAnySize<T, 64, 64>{});
  if constexpr (k16) {
    if (tl.BPm == 64 && tl.BNg == 128) main_any(MainAnySize<T, 64, 128>{});
    if (tl.BPm == 128 && tl.BNg == 64) main_any(MainAnySize<T, 128, 64>{});
    if (tl.BPm == 128 && tl.BNg == 128) main_any(MainAnySize<T, 128, 128>{});
  }
  bool generic_cb_reader = true;  // a launch reads the row-major C·Bᵀ tiles (generic launch 2 or 3)
  bool main_fixed_on = false;
  if constexpr (k16) {
    // the fixed launch 3 reads the T slabs that only the fixed launch 2 writes (its conditions imply
    // launch 2's anyway)
    const bool fd = fixed_dcb_ok(bp, bw), fm = fd && fixed_main_ok(bp, bw);
    generic_cb_reader = !fm || !fd;
    if (fm || fd) bw.cbf = reinterpret_cast<float*>(ws + l.cbf);  // launch 1's C·Bᵀ role writes the copies
    if (fd && bw.s2 > 1) {  // launch 1 zeroes the slice counters, launch 2 sums its dG slices (dg_slices_sum)
      bw.dgcnt = reinterpret_cast<int*>(ws + l.dgcnt);
      bw.s2r = 1;
    }
    if (fm) {
      // the fixed launch 3 reads y_ungated as T rows of 16-byte vectors, or recomputes the output
      bw.use_yu = bw.use_yu && p.y_ungated_type == p.x_type && bw.vyu;
      main_fixed_on = true;
      bw.cbt = reinterpret_cast<float*>(ws + l.cbt);
      k3 = bw.N == 64 ? k_bwd_main<MainFixedShape<T, 64>> : k_bwd_main<MainFixedShape<T, 128>>;
      smem3 = bw.N == 64 ? MainFixedShape<T, 64>::kSmem : MainFixedShape<T, 128>::kSmem;
      bw.tslab = 1;
    }
  }
  if (!generic_cb_reader) bw.cb = nullptr;  // not written
  bw.dz_l1 = bw.use_yu && main_fixed_on && prep_fixed;  // both fixed: dz moves to launch 1 (y_ungated's type is T)
  if constexpr (k16) {
    if (bw.dz_l1) {
      k1 = tl.BN1 == 64 ? k_bwd_prep<T, 64, true, true> : k_bwd_prep<T, 128, true, true>;
      smem1 = std::max<size_t>(tl.BN1 == 64 ? PrepFixed<64, true>::kSmemU : PrepFixed<128, true>::kSmemU, cb_tiles);
    }
  }
  void (*k2)(SsdBackwardParams, Bw) = k_bwd_pass_dcb<DcbAnySize<T>>;
  if constexpr (k16) {
    if (fixed_dcb_ok(bp, bw)) {  // always where launch 3 is fixed
      k2 = k_bwd_pass_dcb<DcbFixedShape<T>>;
      smem2 = DcbFixed::kBytes;
    }
  }
  if (!k1 || !k3) {
    if (err) *err = "internal: no kernel instance";
    return SSD_ERR_INTERNAL;
  }
  SsdStatus st;
  if ((st = allow_smem(k1, smem1, "k_bwd_prep", err)) != SSD_OK) return st;
  if ((st = allow_smem(k2, smem2, "k_bwd_pass_dcb", err)) != SSD_OK) return st;
  if ((st = allow_smem(k3, smem3, "k_bwd_main", err)) != SSD_OK) return st;

  // Every launch is a programmatic dependent (sm_90, not when timed per launch): it is scheduled as
  // the kernel before it in the stream drains, and waits for it (pdl_wait) before it touches memory.
  const bool pdl = !tm && pdl_supported();
  Stages stages(stream, tm, err);
  const unsigned grid1 = (unsigned)(2 * n1a + n1c), grid2 = (unsigned)(n2a + n2b), grid3 = (unsigned)(n3a + 2 * n3b);
  const bool packed = given.fwd.cu_seqlens != nullptr;
  if ((st = stages.begin()) != SSD_OK) return st;
  if (packed) {  // timed with launch 1
    const cudaError_t e = launch(k_seq_idx_of_cu, (unsigned)cdiv(p.seqlen, kSeqThreads), kSeqThreads, 0, stream, pdl,
                                 given.fwd.cu_seqlens, given.fwd.num_seqs, p.seqlen, seq);
    if (e != cudaSuccess) return cuda_fail(e, "launch k_seq_idx_of_cu", err);
  }
  if ((st = stages.done(launch(k1, grid1, kThreads, smem1, stream, pdl, bp, bw), "launch k_bwd_prep")) != SSD_OK ||
      (st = stages.done(launch(k2, grid2, kThreads, smem2, stream, pdl, bp, bw), "launch k_bwd_pass_dcb")) != SSD_OK ||
      (st = stages.done(launch(k3, grid3, kThreads, smem3, stream, pdl, bp, bw), "launch k_bwd_main")) != SSD_OK ||
      (st = stages.done(launch(k_bwd_ddt, (unsigned)(nddt + n4c), 256, 0, stream, pdl, bp, bw), "launch k_bwd_ddt")) != SSD_OK ||
      (st = stages.done(launch(k_bwd_reduce, (unsigned)H, kThreads, 0, stream, pdl, bp, bw, (int)(B_ * bw.nc)),
                        "launch k_bwd_reduce")) != SSD_OK) {
    return st;
  }
  stages.name({packed ? "seq_idx+prep(S,dHoff,CBt)" : "prep(S,dHoff,CBt)", "pass+dCB", "main+dB/dC", "ddt", "reduce"});
  return SSD_OK;
}

// Whether the call runs on the sm_90a backward (sm90/forward.h: path_verdict).
int sm90_verdict(const SsdBackwardParams& bp, std::string* why) {
  return sm90::path_verdict(sm90::backward_path_choice(), sm90::kBackwardByDefault,
                            [&](std::string* w) { return sm90::takes_backward(bp, w); }, why);
}

SsdStatus backward_impl(const SsdBackwardParams& bp, void* stream_v, void* workspace, std::string* err, Timer* tm) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_v);
  return run_on_verdict(
      "SSD_KERNELS_BACKWARD_PATH", [&](std::string* why) { return sm90_verdict(bp, why); }, workspace, tm, err,
      [&] {  // the sm_90a launches timed as one stage
        return one_stage(stream, tm, err, "launch the sm_90a backward", "states+dstates+block+finish (sm90)",
                         [&] { return sm90::backward(bp, stream, workspace, err); });
      },
      [&] { return run_path(path_of(bp.fwd), [&](auto t) { return run_t<decltype(t)>(bp, stream, workspace, err, tm); }); });
}

}  // namespace

size_t backward_workspace_bytes(const SsdBackwardParams& p) {
  // that of the path the call takes
  if (sm90_verdict(p, nullptr) == 1) return sm90::backward_workspace_bytes(p.fwd);
  return layout_of(p).total;
}

SsdStatus backward(const SsdBackwardParams& p, void* stream, void* workspace, std::string* error) {
  return backward_impl(p, stream, workspace, error, nullptr);
}

namespace detail {

int forced_head_slices = 0;

bool backward_workspace_layout(const SsdBackwardParams& p, BackwardWorkspaceLayout* out) {
  const Layout l = layout_of(p);
  out->nc = l.nc; out->BB = l.BB; out->nbb = l.nbb; out->ntri = l.ntri; out->npt = l.npt; out->npp = l.npp;
  out->rec = l.rec; out->decay = l.decay; out->states = l.states; out->dstates = l.dstates; out->cb = l.cb;
  out->dg = l.dg; out->prow = l.prow; out->pcol = l.pcol; out->ppass = l.ppass; out->poff = l.poff; out->pq = l.pq;
  out->pxdx = l.pxdx; out->total = l.total;
  return true;
}

const char* backward_compute_path(const SsdBackwardParams& p) { return path_name(path_of(p.fwd)); }

SsdStatus backward_timed(const SsdBackwardParams& p, void* stream, void* workspace, std::string* error,
                         StageTimes* times) {
  return run_timed(stream, error, times, [&](Timer* tm) { return backward_impl(p, stream, workspace, error, tm); });
}

}  // namespace detail
}}  // namespace ssd::cuda
