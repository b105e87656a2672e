// Device memory and what the backends can do: cudaAlloc, cudaRelease, cudaCopy, cudaMemoryStats,
// cudaResetPeak, cudaEmptyCache, backends and cudaSupports; cudaInjectFault (tests only).
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "binding/util.h"
#include "core/dispatch.h"
#include "cpu/cpu_backend.h"
#include "device/device.h"

namespace ssd { namespace addon {
namespace {

Napi::Value CudaAlloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int device = read_device(env, info[0]);
  if (!info[1].IsNumber()) throw Napi::TypeError::New(env, "Expected a byte count");
  double bytes = info[1].As<Napi::Number>().DoubleValue();
  if (!(bytes >= 0 && bytes <= 9.0e15)) throw Napi::RangeError::New(env, "Expected a byte count in [0, 2^53)");
  void* ptr = nullptr;
  ssd::device::Result r = ssd::device::allocate(device, size_t(bytes), &ptr);
  if (!r.ok()) throw status_error(env, r.status, r.message);
  return Napi::BigInt::New(env, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(ptr)));
}

void CudaRelease(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int device = read_device(env, info[0]);
  ssd::device::release(device, read_pointer(env, info[1], "ptr"));
}

// cudaCopy(device, ptr, typedArray, toDevice, name?): Promise. The host side is staged (staging.h):
// an upload copies an array on an ArrayBuffer on this thread and the device reads the copy; a
// download lands in a copy that is written into the array once the copy is done, unless the array
// was detached meanwhile (ERR_SSD_DETACHED naming `name`). Arrays on a SharedArrayBuffer are used
// in place.
Napi::Value CudaCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int device = read_device(env, info[0]);
  void* ptr = read_pointer(env, info[1], "ptr");
  if (!info[2].IsTypedArray()) throw Napi::TypeError::New(env, "Expected a TypedArray");
  const bool to_device = info[3].ToBoolean().Value();
  const HostArray array = host_array(env, info[2]);
  if (array.element_bytes == 0) throw Napi::TypeError::New(env, "Expected a TypedArray of an element type N-API names");
  if (array.detached) throw Napi::TypeError::New(env, "Expected a TypedArray but received one whose ArrayBuffer is detached (transferred)");
  Napi::Object names = Napi::Object::New(env);
  if (info.Length() > 4 && info[4].IsString()) names.Set("host", info[4]);
  auto staging = std::make_unique<Staging>(names);
  void* host = array.bytes > 0 ? staging->add(env, info[2], array, "host", to_device ? Access::In : Access::Out) : nullptr;
  const size_t bytes = array.bytes;
  Napi::Object keep = Napi::Object::New(env);
  keep.Set("array", info[2]);
  return submit_with_promise(
      env, device, keep,
      [=](void* stream) {
        if (bytes == 0) return ssd::device::Result{};
        return to_device ? ssd::device::copy_async(ptr, host, bytes, true, stream)
                         : ssd::device::copy_async(host, ptr, bytes, false, stream);
      },
      nullptr, std::move(staging));
}

// cudaDownload(device, ptr, bytes): Promise<ArrayBuffer>, a copy of `bytes` of device memory in a
// new ArrayBuffer. It is made here and no JavaScript reaches it before the Promise resolves with it,
// so the copy lands in it directly (no staging).
Napi::Value CudaDownload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int device = read_device(env, info[0]);
  void* ptr = read_pointer(env, info[1], "ptr");
  const double bytes = info[2].IsNumber() ? info[2].As<Napi::Number>().DoubleValue() : -1;
  if (!(bytes >= 0 && bytes <= 9.0e15) || std::floor(bytes) != bytes) {
    throw Napi::RangeError::New(env, "Expected a byte count in [0, 2^53)");
  }
  uint8_t* dst = nullptr;
  Napi::ArrayBuffer buffer = new_buffer(env, size_t(bytes), "the host copy", &dst);
  auto result = std::make_shared<Napi::ObjectReference>(Napi::Persistent(Napi::Object(buffer)));
  const size_t n = size_t(bytes);
  return submit_with_promise(
      env, device, buffer,
      [=](void* stream) { return n == 0 ? ssd::device::Result{} : ssd::device::copy_async(dst, ptr, n, false, stream); },
      [result](Napi::Env) -> Napi::Value { return result->Value(); });
}

Napi::Value CudaMemoryStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int device = read_device(env, info[0]);
  ssd::device::MemoryStats m = ssd::device::memory_stats(device);
  Napi::Object out = Napi::Object::New(env);
  out.Set("inUse", double(m.in_use));
  out.Set("cached", double(m.cached));
  out.Set("peakInUse", double(m.peak_in_use));
  return out;
}

void CudaResetPeak(const Napi::CallbackInfo& info) { ssd::device::reset_peak(read_device(info.Env(), info[0])); }

void CudaEmptyCache(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ssd::device::Result r = ssd::device::empty_cache(read_device(env, info[0]));
  if (!r.ok()) throw status_error(env, r.status, r.message);
}

