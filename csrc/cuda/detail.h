#pragma once
// Internal hooks of the CUDA forward for the harness (bench/cuda): per-launch timing.
#include "cuda/backend.h"

namespace ssd { namespace cuda { namespace detail {

constexpr int kMaxStages = 8;
struct StageTimes {
  int n = 0;                      // launches made
  const char* name[kMaxStages] = {};
  float ms[kMaxStages] = {};      // time of each launch, CUDA events around each one
};

// Like forward(), but records CUDA events around every launch and synchronizes the stream at the
// end to fill *times.
SsdStatus forward_timed(const SsdParams& p, void* stream, void* workspace, std::string* error,
                        StageTimes* times);

// Which compute path forward() takes for p: "bf16-mma", "f16-mma" or "f32-fma".
const char* compute_path(const SsdParams& p);

// Which kernels forward() launches for p: "sm90" (the sm_90a forward, one launch), or the sm_80 path's
// chunk scan, "fixed" (k_chunk_scan<ScanFixed>) or "generic".
const char* scan_kernel(const SsdParams& p);

// The harness's and the emulation's way to force the backward's head-slice count (0: the backward
// chooses; n > 0: min(n, heads per group) slices), so that the slice sums are checked on small shapes.
extern int forced_head_slices;

// Like backward(), with CUDA events around every launch; synchronizes the stream to fill *times.
SsdStatus backward_timed(const SsdBackwardParams& p, void* stream, void* workspace, std::string* error,
                         StageTimes* times);

// Where backward() keeps its intermediates in the workspace (byte offsets), for the harness's
// diagnosis of a failing case. Layouts (all fp32 unless said, row-major, c = chunks, BB = min(Q, 64),
// tri = ib (ib + 1) / 2 + jb for position blocks jb <= ib):
//   rec (b, h, c, Q) float4 {s·log2(e) hi, lo, d, seq bits}   decay (b, h, c)
//   states (b, h, c, p, n) = H_{k-1}   dstates (b, h, c, p, n) = dL/dH_k
//   cb, dg (b, c, g, ntri, BB, BB) = C·Bᵀ and Σ_heads L ∘ dM, rows i, columns j of the block pair
//   prow, pcol (b, h, c, ntri, BB): per block pair, row and column sums of P (diagonal excluded)
//   ppass (b, h, c, npp): partials of decay_k ⟨dL/dH_k, H_{k-1}⟩
//   poff, pq, pxdx (b, h, c, npt, Q): per p-tile, dY·Y_off, x̄·(w G_k B), x·dX̄ per position
struct BackwardWorkspaceLayout {
  int64_t nc, BB, nbb, ntri, npt, npp;
  size_t rec, decay, states, dstates, cb, dg, prow, pcol, ppass, poff, pq, pxdx, total;
};
bool backward_workspace_layout(const SsdBackwardParams& p, BackwardWorkspaceLayout* out);

// Which compute path backward() takes for p (same rule as the forward's): "bf16-mma", "f16-mma" or
// "f32-fma".
const char* backward_compute_path(const SsdBackwardParams& p);

}}}  // namespace ssd::cuda::detail
