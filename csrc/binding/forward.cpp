// The forward: forwardSync (the calling thread), forward (a CPU worker thread, a Promise) and
// cudaForward (device pointers, the device's worker thread).
#include <napi.h>

#include <string>

#include "binding/util.h"
#include "core/dispatch.h"

namespace ssd { namespace addon {
namespace {

constexpr char kWorkerName[] = "ssd-kernels:forward";

// The forward's call, its outputs included (read_call).
Call read_forward_call(Napi::Object args, const Source& src) { return read_call(args, src); }

}  // namespace

void register_forward(Napi::Env env, Napi::Object exports) {
  export_operation<read_forward_call, prefault_and_run<ssd::forward_cpu, Call>, kWorkerName, ssd::cuda_workspace_bytes,
                   ssd::forward_cuda>(env, exports, "forwardSync", "forward", "cudaForward");
}

}}  // namespace ssd::addon
