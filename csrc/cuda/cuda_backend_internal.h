#pragma once
// Internal hooks of the CUDA forward for the harness (bench/cuda): per-launch timing.
#include "cuda_backend.h"

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

// Which chunk-scan kernel forward() launches for p: "fast" (k_chunk_scan_fast) or "generic".
const char* scan_kernel(const SsdParams& p);

// Like backward(), with CUDA events around every launch; synchronizes the stream to fill *times.
SsdStatus backward_timed(const SsdBackwardParams& p, void* stream, void* workspace, std::string* error,
                         StageTimes* times);

// Which compute path backward() takes for p (same rule as the forward's): "bf16-mma", "f16-mma" or
// "f32-fma".
const char* backward_compute_path(const SsdBackwardParams& p);

}}}  // namespace ssd::cuda::detail
