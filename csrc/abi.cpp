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
                         {"y", p.y},           {"final_states", p.final_states}};
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
  Pointer ptrs[12];
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

const SsdApi kApi = {
    SSD_KERNELS_ABI_VERSION,
    sizeof(SsdApi),
    SSD_KERNELS_VERSION,
    &ssd_abi_last_error,
    &ssd_abi_forward,
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
  if (!check_view("x", x, hd, false, error) || !check_view("y", y, hd, true, error) ||
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
                 {"seq_idx", p.seq_idx, 4},            {"final_states", p.final_states, 4}};
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
