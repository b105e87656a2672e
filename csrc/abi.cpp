// The C ABI (include/ssd_kernels.h, "The function table"). Entries never throw and never abort: each
// checks its arguments in full (check_params, then every stride, alignment and where the memory
// lives), runs the CPU path or enqueues the CUDA kernels, and leaves a thread-local message on failure.
#include "abi.h"

#include <utility>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>

#include "device/device.h"
#include "dispatch.h"

namespace ssd {
namespace abi {

namespace {

// Trivially destructible, so it needs no thread-exit hook.
thread_local char t_last_error[1024];

SsdStatus fail(SsdStatus status, const std::string& message) {
  std::snprintf(t_last_error, sizeof t_last_error, "%s", message.c_str());
  return status;
}

int64_t element_size(SsdDtype t) { return t == SSD_FLOAT32 ? 4 : 2; }

struct Dim {
  const char* letter;
  int64_t extent, stride;
};

// A tensor view: `outer` strided dimensions over `inner` contiguous elements. Dimensions of extent 1
// are never stepped, so their strides are not looked at. Checks strides >= 0, the last element's
// offset within int64 (with room), and when `exclusive` that no two index tuples share an element.
template <int N>
bool check_view(const char* name, const Dim (&outer)[N], int64_t inner, bool exclusive, std::string* error) {
  Dim dims[N];
  int m = 0;
  int64_t last = inner - 1;  // offset of the last element
  for (int i = 0; i < N; i++) {
    if (outer[i].extent == 1) continue;
    if (outer[i].stride < 0) {
      *error = std::string(name) + ": expected a stride >= 0 for dimension " + outer[i].letter + " but received " +
               std::to_string(outer[i].stride);
      return false;
    }
    int64_t step = 0;
    if (__builtin_mul_overflow(outer[i].extent - 1, outer[i].stride, &step) ||
        __builtin_add_overflow(last, step, &last) || last > (int64_t(1) << 60)) {
      *error = std::string(name) + ": strides reach past 64-bit offsets";
      return false;
    }
    dims[m++] = outer[i];
  }
  if (!exclusive) return true;
  // Sorted by stride, each dimension must step over everything the smaller ones reach.
  for (int i = 1; i < m; i++) {
    for (int j = i; j > 0 && dims[j].stride < dims[j - 1].stride; j--) std::swap(dims[j], dims[j - 1]);
  }
  int64_t reach = inner;  // elements spanned by the contiguous dimension and the dims before
  for (int i = 0; i < m; i++) {
    if (dims[i].stride < reach) {
      *error = std::string(name) + ": strides overlap (dimension " + dims[i].letter + " has stride " +
               std::to_string(dims[i].stride) + ", below the " + std::to_string(reach) +
               " elements the smaller dimensions span); every output element needs its own memory";
      return false;
    }
    reach = dims[i].stride * (dims[i].extent - 1) + reach;
  }
  return true;
}

bool check_aligned(const char* name, const void* ptr, int64_t bytes, std::string* error) {
  if (!ptr || reinterpret_cast<uintptr_t>(ptr) % uintptr_t(bytes) == 0) return true;
  *error = std::string(name) + ": expected a pointer aligned to its " + std::to_string(bytes) + "-byte elements";
  return false;
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

SsdStatus forward_host(const SsdParams& p) {
  std::string error;
  SsdStatus status = forward_cpu(p, 0, &error);
  return status == SSD_OK ? SSD_OK : fail(status, error);
}

SsdStatus forward_device(const SsdParams& p, void* stream) {
  const device::Availability& a = device::availability();
  if (!a.available) return fail(SSD_ERR_UNSUPPORTED, "CUDA is unavailable: " + a.reason);
  int dev = 0;
  device::Result r = device::current_device(&dev);
  if (!r.ok()) return fail(r.status, r.message);
  Pointer ptrs[15];
  const int n = pointers(p, ptrs);
  for (int i = 0; i < n; i++) {
    r = device::check_device_pointer(dev, ptrs[i].ptr, ptrs[i].name);
    if (!r.ok()) return fail(r.status, r.message);
  }
  void* workspace = nullptr;
  const size_t bytes = cuda_workspace_bytes(p);
  if (bytes > 0) {
    r = device::stream_alloc(dev, bytes, stream, &workspace);
    if (!r.ok()) return fail(r.status, r.message);
  }
  std::string error;
  SsdStatus status = forward_cuda(p, stream, workspace, &error);
  // Stream-ordered: the pool hands the block out again only after the kernels above are done with it.
  if (workspace) {
    r = device::stream_free(workspace, stream);
    if (status == SSD_OK && !r.ok()) return fail(r.status, r.message);
  }
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

// The device-side preamble every CUDA entry shares: CUDA usable, the current device, and every
// pointer of `ptrs` on it.
SsdStatus device_preamble(const Pointer* ptrs, int n, int* dev) {
  const device::Availability& a = device::availability();
  if (!a.available) return fail(SSD_ERR_UNSUPPORTED, "CUDA is unavailable: " + a.reason);
  device::Result r = device::current_device(dev);
  if (!r.ok()) return fail(r.status, r.message);
  for (int i = 0; i < n; i++) {
    r = device::check_device_pointer(*dev, ptrs[i].ptr, ptrs[i].name);
    if (!r.ok()) return fail(r.status, r.message);
  }
  return SSD_OK;
}

// Runs `body(workspace)` with `bytes` of stream-ordered scratch on `stream`.
template <class Body>
SsdStatus with_workspace(int dev, size_t bytes, void* stream, Body body) {
  void* workspace = nullptr;
  if (bytes > 0) {
    device::Result r = device::stream_alloc(dev, bytes, stream, &workspace);
    if (!r.ok()) return fail(r.status, r.message);
  }
  std::string error;
  SsdStatus status = body(workspace, &error);
  if (workspace) {
    device::Result r = device::stream_free(workspace, stream);
    if (status == SSD_OK && !r.ok()) return fail(r.status, r.message);
  }
  return status == SSD_OK ? SSD_OK : fail(status, error);
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
    // The forward's views with dx in y's place (an exclusive output view), then the other gradients.
    SsdParams q = f;
    q.y = p.dx; q.y_type = p.dx_type;
    q.y_batch_stride = p.dx_batch_stride; q.y_seq_stride = p.dx_seq_stride; q.y_head_stride = p.dx_head_stride;
    q.final_states = nullptr;
    if ((status = check_layout(q, &error)) != SSD_OK) return fail(status, "dx/" + error);
    const int64_t b = f.batch, L = f.seqlen, h = f.nheads, hd = f.headdim, g = f.ngroups, n = f.dstate;
    const Dim dy[] = {{"b", b, p.dy_batch_stride}, {"L", L, p.dy_seq_stride}, {"h", h, p.dy_head_stride}};
    const Dim dz[] = {{"b", b, p.dz_batch_stride}, {"L", L, p.dz_seq_stride}, {"h", h, p.dz_head_stride}};
    const Dim ddt[] = {{"b", b, p.ddt_batch_stride}, {"L", L, p.ddt_seq_stride}};
    const Dim dB[] = {{"b", b, p.dB_batch_stride}, {"L", L, p.dB_seq_stride}, {"g", g, p.dB_group_stride}};
    const Dim dC[] = {{"b", b, p.dC_batch_stride}, {"L", L, p.dC_seq_stride}, {"g", g, p.dC_group_stride}};
    if (!check_view("dy", dy, hd, false, &error) || (p.dz && !check_view("dz", dz, hd, true, &error)) ||
        !check_view("ddt", ddt, h, true, &error) || !check_view("dB", dB, n, true, &error) ||
        !check_view("dC", dC, n, true, &error)) {
      return fail(SSD_ERR_INVALID_ARGUMENT, error);
    }
    const struct {
      const char* name;
      const void* ptr;
      int64_t bytes;
    } aligned[] = {{"dy", p.dy, element_size(p.dy_type)},   {"ddt", p.ddt, element_size(p.ddt_type)},
                   {"dB", p.dB, element_size(p.dB_type)},   {"dC", p.dC, element_size(p.dC_type)},
                   {"dz", p.dz, element_size(p.dz_type)},   {"dA", p.dA, 4},
                   {"dD", p.dD, 4},                         {"d_dt_bias", p.d_dt_bias, 4},
                   {"d_initial_states", p.d_initial_states, 4}, {"d_final_states", p.d_final_states, 4}};
    for (const auto& a : aligned) {
      if (!check_aligned(a.name, a.ptr, a.bytes, &error)) return fail(SSD_ERR_INVALID_ARGUMENT, error);
    }
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
    const int64_t b = p.batch, h = p.nheads, hd = p.headdim, g = p.ngroups, n = p.dstate;
    const Dim x[] = {{"b", b, p.x_batch_stride}, {"h", h, p.x_head_stride}};
    const Dim y[] = {{"b", b, p.y_batch_stride}, {"h", h, p.y_head_stride}};
    const Dim z[] = {{"b", b, p.z_batch_stride}, {"h", h, p.z_head_stride}};
    const Dim dt[] = {{"b", b, p.dt_batch_stride}};
    const Dim B[] = {{"b", b, p.B_batch_stride}, {"g", g, p.B_group_stride}};
    const Dim C[] = {{"b", b, p.C_batch_stride}, {"g", g, p.C_group_stride}};
    if (!check_view("x", x, hd, false, &error) || !check_view("y", y, hd, true, &error) ||
        (p.z && !check_view("z", z, hd, false, &error)) || !check_view("dt", dt, h, false, &error) ||
        !check_view("B", B, n, false, &error) || !check_view("C", C, n, false, &error)) {
      return fail(SSD_ERR_INVALID_ARGUMENT, error);
    }
    const struct {
      const char* name;
      const void* ptr;
      int64_t bytes;
    } aligned[] = {{"state", p.state, element_size(p.state_type)}, {"x", p.x, element_size(p.x_type)},
                   {"dt", p.dt, element_size(p.dt_type)},          {"B", p.B, element_size(p.B_type)},
                   {"C", p.C, element_size(p.C_type)},             {"z", p.z, element_size(p.z_type)},
                   {"y", p.y, element_size(p.y_type)},             {"A", p.A, 4},
                   {"D", p.D, 4},                                  {"dt_bias", p.dt_bias, 4},
                   {"state_indices", p.state_indices, 4}};
    for (const auto& a : aligned) {
      if (!check_aligned(a.name, a.ptr, a.bytes, &error)) return fail(SSD_ERR_INVALID_ARGUMENT, error);
    }
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

SsdStatus check_layout(const SsdParams& p, std::string* error) {
  const int64_t b = p.batch, L = p.seqlen, h = p.nheads, hd = p.headdim, g = p.ngroups, n = p.dstate;
  const Dim x[] = {{"b", b, p.x_batch_stride}, {"L", L, p.x_seq_stride}, {"h", h, p.x_head_stride}};
  const Dim y[] = {{"b", b, p.y_batch_stride}, {"L", L, p.y_seq_stride}, {"h", h, p.y_head_stride}};
  const Dim z[] = {{"b", b, p.z_batch_stride}, {"L", L, p.z_seq_stride}, {"h", h, p.z_head_stride}};
  const Dim dt[] = {{"b", b, p.dt_batch_stride}, {"L", L, p.dt_seq_stride}};
  const Dim B[] = {{"b", b, p.B_batch_stride}, {"L", L, p.B_seq_stride}, {"g", g, p.B_group_stride}};
  const Dim C[] = {{"b", b, p.C_batch_stride}, {"L", L, p.C_seq_stride}, {"g", g, p.C_group_stride}};
  const Dim seq[] = {{"b", b, p.seq_idx_batch_stride}};
  const Dim yu[] = {{"b", b, p.y_ungated_batch_stride}, {"L", L, p.y_ungated_seq_stride}, {"h", h, p.y_ungated_head_stride}};
  if (!check_view("x", x, hd, false, error) || !check_view("y", y, hd, true, error) ||
      (p.y_ungated && !check_view("y_ungated", yu, hd, true, error)) ||
      (p.z && !check_view("z", z, hd, false, error)) || !check_view("dt", dt, h, false, error) ||
      !check_view("B", B, n, false, error) || !check_view("C", C, n, false, error) ||
      (p.seq_idx && !check_view("seq_idx", seq, L, false, error))) {
    return SSD_ERR_INVALID_ARGUMENT;
  }
  if (p.D_per_channel != 0 && p.D_per_channel != 1) {
    *error = "D_per_channel: expected 0 (D is (h)) or 1 (D is (h, p)) but received " + std::to_string(p.D_per_channel);
    return SSD_ERR_INVALID_ARGUMENT;
  }
  const struct {
    const char* name;
    const void* ptr;
    int64_t bytes;
  } aligned[] = {{"x", p.x, element_size(p.x_type)},   {"dt", p.dt, element_size(p.dt_type)},
                 {"B", p.B, element_size(p.B_type)},   {"C", p.C, element_size(p.C_type)},
                 {"z", p.z, element_size(p.z_type)},   {"y", p.y, element_size(p.y_type)},
                 {"A", p.A, 4},                        {"D", p.D, 4},
                 {"dt_bias", p.dt_bias, 4},            {"initial_states", p.initial_states, 4},
                 {"seq_idx", p.seq_idx, 4},            {"final_states", p.final_states, 4},
                 {"y_ungated", p.y_ungated, element_size(p.y_ungated_type)}};
  for (const auto& a : aligned) {
    if (!check_aligned(a.name, a.ptr, a.bytes, error)) return SSD_ERR_INVALID_ARGUMENT;
  }
  return SSD_OK;
}

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
