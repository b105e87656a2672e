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

SsdStatus run_cpu(const Call& call, std::string* error) {
  prefault(call.params.y, call.y_bytes);
  prefault(call.params.y_ungated, call.yu_bytes);
  prefault(call.params.final_states, call.states_bytes);
  prefault(call.params.varlen_states, call.varlen_bytes);
  return ssd::forward_cpu(call.params, call.threads, error);
}

Napi::Value ForwardSync(const Napi::CallbackInfo& info) {
  Call call = read_call(args_object(info), kInPlace);
  std::string error;
  SsdStatus status = run_cpu(call, &error);
  if (status != SSD_OK) throw status_error(info.Env(), status, error);
  return info.Env().Undefined();
}

Napi::Value Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object args = args_object(info);
  auto staging = std::make_unique<Staging>(args.Get("names"));
  Call call = read_call(args, Source{false, staging.get()});
  auto* worker = new CpuWorker(env, args, "ssd-kernels:forward", std::move(staging),
                               [call](std::string* error) { return run_cpu(call, error); });
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// cudaForward(args, device): Promise. Tensors in args are BigInt device pointers.
Napi::Value CudaForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object args = args_object(info);
  int device = read_device(env, info[1]);
  require_cuda(env);
  const SsdParams params = read_call(args, kOnDevice).params;
  return submit_with_promise(env, device, args, [params, device](void* stream) {
    return with_workspace(device, ssd::cuda_workspace_bytes(params), [&](void* workspace) -> ssd::device::Result {
      std::string message;
      const SsdStatus s = ssd::forward_cuda(params, stream, workspace, &message);
      return {s, message};
    });
  });
}

}  // namespace

void register_forward(Napi::Env env, Napi::Object exports) {
  export_functions(env, exports, {
      {"forwardSync", ForwardSync},
      {"forward", Forward},
      {"cudaForward", CudaForward},
  });
}

}}  // namespace ssd::addon