Napi::Value Backends(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object cpu = Napi::Object::New(env);
  cpu.Set("isa", ssd::cpu::isa_name(ssd::cpu::active_isa()));
  cpu.Set("bestIsa", ssd::cpu::isa_name(ssd::cpu::best_isa()));
  cpu.Set("threads", ssd::cpu::default_threads());
  const ssd::device::Availability& a = ssd::device::availability();
  Napi::Object cuda = Napi::Object::New(env);
  cuda.Set("compiled", a.compiled);
  cuda.Set("available", a.available);
  cuda.Set("reason", a.reason);
  cuda.Set("devices", a.devices);
  Napi::Object result = Napi::Object::New(env);
  result.Set("cpu", cpu);
  result.Set("cuda", cuda);
  return result;
}

// cudaSupports(op, query) -> { ok, reason }: whether the CUDA kernels take a call of these sizes and
// dtypes ('forward', 'backward' or 'step'; query: { dims, xType, dtType, BType, CType, zType?,
// stateType? } and the call's options, dims and options as in the call's own arguments). Device 'auto' asks this before it
// sends host tensors to the GPU. The answer says nothing of the tensors' values or of the device.
Napi::Value CudaSupports(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject()) {
    throw Napi::TypeError::New(env, "Expected (op: 'forward' | 'backward' | 'step', query: object)");
  }
  const std::string op = info[0].As<Napi::String>().Utf8Value();
  Napi::Object q = info[1].As<Napi::Object>();
  Napi::Value dims_value = q.Get("dims");
  if (!dims_value.IsArray()) throw Napi::TypeError::New(env, "Expected an array for query.dims");
  Napi::Array dims = dims_value.As<Napi::Array>();
  std::vector<int64_t> d;
  for (uint32_t i = 0; i < dims.Length(); ++i) d.push_back(read_size(env, dims.Get(i), "query.dims"));
  auto dtype = [&](const char* name) { return q.Get(name).IsNumber() ? read_dtype(q, name) : SSD_FLOAT32; };
  bool ok = false;
  std::string why;
  if (op == "step") {
    if (d.size() != 5) throw Napi::RangeError::New(env, "Expected 5 query.dims for 'step' (batch, nheads, headdim, ngroups, dstate)");
    SsdStepParams p{};
    p.batch = d[0]; p.nheads = d[1]; p.headdim = d[2]; p.ngroups = d[3]; p.dstate = d[4]; p.state_rows = d[0];
    p.x_type = dtype("xType"); p.dt_type = dtype("dtType"); p.B_type = dtype("BType"); p.C_type = dtype("CType");
    p.z_type = dtype("zType"); p.y_type = p.x_type; p.state_type = dtype("stateType");
    read_options(q, Option::kStep, &p, true);
    ok = ssd::cuda_supports_step(p, &why);
  } else if (op == "forward" || op == "backward") {
    if (d.size() != 6) throw Napi::RangeError::New(env, "Expected 6 query.dims (batch, seqlen, nheads, headdim, ngroups, dstate)");
    SsdParams p{};
    p.batch = d[0]; p.seqlen = d[1]; p.nheads = d[2]; p.headdim = d[3]; p.ngroups = d[4]; p.dstate = d[5];
    read_options(q, Option::kForward, &p, true);
    p.x_type = dtype("xType"); p.dt_type = dtype("dtType"); p.B_type = dtype("BType"); p.C_type = dtype("CType");
    p.z_type = dtype("zType"); p.y_type = p.x_type;
    ok = ssd::cuda_supports(p, &why);
  } else {
    throw Napi::TypeError::New(env, "Expected op 'forward', 'backward' or 'step' but received '" + op + "'");
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("ok", ok);
  out.Set("reason", ok ? std::string() : why);
  return out;
}

// cudaInjectFault(kind): for tests only (device/device.h, "Fault injection"): makes the next CUDA
// operation fail ('trap', 'launch' or 'alloc'). Throws unless the process started with
// SSD_KERNELS_FAULT_INJECT=1, so that nothing else can arm it.
void CudaInjectFault(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "Expected a fault kind: 'trap', 'launch' or 'alloc'");
  ssd::device::Result r = ssd::device::arm_fault(info[0].As<Napi::String>().Utf8Value());
  if (!r.ok()) throw status_error(env, r.status, r.message);
}

}  // namespace

void register_device(Napi::Env env, Napi::Object exports) {
  export_functions(env, exports, {
      {"backends", Backends},
      {"cudaSupports", CudaSupports},
      {"cudaAlloc", CudaAlloc},
      {"cudaRelease", void_entry<CudaRelease>},
      {"cudaCopy", CudaCopy},
      {"cudaDownload", CudaDownload},
      {"cudaMemoryStats", CudaMemoryStats},
      {"cudaResetPeak", void_entry<CudaResetPeak>},
      {"cudaEmptyCache", void_entry<CudaEmptyCache>},
      {"cudaInjectFault", void_entry<CudaInjectFault>},
  });
}

}}  // namespace ssd::addon
