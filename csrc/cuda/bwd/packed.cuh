// The sm_80 backward of packed sequences (cu_seqlens): its launches take seq_idx, so a first launch
// writes the equivalent seq_idx row into the workspace (sequence k's positions get k; the forward's
// definition of a pack, docs/semantics.md), and the call then runs as that row's backward
// (core/params.h: packed_as_seq_idx). Each
// thread writes its own position, so the row is the same on every run; nothing is read back to the host.
#pragma once
#include "core/params.h"
#include "cuda/bwd/common.cuh"

namespace ssd { namespace cuda {
namespace {

// Grid: ceil(seqlen / 256) blocks of 256 threads, one position t each. seq[t] = the last k in
// [0, num_seqs) with cu[k] <= t (cu[0] taken as met): the sequence k with cu[k] <= t < cu[k + 1]
// where the offsets keep the contract; for device-resident offsets that break it, some k in
// [0, num_seqs), so wrong results, never an out-of-bounds access.
constexpr int kSeqThreads = 256;
__global__ void __launch_bounds__(kSeqThreads)
k_seq_idx_of_cu(const int32_t* cu, int64_t num_seqs, int64_t seqlen, int32_t* seq) {
  pdl_wait();  // cu may come from the stream's earlier work
  pdl_launch_dependents();
  const int64_t t = (int64_t)blockIdx.x * kSeqThreads + threadIdx.x;
  if (t >= seqlen) return;
  int64_t lo = 0, hi = num_seqs - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (cu[mid] <= t) lo = mid;
    else hi = mid - 1;
  }
  seq[t] = (int32_t)lo;
}

}  // namespace
}}  // namespace ssd::cuda
