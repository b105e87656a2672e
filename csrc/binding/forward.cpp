// The forward: forwardSync (the calling thread), forward (a CPU worker thread, a Promise) and
// cudaForward (device pointers, the device's worker thread).
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

constexpr char kWorkerName[] = "ssd-kernels:forward";

Call read_host(Napi::Object args, const Source& src) { return read_call(args, src); }
SsdParams read_on_device(Napi::Object args) { return read_call(args, kOnDevice).params; }

SsdStatus run_cpu(const Call& call, std::string* error) {
  const SsdParams& p = call.params;
  prefault({{p.y, call.y_bytes}, {p.y_ungated, call.yu_bytes}, {p.final_states, call.states_bytes}, {p.varlen_states, call.varlen_bytes}});
  return ssd::forward_cpu(p, call.threads, error);
}

}  // namespace

void register_forward(Napi::Env env, Napi::Object exports) {
  export_functions(env, exports, {
      {"forwardSync", cpu_entry<read_host, run_cpu, false, kWorkerName>},
      {"forward", cpu_entry<read_host, run_cpu, true, kWorkerName>},
      {"cudaForward", cuda_entry<read_on_device, ssd::cuda_workspace_bytes, ssd::forward_cuda>},
  });
}

}}  // namespace ssd::addon
