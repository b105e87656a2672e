// What the files of the N-API binding share (util.cpp): argument readers, status errors, the CPU
// worker, the device worker's Promise, and the templates of an operation's CPU and CUDA entries.
#pragma once
#include <napi.h>

#include <array>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "binding/staging.h"
#include "core/params.h"
#include "device/device.h"

#include "ssd_kernels.h"

namespace ssd { namespace addon {

// The SsdError code ("ERR_SSD_...") of a status, and an Error carrying it as `code`.
const char* status_code(SsdStatus s);
Napi::Error status_error(Napi::Env env, SsdStatus status, const std::string& message);

// Where a call's arrays come from and how its work reaches them: BigInt device pointers
// (on_device), or host TypedArrays used in place (a synchronous call: staging null) or staged (an
// asynchronous call: see staging.h).
struct Source {
  bool on_device = false;
  Staging* staging = nullptr;
};
constexpr Source kInPlace{false, nullptr};
constexpr Source kOnDevice{true, nullptr};

// args[name] as a TypedArray of exactly `elements` elements of `dtype` (int32 reads as 4-byte
// elements, like float32) on an ArrayBuffer or a SharedArrayBuffer, or on a device call a nonzero
// BigInt device pointer. Absent (null/undefined) gives nullptr when `optional`, else throws. With
// src.staging, the pointer is the array's staged memory, used as `access` says. An output (access
// Out) given as `true` on a host call is a result in a new ArrayBuffer, which this makes and sets
// as args[name].
const void* read_buffer(Napi::Object args, const char* name, SsdDtype dtype, int64_t elements, bool optional,
                        const Source& src, Access access = Access::In);
SsdDtype read_dtype(Napi::Object args, const char* name);
// An integer in [1, 2^31-1].
int64_t read_size(Napi::Env env, Napi::Value v, const char* name);
// Each option of the option table (core/params.h) that `block` has, from args into the block at
// `params`. A call's arguments (lib/native.ts) hold every one: a number for kInt (read_size) and
// kFloat. A cudaSupports `query` may leave out a number: the option's fallback.
void read_options(Napi::Object args, ssd::Option::Block block, void* params, bool query = false);
// dtMin and dtMax (dtMin <= dtMax, neither NaN).
void read_dt_limits(Napi::Object args, float* lo, float* hi);
// args.threads: a CPU thread count in [0, 1024] (0: the default).
int read_threads(Napi::Object args);
// args.dims: one size per name, in order.
std::vector<int64_t> read_dims(Napi::Object args, std::initializer_list<const char*> names);

// The arguments of a call: the object lib/native.ts builds (its first argument).
Napi::Object args_object(const Napi::CallbackInfo& info);
// A device index in [0, 1023] and a nonzero BigInt device pointer.
int read_device(Napi::Env env, Napi::Value v);
void* read_pointer(Napi::Env env, Napi::Value v, const char* name);
// Throws ERR_SSD_CUDA when CUDA cannot run here.
void require_cuda(Napi::Env env);

// Populates the fresh output pages of one region (data, bytes) in bulk before a CPU kernel writes them.
void prefault(void* data, size_t bytes);

// A call's host outputs, (data, bytes) each, for prefault(); an unused one is (nullptr, 0).
using HostOutputs = std::array<std::pair<void*, size_t>, 4>;

// The forward's block read from its argument object, checked (core/params.h), with its host outputs
// (y, yUngated, finalStates, varlenStates). Without `outputs`, y and finalStates are not read nor
// checked (a backward call).
struct Call {
  SsdParams params{};
  int threads = 0;
  HostOutputs host_outputs{};
};

Call read_call(Napi::Object args, const Source& src, bool outputs = true);

// The backward's block (the forward's fields, dy, dFinalStates and the gradient outputs), checked,
// with its host outputs (dx, dz, dB, dC).
struct BackwardCall {
  SsdBackwardParams params{};
  int threads = 0;
  HostOutputs host_outputs{};
};

BackwardCall read_backward_call(Napi::Object args, const Source& src);

// Runs one CPU call (`run`: a forward, a backward or a step) on a libuv worker thread, on the memory
// `staging` holds (staging.h); the outputs are written back when it succeeds. The argument object
// (and through it every input and output buffer) stays referenced until the Promise settles.
class CpuWorker : public Napi::AsyncWorker {
 public:
  CpuWorker(Napi::Env env, Napi::Object args, const char* name, std::unique_ptr<Staging> staging,
            std::function<SsdStatus(std::string*)> run)
      : Napi::AsyncWorker(env, name),
        deferred_(Napi::Promise::Deferred::New(env)),
        args_(Napi::Persistent(args)),
        staging_(std::move(staging)),
        run_(std::move(run)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override { status_ = run_(&error_); }

  void OnOK() override {
    Napi::Env env = Env();
    std::string detached;
    if (status_ == SSD_OK && staging_ && !staging_->finish(env, &detached)) {
      deferred_.Reject(detached_error(env, detached).Value());
    } else if (status_ == SSD_OK) {
      deferred_.Resolve(env.Undefined());
    } else {
      deferred_.Reject(status_error(env, status_, error_).Value());
    }
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference args_;
  std::unique_ptr<Staging> staging_;
  std::function<SsdStatus(std::string*)> run_;
  SsdStatus status_ = SSD_OK;
  std::string error_;
};


// Submits `job` to the device's worker thread and returns a Promise that settles on the JS thread
// once the GPU work is complete. `keep` (and `staging`, whose memory the job may use) stays alive
// until then. On success the staged outputs are written back (staging.h) and the Promise resolves
// with value(env) (undefined when no value function is given).
using ValueFn = std::function<Napi::Value(Napi::Env)>;
Napi::Promise submit_with_promise(Napi::Env env, int device, Napi::Object keep, ssd::device::Job job,
                                  ValueFn value = nullptr, std::unique_ptr<Staging> staging = nullptr);

// On the device's worker thread: runs body(workspace) with `bytes` of device scratch (none when 0),
// then releases it, stream-ordered (later work on the stream may reuse it).
ssd::device::Result with_workspace(int device, size_t bytes, const std::function<ssd::device::Result(void*)>& body);

// The two ways a CPU call runs: on the calling thread (no `staging`: returns undefined, throws the
// failure) or on a libuv worker thread (a CpuWorker on the memory `staging` holds: returns its
// Promise).
Napi::Value run_on_cpu(Napi::Env env, Napi::Object args, const char* name, std::unique_ptr<Staging> staging,
                       std::function<SsdStatus(std::string*)> run);

// The CPU run of a forward or backward call (cpu_entry's Run): prefaults its host outputs, then
// runs Kernel(call.params, call.threads, error).
template <auto Kernel, class CallType>
SsdStatus prefault_and_run(const CallType& call, std::string* error) {
  for (const auto& [data, bytes] : call.host_outputs) prefault(data, bytes);
  return Kernel(call.params, call.threads, error);
}

// A CPU entry, fooSync(args) (kAsync false) or foo(args) (a Promise): `call = Read(args, source)`
// from host arrays, used in place (kInPlace) or, for an asynchronous call, staged (staging.h); then
// Run(call, &error) on the calling thread or a worker thread named `kName`.
template <auto Read, auto Run, bool kAsync, const char* kName>
Napi::Value cpu_entry(const Napi::CallbackInfo& info) {
  Napi::Object args = args_object(info);
  std::unique_ptr<Staging> staging = kAsync ? std::make_unique<Staging>(args.Get("names")) : nullptr;
  const auto call = Read(args, Source{false, staging.get()});
  return run_on_cpu(info.Env(), args, kName, std::move(staging), [call](std::string* error) { return Run(call, error); });
}

// A CUDA entry, cudaFoo(args, device): a Promise over BigInt device pointers. After the device index
// (info[1]) and CUDA are checked, `params = Read(args, kOnDevice).params`; then, on the device's
// worker thread, Run(params, stream, workspace, &message) with WorkspaceBytes(params) of device scratch.
template <auto Read, auto WorkspaceBytes, auto Run>
Napi::Value cuda_entry(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object args = args_object(info);
  const int device = read_device(env, info[1]);
  require_cuda(env);
  const auto params = Read(args, kOnDevice).params;
  return submit_with_promise(env, device, args, [params, device](void* stream) {
    return with_workspace(device, WorkspaceBytes(params), [&](void* workspace) -> ssd::device::Result {
      std::string message;
      const SsdStatus s = Run(params, stream, workspace, &message);
      return {s, message};
    });
  });
}

using Entry = Napi::Value (*)(const Napi::CallbackInfo&);
// Adds each (name, function) to exports.
void export_functions(Napi::Env env, Napi::Object exports, std::initializer_list<std::pair<const char*, Entry>> entries);

// The Entry of Fn, a function that returns nothing: its calls return undefined.
template <void (*Fn)(const Napi::CallbackInfo&)>
Napi::Value void_entry(const Napi::CallbackInfo& info) {
  Fn(info);
  return info.Env().Undefined();
}

// Adds an operation's three entries to exports: `sync_name` and `async_name`, its CPU entries
// (cpu_entry: Read, then RunCpu, the asynchronous one on a worker thread named kName), and
// `cuda_name`, its CUDA entry (cuda_entry: Read, WorkspaceBytes and RunCuda). `call = Read(args,
// source)` is the call (with its parameter block as `call.params`) from host arrays or device pointers.
template <auto Read, auto RunCpu, const char* kName, auto WorkspaceBytes, auto RunCuda>
void export_operation(Napi::Env env, Napi::Object exports, const char* sync_name, const char* async_name,
                      const char* cuda_name) {
  export_functions(env, exports, {
      {sync_name, cpu_entry<Read, RunCpu, false, kName>},
      {async_name, cpu_entry<Read, RunCpu, true, kName>},
      {cuda_name, cuda_entry<Read, WorkspaceBytes, RunCuda>},
  });
}

// Each binding file adds its functions to the addon's exports (addon.cpp calls these).
void register_forward(Napi::Env env, Napi::Object exports);   // forward.cpp
void register_backward(Napi::Env env, Napi::Object exports);  // backward.cpp
void register_step(Napi::Env env, Napi::Object exports);      // step.cpp
void register_device(Napi::Env env, Napi::Object exports);    // device.cpp
void register_bench(Napi::Env env, Napi::Object exports);     // bench.cpp

// The step's parameter block from its argument object (lib/native.ts, NativeStepArgs): host arrays,
// or BigInt device pointers when src.on_device. Sizes and byte lengths are checked; values (state
// indices) are not. *threads receives the CPU thread count (0: the default).
// With src.staging and a state cache on an ArrayBuffer, only the rows that state indices pick are
// staged, and the block's state, state_rows and state_indices describe that copy.
SsdStepParams read_step_params(Napi::Object args, const Source& src, int* threads);

}}  // namespace ssd::addon
