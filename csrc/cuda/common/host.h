// Host-side pieces every CUDA entry shares: size arithmetic, CUDA errors as statuses, the compute path
// of a block's dtypes, the per-launch timing that the harnesses read (detail.h) and the bookkeeping
// of a call's launches.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "core/dtype.h"
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

// The compute path: x, B and C all of one dtype that mma.sync takes (the table's mma column) run the
// tensor-core kernels of that type; anything else the same kernels with an exact fp32 emulation of the
// mma (the path SSD_FLOAT32).
inline SsdDtype path_of(const SsdParams& p) {
  const SsdDtype t = p.x_type;
  return dtype_mma(t) && p.B_type == t && p.C_type == t ? t : SSD_FLOAT32;
}
inline const char* path_name(SsdDtype path) { return dtype_path_name(path); }

// run(T()) with T the element type of the path's kernels: the CUDA type of an mma dtype, or float (the
// fp32 emulation of the mma).
template <class Run>
SsdStatus run_path(SsdDtype path, Run run) {
  return visit_dtype(path, [&](auto d) {
    using D = decltype(d);
    if constexpr (D::kMma) return run(typename D::Device());
    else return run(float());
  });
}

// Elements per 16-byte vector access of dtype t in the kernels' 8-wide loads and stores (ld8, st8):
// float32 and the 2-byte dtypes have one; 0 for any other (element by element).
inline int64_t vec_elems(SsdDtype t) { return t == SSD_FLOAT32 || dtype_bytes(t) == 2 ? 16 / dtype_bytes(t) : 0; }

// Lets kernel k take `bytes` of dynamic shared memory; the error names it.
template <class... Args>
SsdStatus allow_smem(void (*k)(Args...), size_t bytes, const char* name, std::string* err) {
  const cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
  return e == cudaSuccess ? SSD_OK : cuda_fail(e, ("cudaFuncSetAttribute(" + std::string(name) + ")").c_str(), err);
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

// The start of an entry's launches: no stage timed yet, and the workspace present.
inline SsdStatus begin_launches(const void* workspace, Timer* tm, std::string* err) {
  if (tm) tm->times->n = 0;
  if (!workspace) {
    if (err) *err = "workspace is null";
    return SSD_ERR_INVALID_ARGUMENT;
  }
  return SSD_OK;
}

// A call's launches in stream order, as stages for a harness's timer: begin() records the event
// before the first launch, done() checks a launch and records the event after it, so that stage i
// is launch i. Without a timer nothing is recorded.
class Stages {
 public:
  Stages(cudaStream_t stream, Timer* tm, std::string* err) : stream_(stream), tm_(tm), err_(err) {}

  SsdStatus begin() { return record(); }
  // `launched`: what the launch returned; `what` names it in the error.
  SsdStatus done(cudaError_t launched, const char* what) {
    if (launched != cudaSuccess) return cuda_fail(launched, what, err_);
    return record();
  }
  // The stages' names, in launch order, for the harness.
  void name(std::initializer_list<const char*> names) {
    if (!tm_) return;
    tm_->times->n = 0;
    for (const char* n : names) tm_->times->name[tm_->times->n++] = n;
  }

 private:
  SsdStatus record() {
    const cudaError_t e = Timer::mark(tm_, next_++, stream_);
    return e == cudaSuccess ? SSD_OK : cuda_fail(e, "cudaEventRecord", err_);
  }

  cudaStream_t stream_;
  Timer* tm_;
  std::string* err_;
  int next_ = 0;  // the next event
};

// A call's launches on the kernels its sm_90a verdict (sm90/forward.h: path_verdict) names, after
// begin_launches: on_sm90() where verdict(&why) is 1; SSD_ERR_UNSUPPORTED naming `variable` and the
// reason where it is -1 (the path forced onto sm_90a kernels that refuse the call); else on_sm80().
template <class Verdict, class OnSm90, class OnSm80>
SsdStatus run_on_verdict(const char* variable, Verdict verdict, const void* workspace, Timer* tm, std::string* err,
                         OnSm90 on_sm90, OnSm80 on_sm80) {
  const SsdStatus st = begin_launches(workspace, tm, err);
  if (st != SSD_OK) return st;
  std::string why;
  switch (verdict(&why)) {
    case 1: return on_sm90();
    case -1:
      if (err) *err = std::string(variable) + "=sm90: " + why;
      return SSD_ERR_UNSUPPORTED;
    default: return on_sm80();
  }
}

// launch() (which checks its own launches) timed as one stage called `name`; `what` names it in an error.
template <class Launch>
SsdStatus one_stage(cudaStream_t stream, Timer* tm, std::string* err, const char* what, const char* name, Launch launch) {
  Stages stages(stream, tm, err);
  SsdStatus st;
  if ((st = stages.begin()) != SSD_OK) return st;
  if ((st = launch()) != SSD_OK) return st;
  if ((st = stages.done(cudaSuccess, what)) != SSD_OK) return st;
  stages.name({name});
  return SSD_OK;
}

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
