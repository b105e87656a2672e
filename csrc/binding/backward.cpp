// The backward: backwardSync, backward (a CPU worker thread) and cudaBackward (device pointers).
#include <napi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "binding/util.h"
#include "core/dispatch.h"
#include "device/device.h"

namespace ssd { namespace addon {
namespace {

constexpr char kWorkerName[] = "ssd-kernels:backward";

BackwardCall read_host(Napi::Object args, const Source& src) { return read_backward_call(args, src); }
SsdBackwardParams read_on_device(Napi::Object args) { return read_backward_call(args, kOnDevice).params; }

SsdStatus run_cpu(const BackwardCall& call, std::string* error) {
  const SsdBackwardParams& q = call.params;
  prefault({{q.dx, call.x_bytes[0]}, {q.dz, call.x_bytes[1]}, {q.dB, call.x_bytes[2]}, {q.dC, call.x_bytes[2]}});
  return ssd::backward_cpu(q, call.threads, error);
}

}  // namespace

void register_backward(Napi::Env env, Napi::Object exports) {
  export_functions(env, exports, {
      {"backwardSync", cpu_entry<read_host, run_cpu, false, kWorkerName>},
      {"backward", cpu_entry<read_host, run_cpu, true, kWorkerName>},
      {"cudaBackward", cuda_entry<read_on_device, ssd::cuda_backward_workspace_bytes, ssd::backward_cuda>},
  });
}

}}  // namespace ssd::addon
