// Benchmark-only entry points, kept apart from the API's: cudaTimeForward / cudaTimeBackward /
// cudaTimeStep (CUDA events around repeated calls), fmaPeakGflops and rmwBandwidth (the CPU's
// measured FMA rate and memory bandwidth, for the CLI's roofline figures), and cudaSetPath (the
// kernels a direction runs on, for the checks that compare them: lib/cuda-path.ts).
#include <napi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "binding/util.h"
#include "core/dispatch.h"
#include "cpu/cpu_backend.h"
#include "cpu/step_backend.h"
#include "device/device.h"

namespace ssd { namespace addon {
namespace {

// The benchmark timings: cudaTimeForward / cudaTimeStep / cudaTimeBackward(args, device, warmup,
// iters) -> Promise<{ ms: number[], workspaceBytes }>: `warmup` untimed runs, then `iters` runs each
// between two CUDA events on the device's stream. `run(stream, workspace, &message)` is one call.
using TimedRun = std::function<SsdStatus(void* stream, void* workspace, std::string* message)>;

Napi::Value time_on_device(const Napi::CallbackInfo& info, size_t workspace_bytes, TimedRun run) {
  Napi::Env env = info.Env();
  Napi::Object args = args_object(info);
  int device = read_device(env, info[1]);
  auto ms = std::make_shared<std::vector<float>>();
  const int warmup = info[2].As<Napi::Number>().Int32Value(), iters = info[3].As<Napi::Number>().Int32Value();
  return submit_with_promise(
      env, device, args,
      [device, ms, workspace_bytes, warmup, iters, run](void* stream) {
        return with_workspace(device, workspace_bytes, [&](void* workspace) {
          return ssd::device::time_on_stream(
              stream,
              [&](void* s) -> ssd::device::Result {
                std::string message;
                SsdStatus st = run(s, workspace, &message);
                return {st, message};
              },
              warmup, iters, ms.get());
        });
      },
      [ms, workspace_bytes](Napi::Env env) -> Napi::Value {
        Napi::Object out = Napi::Object::New(env);
        Napi::Array times = Napi::Array::New(env, ms->size());
        for (size_t i = 0; i < ms->size(); i++) times.Set(uint32_t(i), double((*ms)[i]));
        out.Set("ms", times);
        out.Set("workspaceBytes", double(workspace_bytes));
        return out;
      });
}

// Checks the timing arguments and that CUDA can run; throws otherwise.
void check_timing_args(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[2].IsNumber() || !info[3].IsNumber()) throw Napi::TypeError::New(env, "Expected warmup and iteration counts");
  const int warmup = info[2].As<Napi::Number>().Int32Value(), iters = info[3].As<Napi::Number>().Int32Value();
  if (warmup < 0 || iters < 1 || warmup > 100000 || iters > 100000) throw Napi::RangeError::New(env, "Expected warmup >= 0 and iterations >= 1");
  require_cuda(env);
}

Napi::Value CudaTimeForward(const Napi::CallbackInfo& info) {
  check_timing_args(info);
  const SsdParams params = read_call(args_object(info), kOnDevice).params;
  return time_on_device(info, ssd::cuda_workspace_bytes(params), [params](void* s, void* ws, std::string* m) {
    return ssd::forward_cuda(params, s, ws, m);
  });
}

Napi::Value CudaTimeStep(const Napi::CallbackInfo& info) {
  check_timing_args(info);
  int threads = 0;
  const SsdStepParams params = ssd::addon::read_step_params(args_object(info), kOnDevice, &threads);
  if (params.state_indices) throw Napi::TypeError::New(info.Env(), "cudaTimeStep times steps without stateIndices");
  return time_on_device(info, 0, [params](void* s, void*, std::string* m) { return ssd::step_cuda(params, s, nullptr, nullptr, m); });
}

Napi::Value CudaTimeBackward(const Napi::CallbackInfo& info) {
  check_timing_args(info);
  const SsdBackwardParams params = read_backward_call(args_object(info), kOnDevice).params;
  return time_on_device(info, ssd::cuda_backward_workspace_bytes(params), [params](void* s, void* ws, std::string* m) {
    return ssd::backward_cuda(params, s, ws, m);
  });
}

// info[0..n-1] as numbers; a TypeError "Expected <usage>" otherwise.
std::vector<Napi::Number> number_args(const Napi::CallbackInfo& info, size_t n, const char* usage) {
  std::vector<Napi::Number> numbers;
  for (size_t i = 0; i < n; i++) {
    if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), std::string("Expected ") + usage);
    numbers.push_back(info[i].As<Napi::Number>());
  }
  return numbers;
}

// fmaPeakGflops(threads, seconds): the measured fp32 FMA rate, GFLOP/s.
Napi::Value FmaPeakGflops(const Napi::CallbackInfo& info) {
  const std::vector<Napi::Number> a = number_args(info, 2, "(threads: number, seconds: number)");
  const int threads = a[0].Int32Value();
  const double seconds = a[1].DoubleValue();
  if (threads < 1 || threads > 1024 || !(seconds > 0 && seconds <= 10)) {
    throw Napi::RangeError::New(info.Env(), "Expected threads in [1, 1024] and seconds in (0, 10]");
  }
  return Napi::Number::New(info.Env(), ssd::cpu::fma_peak_gflops(threads, seconds));
}

// rmwBandwidth(threads, bytes, seconds): GB/s of an in-place read-modify-write sweep of `bytes`.
Napi::Value RmwBandwidth(const Napi::CallbackInfo& info) {
  const std::vector<Napi::Number> a = number_args(info, 3, "(threads: number, bytes: number, seconds: number)");
  const int threads = a[0].Int32Value();
  const double bytes = a[1].DoubleValue();
  const double seconds = a[2].DoubleValue();
  if (threads < 1 || threads > 1024 || !(bytes >= 4096 && bytes <= 64.0 * (1ull << 30)) || !(seconds > 0 && seconds <= 10)) {
    throw Napi::RangeError::New(info.Env(), "Expected threads in [1, 1024], bytes in [4 KiB, 64 GiB] and seconds in (0, 10]");
  }
  return Napi::Number::New(info.Env(), ssd::cpu::rmw_bandwidth_gbps(threads, size_t(bytes), seconds));
}

// cudaSetPath(direction: 'forward' | 'backward', path: 'sm80' | 'sm90' | null): forces the CUDA kernels
// of one direction, or leaves them to its variable again (cuda/backend.h: set_path_override).
void CudaSetPath(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string direction = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  if (direction != "forward" && direction != "backward") {
    throw Napi::TypeError::New(env, "cudaSetPath: expected direction 'forward' or 'backward'");
  }
  const bool cleared = info.Length() < 2 || info[1].IsNull() || info[1].IsUndefined();
  const std::string path = !cleared && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  if (!cleared && path != "sm80" && path != "sm90") throw Napi::TypeError::New(env, "cudaSetPath: expected path 'sm80', 'sm90' or null");
  ssd::cuda_set_path_override(direction == "backward", cleared ? nullptr : path.c_str());
}

}  // namespace

void register_bench(Napi::Env env, Napi::Object exports) {
  export_functions(env, exports, {
      {"cudaTimeForward", CudaTimeForward},
      {"cudaTimeBackward", CudaTimeBackward},
      {"cudaTimeStep", CudaTimeStep},
      {"fmaPeakGflops", FmaPeakGflops},
      {"rmwBandwidth", RmwBandwidth},
      {"cudaSetPath", void_entry<CudaSetPath>},
  });
}

}}  // namespace ssd::addon
