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

SsdStatus run_backward_cpu(const BackwardCall& call, std::string* error) {
  prefault(call.params.dx, call.x_bytes[0]);
  prefault(call.params.dz, call.x_bytes[1]);
  prefault(call.params.dB, call.x_bytes[2]);
  prefault(call.params.dC, call.x_bytes[2]);
  return ssd::backward_cpu(call.params, call.threads, error);
}

Napi::Value BackwardSync(const Napi::CallbackInfo& info) {
  BackwardCall call = read_backward_call(args_object(info), kInPlace);
  std::string error;
  SsdStatus status = run_backward_cpu(call, &error);
  if (status != SSD_OK) throw status_error(info.Env(), status, error);
  return info.Env().Undefined();
}

Napi::Value Backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object args = args_object(info);
  auto staging = std::make_unique<Staging>(args.Get("names"));
  BackwardCall call = read_backward_call(args, Source{false, staging.get()});
  auto* worker = new CpuWorker(env, args, "ssd-kernels:backward", std::move(staging),
                               [call](std::string* error) { return run_backward_cpu(call, error); });
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// cudaBackward(args, device): the backward on device pointers (BigInts); a Promise that settles when
// the GPU is done.
Napi::Value CudaBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object args = args_object(info);
  int device = read_device(env, info[1]);
  require_cuda(env);
  const SsdBackwardParams params = read_backward_call(args, kOnDevice).params;
  return submit_with_promise(env, device, args, [params, device](void* stream) {
    return with_workspace(device, ssd::cuda_backward_workspace_bytes(params), [&](void* workspace) -> ssd::device::Result {
      std::string message;
      const SsdStatus s = ssd::backward_cuda(params, stream, workspace, &message);
      return {s, message};
    });
  });
}

}  // namespace

void register_backward(Napi::Env env, Napi::Object exports) {
  export_functions(env, exports, {
      {"backwardSync", BackwardSync},
      {"backward", Backward},
      {"cudaBackward", CudaBackward},
  });
}

}}  // namespace ssd::addon
