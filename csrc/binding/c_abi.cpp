// The C ABI (include/ssd_kernels.h, "The function table"). Entries never throw and never abort: each
// checks its arguments in full (core/params.h: the block, then every stride and alignment; then
// where the memory lives), runs the CPU path or enqueues the CUDA kernels, and leaves a thread-local message on failure.
#include "binding/c_abi.h"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <new>
#include <string>

#include "device/device.h"
#include "core/dispatch.h"
#include "core/dtype.h"
#include "core/params.h"

namespace ssd {
namespace abi {

namespace {

// Trivially destructible, so it needs no thread-exit hook.
thread_local char t_last_error[1024];

SsdStatus fail(SsdStatus status, const std::string& message) {
  std::snprintf(t_last_error, sizeof t_last_error, "%s", message.c_str());
  return status;
}

// A pointer of a block with its name, for checks that look at each one.
struct Pointer {
  const char* name;
  const void* ptr;
};
constexpr int kMaxPointers = 32;  // more than any block has

// The non-null pointers of `all` into out; how many.
int present(std::initializer_list<Pointer> all, Pointer* out) {
  int n = 0;
  for (const Pointer& q : all) {
    if (q.ptr) out[n++] = q;
  }
  return n;
}

int pointers(const SsdParams& p, Pointer* out) {
  return present({{"x", p.x}, {"dt", p.dt}, {"A", p.A}, {"B", p.B}, {"C", p.C}, {"D", p.D}, {"z", p.z},
                  {"dt_bias", p.dt_bias}, {"initial_states", p.initial_states}, {"seq_idx", p.seq_idx},
                  {"y", p.y}, {"final_states", p.final_states}, {"cu_seqlens", p.cu_seqlens},
                  {"varlen_states", p.varlen_states}, {"y_ungated", p.y_ungated}},
                 out);
}

int pointers(const SsdBackwardParams& p, Pointer* out) {
  const int n = pointers(p.fwd, out);
  return n + present({{"dy", p.dy}, {"d_final_states", p.d_final_states}, {"dx", p.dx}, {"ddt", p.ddt},
                      {"dA", p.dA}, {"dB", p.dB}, {"dC", p.dC}, {"dD", p.dD}, {"dz", p.dz},
                      {"d_dt_bias", p.d_dt_bias}, {"d_initial_states", p.d_initial_states}},
                     out + n);
}

int pointers(const SsdStepParams& p, Pointer* out) {
  return present({{"state", p.state}, {"state_indices", p.state_indices}, {"x", p.x}, {"dt", p.dt}, {"A", p.A},
                  {"B", p.B}, {"C", p.C}, {"D", p.D}, {"z", p.z}, {"dt_bias", p.dt_bias}, {"y", p.y}},
                 out);
}

const char* ssd_abi_last_error(void) { return t_last_error; }

// The device-side preamble every CUDA entry shares: CUDA usable, the current device (its context
// not lost to an earlier sticky error), and every pointer of `ptrs` on it.
SsdStatus device_preamble(const Pointer* ptrs, int n, int* dev) {
  const device::Availability& a = device::availability();
  if (!a.available) return fail(SSD_ERR_UNSUPPORTED, "CUDA is unavailable: " + a.reason);
  device::Result r = device::current_device(dev);
  if (!r.ok()) return fail(r.status, r.message);
  r = device::usable(*dev);
  if (!r.ok()) return fail(r.status, r.message);
  for (int i = 0; i < n; i++) {
    r = device::check_device_pointer(*dev, ptrs[i].ptr, ptrs[i].name);
    if (r.ok()) continue;
    // CUDA could not tell where the pointer lives: a context lost to a sticky error that no call has
    // met yet answers so too, and is then refused as lost
    device::note_failure(*dev, {SSD_ERR_CUDA, r.message});
    device::Result lost = device::usable(*dev);
    return lost.ok() ? fail(r.status, r.message) : fail(lost.status, lost.message);
  }
  return SSD_OK;
}

// Runs `body(workspace)` with `bytes` of stream-ordered scratch on `stream` (after a fault a test
// armed, if any). A CUDA failure that lost the device's context is noted (device.h, "Lost contexts").
template <class Body>
SsdStatus with_workspace(int dev, size_t bytes, void* stream, Body body) {
  void* workspace = nullptr;
  if (bytes > 0) {
    device::Result r = device::stream_alloc(dev, bytes, stream, &workspace);
    if (!r.ok()) {
      r = device::note_failure(dev, r);
      return fail(r.status, r.message);
    }
  }
  std::string error;
  device::Result injected = device::inject_armed_fault(stream);
  SsdStatus status = injected.ok() ? body(workspace, &error) : injected.status;
  if (!injected.ok()) error = injected.message;
  if (workspace) {
    device::Result r = device::stream_free(workspace, stream);
    if (status == SSD_OK && !r.ok()) {
      status = r.status;
      error = r.message;
    }
  }
  if (status == SSD_OK) return SSD_OK;
  device::Result noted = device::note_failure(dev, {status, error});
  return fail(noted.status, noted.message);
}

SsdStatus check_memory(SsdMemory memory) {
  if (memory == SSD_MEMORY_HOST || memory == SSD_MEMORY_CUDA) return SSD_OK;
  return fail(SSD_ERR_INVALID_ARGUMENT, "memory: expected SSD_MEMORY_HOST (0) or SSD_MEMORY_CUDA (1) but received " +
                                            std::to_string(int(memory)));
}

// One operation of the table: its block's check (core/params.h) and its two paths.
template <class Params>
struct Operation {
  const char* block;  // the parameter type, for messages
  SsdStatus (*check)(const Params&, std::string*);
  SsdStatus (*check_layout)(const Params&, std::string*);
  SsdStatus (*run_cpu)(const Params&, int threads, std::string*);
  size_t (*workspace_bytes)(const Params&);
  SsdStatus (*run_cuda)(const Params&, void* stream, void* workspace, std::string*);
};

// Every entry: the block present, the memory kind known, the block and its layout checked; then the
// CPU path on host memory, or on CUDA memory every pointer checked on the current device and the
// kernels enqueued with their workspace. Never throws.
template <class Params>
SsdStatus run(const Operation<Params>& op, const Params* params, SsdMemory memory, void* stream) {
  t_last_error[0] = '\0';
  try {
    if (!params) {
      return fail(SSD_ERR_INVALID_ARGUMENT, std::string("params: expected a pointer to an ") + op.block + " block but received NULL");
    }
    if (check_memory(memory) != SSD_OK) return SSD_ERR_INVALID_ARGUMENT;
    const Params& p = *params;
    std::string error;
    SsdStatus status = op.check(p, &error);
    if (status == SSD_OK) status = op.check_layout(p, &error);
    if (status != SSD_OK) return fail(status, error);
    if (memory == SSD_MEMORY_HOST) {
      status = op.run_cpu(p, 0, &error);
      return status == SSD_OK ? SSD_OK : fail(status, error);
    }
    Pointer ptrs[kMaxPointers];
    const int n = pointers(p, ptrs);
    int dev = 0;
    if ((status = device_preamble(ptrs, n, &dev)) != SSD_OK) return status;
    return with_workspace(dev, op.workspace_bytes(p), stream,
                          [&](void* ws, std::string* err) { return op.run_cuda(p, stream, ws, err); });
  } catch (const std::bad_alloc&) {
    return fail(SSD_ERR_OUT_OF_MEMORY, "out of host memory");
  } catch (...) {
    return fail(SSD_ERR_INTERNAL, "internal error");
  }
}

// The C ABI's step takes no verdict on state indices (the kernels still refuse to write past them).
SsdStatus step_cuda_unchecked(const SsdStepParams& p, void* stream, void* workspace, std::string* error) {
  return step_cuda(p, stream, workspace, nullptr, error);
}

const Operation<SsdParams> kForward = {"SsdParams", check_params, check_layout, forward_cpu,
                                       cuda_workspace_bytes, forward_cuda};
const Operation<SsdBackwardParams> kBackward = {"SsdBackwardParams", check_backward_params, check_backward_layout,
                                                backward_cpu, cuda_backward_workspace_bytes, backward_cuda};
const Operation<SsdStepParams> kStep = {"SsdStepParams", check_step_params, check_step_layout, step_cpu,
                                        cuda_step_workspace_bytes, step_cuda_unchecked};

SsdStatus ssd_abi_forward(const SsdParams* params, SsdMemory memory, void* stream) { return run(kForward, params, memory, stream); }

SsdStatus ssd_abi_backward(const SsdBackwardParams* params, SsdMemory memory, void* stream) {
  return run(kBackward, params, memory, stream);
}

SsdStatus ssd_abi_step(const SsdStepParams* params, SsdMemory memory, void* stream) { return run(kStep, params, memory, stream); }

const SsdApi kApi = {
    SSD_KERNELS_ABI_VERSION,
    sizeof(SsdApi),
    SSD_KERNELS_VERSION,
    &ssd_abi_last_error,
    &ssd_abi_forward,
    &ssd_abi_backward,
    &ssd_abi_step,
};

const napi_type_tag kTag = SSD_KERNELS_NAPI_TYPE_TAG;

}  // namespace

const SsdApi* table() { return &kApi; }

Napi::Value GetNativeApi(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  // The table is immutable; the External only lends its address.
  Napi::External<SsdApi> external = Napi::External<SsdApi>::New(env, const_cast<SsdApi*>(&kApi));
  napi_status status = napi_type_tag_object(env, external, &kTag);
  if (status != napi_ok) throw Napi::Error::New(env, "getNativeApi: could not type-tag the External");
  return external;
}

}  // namespace abi
}  // namespace ssd
