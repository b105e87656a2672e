// The C ABI (include/ssd_kernels.h, "The function table"). Entries never throw and never abort: each
// checks its arguments in full (core/params.h: the block, then every stride and alignment; then
// where the memory lives), runs the CPU path or enqueues the CUDA kernels, and leaves a thread-local message on failure.
#include "binding/c_abi.h"

#include <utility>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>

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

// Every pointer of p with its name, for checks that look at each one.
struct Pointer {
  const char* name;
  const void* ptr;
};

int pointers(const SsdParams& p, Pointer* out) {
  const Pointer all[] = {{"x", p.x},           {"dt", p.dt},
                         {"A", p.A},           {"B", p.B},
                         {"C", p.C},           {"D", p.D},
                         {"z", p.z},           {"dt_bias", p.dt_bias},
                         {"initial_states", p.initial_states}, {"seq_idx", p.seq_idx},
                         {"y", p.y},           {"final_states", p.final_states},
                         {"cu_seqlens", p.cu_seqlens}, {"varlen_states", p.varlen_states},
                         {"y_ungated", p.y_ungated}};
  int n = 0;
  for (const Pointer& q : all) {
    if (q.ptr) out[n++] = q;
  }
  return n;
}

SsdStatus forward_device(const SsdParams& p, void* stream);

SsdStatus forward_host(const SsdParams& p) {
  std::string error;
  SsdStatus status = forward_cpu(p, 0, &error);
  return status == SSD_OK ? SSD_OK : fail(status, error);
}

const char* ssd_abi_last_error(void) { return t_last_error; }

SsdStatus ssd_abi_forward(const SsdParams* params, SsdMemory memory, void* stream) {
  t_last_error[0] = '\0';
  try {
    if (!params) return fail(SSD_ERR_INVALID_ARGUMENT, "params: expected a pointer to an SsdParams block but received NULL");
    if (memory != SSD_MEMORY_HOST && memory != SSD_MEMORY_CUDA) {
      return fail(SSD_ERR_INVALID_ARGUMENT, "memory: expected SSD_MEMORY_HOST (0) or SSD_MEMORY_CUDA (1) but received " +
                                                std::to_string(int(memory)));
    }
    const SsdParams& p = *params;
    std::string error;
    SsdStatus status = check_params(p, &error);
    if (status == SSD_OK) status = check_layout(p, &error);
    if (status != SSD_OK) return fail(status, error);
    return memory == SSD_MEMORY_HOST ? forward_host(p) : forward_device(p, stream);
  } catch (const std::bad_alloc&) {
    return fail(SSD_ERR_OUT_OF_MEMORY, "out of host memory");
  } catch (...) {
    return fail(SSD_ERR_INTERNAL, "internal error");
  }
}

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

SsdStatus forward_device(const SsdParams& p, void* stream) {
  Pointer ptrs[15];
  const int n = pointers(p, ptrs);
  int dev = 0;
  SsdStatus status = device_preamble(ptrs, n, &dev);
  if (status != SSD_OK) return status;
  return with_workspace(dev, cuda_workspace_bytes(p), stream,
                        [&](void* ws, std::string* err) { return forward_cuda(p, stream, ws, err); });
}

SsdStatus check_memory(SsdMemory memory) {
  if (memory == SSD_MEMORY_HOST || memory == SSD_MEMORY_CUDA) return SSD_OK;
  return fail(SSD_ERR_INVALID_ARGUMENT, "memory: expected SSD_MEMORY_HOST (0) or SSD_MEMORY_CUDA (1) but received " +
                                            std::to_string(int(memory)));
}

SsdStatus ssd_abi_backward(const SsdBackwardParams* params, SsdMemory memory, void* stream) {
  t_last_error[0] = '\0';
  try {
    if (!params) return fail(SSD_ERR_INVALID_ARGUMENT, "params: expected a pointer to an SsdBackwardParams block but received NULL");
    if (check_memory(memory) != SSD_OK) return SSD_ERR_INVALID_ARGUMENT;
    const SsdBackwardParams& p = *params;
    const SsdParams& f = p.fwd;
    std::string error;
    SsdStatus status = check_backward_params(p, &error);
    if (status != SSD_OK) return fail(status, error);
    if ((status = check_backward_layout(p, &error)) != SSD_OK) return fail(status, error);
    if (memory == SSD_MEMORY_HOST) {
      status = backward_cpu(p, 0, &error);
      return status == SSD_OK ? SSD_OK : fail(status, error);
    }
    Pointer ptrs[24];
    int np = pointers(f, ptrs);
    const Pointer grads[] = {{"dy", p.dy}, {"d_final_states", p.d_final_states}, {"dx", p.dx}, {"ddt", p.ddt},
                             {"dA", p.dA}, {"dB", p.dB}, {"dC", p.dC}, {"dD", p.dD}, {"dz", p.dz},
                             {"d_dt_bias", p.d_dt_bias}, {"d_initial_states", p.d_initial_states}};
    for (const Pointer& g2 : grads) {
      if (g2.ptr) ptrs[np++] = g2;
    }
    int dev = 0;
    if ((status = device_preamble(ptrs, np, &dev)) != SSD_OK) return status;
    return with_workspace(dev, cuda_backward_workspace_bytes(p), stream,
                          [&](void* ws, std::string* err) { return backward_cuda(p, stream, ws, err); });
  } catch (const std::bad_alloc&) {
    return fail(SSD_ERR_OUT_OF_MEMORY, "out of host memory");
  } catch (...) {
    return fail(SSD_ERR_INTERNAL, "internal error");
  }
}

SsdStatus ssd_abi_step(const SsdStepParams* params, SsdMemory memory, void* stream) {
  t_last_error[0] = '\0';
  try {
    if (!params) return fail(SSD_ERR_INVALID_ARGUMENT, "params: expected a pointer to an SsdStepParams block but received NULL");
    if (check_memory(memory) != SSD_OK) return SSD_ERR_INVALID_ARGUMENT;
    const SsdStepParams& p = *params;
    std::string error;
    SsdStatus status = check_step_params(p, &error);
    if (status != SSD_OK) return fail(status, error);
    if ((status = check_step_layout(p, &error)) != SSD_OK) return fail(status, error);
    if (memory == SSD_MEMORY_HOST) {
      status = step_cpu(p, 0, &error);
      return status == SSD_OK ? SSD_OK : fail(status, error);
    }
    const Pointer all[] = {{"state", p.state}, {"state_indices", p.state_indices}, {"x", p.x}, {"dt", p.dt},
                           {"A", p.A}, {"B", p.B}, {"C", p.C}, {"D", p.D}, {"z", p.z}, {"dt_bias", p.dt_bias}, {"y", p.y}};
    Pointer ptrs[11];
    int np = 0;
    for (const Pointer& q : all) {
      if (q.ptr) ptrs[np++] = q;
    }
    int dev = 0;
    if ((status = device_preamble(ptrs, np, &dev)) != SSD_OK) return status;
    return with_workspace(dev, cuda_step_workspace_bytes(p), stream,
                          [&](void* ws, std::string* err) { return step_cuda(p, stream, ws, nullptr, err); });
  } catch (const std::bad_alloc&) {
    return fail(SSD_ERR_OUT_OF_MEMORY, "out of host memory");
  } catch (...) {
    return fail(SSD_ERR_INTERNAL, "internal error");
  }
}

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
