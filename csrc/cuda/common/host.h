// Host-side pieces every CUDA entry shares: size arithmetic, CUDA errors as statuses, the compute path
// of a block's dtypes, and the per-launch timing that the harnesses read (detail.h).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "cuda/detail.h"
#include "ssd_kernels.h"

namespace ssd { namespace cuda {

inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline size_t align256(size_t v) { return (v + 255) & ~size_t(255); }
inline bool aligned(const void* ptr, size_t a) { return (reinterpret_cast<uintptr_t>(ptr) % a) == 0; }

// SSD_ERR_CUDA with "what: cudaErrorName: message" in *err.
inline SsdStatus cuda_fail(cudaError_t e, const char* what, std::string* err) {
  if (err) *err = std::string(what) + ": " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
  return SSD_ERR_CUDA;
}

// The compute path: x, B and C all bfloat16 or all float16 take the tensor-core kernels of that type;
// anything else the same kernels with an exact fp32 emulation of the mma.
enum Path { kPathBf16, kPathF16, kPathF32 };
inline Path path_of(const SsdParams& p) {
  if (p.x_type == SSD_BFLOAT16 && p.B_type == SSD_BFLOAT16 && p.C_type == SSD_BFLOAT16) return kPathBf16;
  if (p.x_type == SSD_FLOAT16 && p.B_type == SSD_FLOAT16 && p.C_type == SSD_FLOAT16) return kPathF16;
  return kPathF32;
}
inline const char* path_name(Path path) {
  switch (path) {
    case kPathBf16: return "bf16-mma";
    case kPathF16: return "f16-mma";
    default: return "f32-fma";
  }
}

// CUDA events around each launch of one call, when the harness asks for them (null otherwise).
struct Timer {
  detail::StageTimes* times = nullptr;
  cudaEvent_t ev[detail::kMaxStages + 1] = {};
  // Records event i on the stream (nothing without a timer).
  static cudaError_t mark(Timer* tm, int i, cudaStream_t stream) {
    return tm ? cudaEventRecord(tm->ev[i], stream) : cudaSuccess;
  }
};

// Runs impl(&timer) with events around its launches, synchronizes the stream and fills *times.
template <class Impl>
SsdStatus run_timed(void* stream, std::string* error, detail::StageTimes* times, Impl impl) {
  Timer tm;
  tm.times = times;
  for (auto& ev : tm.ev) {
    cudaError_t e = cudaEventCreate(&ev);
    if (e != cudaSuccess) return cuda_fail(e, "cudaEventCreate", error);
  }
  SsdStatus st = impl(&tm);
  if (st == SSD_OK && times->n > 0) {
    cudaError_t e = cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
    if (e != cudaSuccess) st = cuda_fail(e, "cudaStreamSynchronize", error);
    for (int i = 0; st == SSD_OK && i < times->n; ++i) {
      e = cudaEventElapsedTime(&times->ms[i], tm.ev[i], tm.ev[i + 1]);
      if (e != cudaSuccess) st = cuda_fail(e, "cudaEventElapsedTime", error);
    }
  }
  for (auto& ev : tm.ev) cudaEventDestroy(ev);
  return st;
}

}}  // namespace ssd::cuda
