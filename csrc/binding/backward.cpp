// The backward: backwardSync, backward (a CPU worker thread) and cudaBackward (device pointers).
#include <napi.h>

#include <string>

#include "binding/util.h"
#include "core/dispatch.h"

namespace ssd { namespace addon {
namespace {

constexpr char kWorkerName[] = "ssd-kernels:backward";

}  // namespace

void register_backward(Napi::Env env, Napi::Object exports) {
  export_operation<read_backward_call, prefault_and_run<ssd::backward_cpu, BackwardCall>, kWorkerName,
                   ssd::cuda_backward_workspace_bytes, ssd::backward_cuda>(
      env, exports, "backwardSync", "backward", "cudaBackward");
}

}}  // namespace ssd::addon
