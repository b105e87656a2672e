// The N-API binding: reads the argument object that lib/native.ts describes, re-checks it cheaply
// (types, byte lengths against sizes, int32 ranges), fills one SsdParams and hands it to the
// dispatcher, on the calling thread (forwardSync) or on a worker thread (forward, a Promise).
#include <napi.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>
#include <string>

#include "binding/c_abi.h"
#include "binding/util.h"
#include "cpu/cpu_backend.h"
#include "device/device.h"
#include "core/dispatch.h"
#include "ssd_kernels.h"

// Argument readers shared with the other binding files (addon_util.h).
namespace ssd { namespace addon {

const char* status_code(SsdStatus s) {
  switch (s) {
    case SSD_OK: return "OK";
    case SSD_ERR_INVALID_ARGUMENT: return "ERR_SSD_INVALID_ARGUMENT";
    case SSD_ERR_OUT_OF_MEMORY: return "ERR_SSD_OUT_OF_MEMORY";
    case SSD_ERR_UNSUPPORTED: return "ERR_SSD_UNSUPPORTED";
    case SSD_ERR_CUDA: return "ERR_SSD_CUDA";
    default: return "ERR_SSD_INTERNAL";
  }
}

Napi::Error status_error(Napi::Env env, SsdStatus status, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, status_code(status)));
  return err;
}

int64_t element_size(SsdDtype t) { return t == SSD_FLOAT32 ? 4 : 2; }

// Reads args[name] as a TypedArray of exactly `elements` elements of `dtype` and returns its data.
// Absent (null/undefined) is allowed when `optional`.
// On a device call (`on_device`), tensors arrive as BigInt device pointers whose sizes the
// TypeScript layer checked against the tensors' dims.
const void* read_buffer(Napi::Object args, const char* name, SsdDtype dtype, int64_t elements, bool optional,
                        bool on_device) {
  Napi::Env env = args.Env();
  Napi::Value v = args.Get(name);
  if (v.IsNull() || v.IsUndefined()) {
    if (optional) return nullptr;
    throw Napi::TypeError::New(env, std::string("Expected a TypedArray for ") + name + " but received nothing");
  }
  if (on_device) {
    if (!v.IsBigInt()) throw Napi::TypeError::New(env, std::string("Expected a device pointer (BigInt) for ") + name);
    bool lossless = false;
    uint64_t address = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless || address == 0) throw Napi::RangeError::New(env, std::string("Expected a nonzero 64-bit device pointer for ") + name);
    return reinterpret_cast<const void*>(static_cast<uintptr_t>(address));
  }
  if (!v.IsTypedArray()) throw Napi::TypeError::New(env, std::string("Expected a TypedArray for ") + name);
  Napi::TypedArray array = v.As<Napi::TypedArray>();
  const int64_t expected = elements * element_size(dtype);
  if (int64_t(array.ByteLength()) != expected) {
    throw Napi::RangeError::New(env, std::string("Expected ") + std::to_string(expected) + " bytes for " + name +
                                         " but received " + std::to_string(array.ByteLength()));
  }
  if (int64_t(array.ElementSize()) != element_size(dtype)) {
    throw Napi::TypeError::New(env, std::string("Expected ") + std::to_string(element_size(dtype)) +
                                        "-byte elements for " + name);
  }
  return static_cast<const uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
}

SsdDtype read_dtype(Napi::Object args, const char* name) {
  Napi::Value v = args.Get(name);
  if (!v.IsNumber()) throw Napi::TypeError::New(args.Env(), std::string("Expected a dtype code for ") + name);
  int32_t code = v.As<Napi::Number>().Int32Value();
  if (code < 0 || code > 2) throw Napi::RangeError::New(args.Env(), std::string("Unknown dtype code for ") + name);
  return SsdDtype(code);
}

int64_t read_size(Napi::Env env, Napi::Value v, const char* name) {
  if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string("Expected a number for ") + name);
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 1 && d <= 2147483647.0) || std::floor(d) != d) {
    throw Napi::RangeError::New(env, std::string("Expected an integer in [1, 2^31-1] for ") + name);
  }
  return int64_t(d);
}

}}  // namespace ssd::addon

namespace {

using namespace ssd::addon;

struct Call {
  SsdParams params{};
  int threads = 0;
  size_t y_bytes = 0;       // host output sizes, for prefault()
  size_t yu_bytes = 0;
  size_t states_bytes = 0;
  size_t varlen_bytes = 0;
};

// Output arrays fresh from V8 are untouched pages: writing them one page fault at a time costs more
// than the scan itself on some (virtualised) machines. One madvise populates them in bulk; where
// the kernel lacks MADV_POPULATE_WRITE (Linux < 5.14) this is a no-op and faults happen as before.
void prefault(void* data, size_t bytes) {
#if defined(__linux__)
  if (bytes < (size_t(1) << 20)) return;
  const uintptr_t page = 4096;
  uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + page - 1) & ~(page - 1);
  uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(page - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, 23 /* MADV_POPULATE_WRITE */);
#else
  (void)data;
  (void)bytes;
#endif
}

SsdStatus run_cpu(const Call& call, std::string* error) {
  prefault(call.params.y, call.y_bytes);
  prefault(call.params.y_ungated, call.yu_bytes);
  prefault(call.params.final_states, call.states_bytes);
  prefault(call.params.varlen_states, call.varlen_bytes);
  return ssd::forward_cpu(call.params, call.threads, error);
}

// Reads the forward's argument object; without `outputs`, y and finalStates are not read (a backward call).
Call read_call(Napi::Object args, bool on_device, bool outputs = true) {
  Napi::Env env = args.Env();
  Call call;
  SsdParams& p = call.params;
  Napi::Value dims_value = args.Get("dims");
  if (!dims_value.IsArray() || dims_value.As<Napi::Array>().Length() != 6) {
    throw Napi::TypeError::New(env, "Expected dims [batch, seqlen, nheads, headdim, ngroups, dstate]");
  }
  Napi::Array dims = dims_value.As<Napi::Array>();
  p.batch = read_size(env, dims.Get(0u), "batch");
  p.seqlen = read_size(env, dims.Get(1u), "seqlen");
  p.nheads = read_size(env, dims.Get(2u), "nheads");
  p.headdim = read_size(env, dims.Get(3u), "headdim");
  p.ngroups = read_size(env, dims.Get(4u), "ngroups");
  p.dstate = read_size(env, dims.Get(5u), "dstate");
  p.chunk_size = read_size(env, args.Get("chunkSize"), "chunkSize");
  if (p.nheads % p.ngroups != 0) throw Napi::RangeError::New(env, "ngroups must divide nheads");

  const int64_t b = p.batch, L = p.seqlen, h = p.nheads, hd = p.headdim, g = p.ngroups, n = p.dstate;
  const int64_t x_elems = b * L * h * hd, bc_elems = b * L * g * n, state_elems = b * h * hd * n;

  p.x_type = read_dtype(args, "xType");
  p.x = read_buffer(args, "x", p.x_type, x_elems, false, on_device);
  p.x_batch_stride = L * h * hd; p.x_seq_stride = h * hd; p.x_head_stride = hd;

  p.dt_type = read_dtype(args, "dtType");
  p.dt = read_buffer(args, "dt", p.dt_type, b * L * h, false, on_device);
  p.dt_batch_stride = L * h; p.dt_seq_stride = h;

  p.A = static_cast<const float*>(read_buffer(args, "A", SSD_FLOAT32, h, false, on_device));

  p.B_type = read_dtype(args, "BType");
  p.B = read_buffer(args, "B", p.B_type, bc_elems, false, on_device);
  p.C_type = read_dtype(args, "CType");
  p.C = read_buffer(args, "C", p.C_type, bc_elems, false, on_device);
  p.B_batch_stride = p.C_batch_stride = L * g * n;
  p.B_seq_stride = p.C_seq_stride = g * n;
  p.B_group_stride = p.C_group_stride = n;

  p.D_per_channel = args.Get("dPerChannel").ToBoolean().Value() ? 1 : 0;
  p.D = static_cast<const float*>(read_buffer(args, "D", SSD_FLOAT32, p.D_per_channel ? h * hd : h, true, on_device));

  p.z_type = read_dtype(args, "zType");
  p.z = read_buffer(args, "z", p.z_type, x_elems, true, on_device);
  p.z_batch_stride = p.x_batch_stride; p.z_seq_stride = p.x_seq_stride; p.z_head_stride = p.x_head_stride;

  p.dt_bias = static_cast<const float*>(read_buffer(args, "dtBias", SSD_FLOAT32, h, true, on_device));
  // the pre-gate output: written by the forward, read by the backward (optional, only with z)
  Napi::Value yu = args.Get("yUngated");
  if (!yu.IsNull() && !yu.IsUndefined()) {
    if (!p.z) throw Napi::TypeError::New(env, "Expected no yUngated without z");
    p.y_ungated_type = read_dtype(args, "yUngatedType");
    p.y_ungated = const_cast<void*>(read_buffer(args, "yUngated", p.y_ungated_type, x_elems, false, on_device));
    p.y_ungated_batch_stride = p.x_batch_stride; p.y_ungated_seq_stride = p.x_seq_stride;
    p.y_ungated_head_stride = p.x_head_stride;
  }
  p.initial_states = static_cast<const float*>(read_buffer(args, "initialStates", SSD_FLOAT32, state_elems, true, on_device));

  Napi::Value seq_idx = args.Get("seqIdx");
  if (!seq_idx.IsNull() && !seq_idx.IsUndefined()) {
    if (!on_device && (!seq_idx.IsTypedArray() || seq_idx.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)) {
      throw Napi::TypeError::New(env, "Expected an Int32Array for seqIdx");
    }
    // int32 elements are 4 bytes, like float32: the byte-length check is the same.
    p.seq_idx = static_cast<const int32_t*>(read_buffer(args, "seqIdx", SSD_FLOAT32, b * L, false, on_device));
    p.seq_idx_batch_stride = L;
  }

  p.dt_softplus = args.Get("dtSoftplus").ToBoolean().Value() ? 1 : 0;
  Napi::Value lo = args.Get("dtMin"), hi = args.Get("dtMax");
  if (!lo.IsNumber() || !hi.IsNumber()) throw Napi::TypeError::New(env, "Expected numbers for dtMin and dtMax");
  p.dt_min = float(lo.As<Napi::Number>().DoubleValue());
  p.dt_max = float(hi.As<Napi::Number>().DoubleValue());
  if (!(p.dt_min <= p.dt_max)) throw Napi::RangeError::New(env, "Expected dtMin <= dtMax, neither NaN");

  if (outputs) {
    p.y_type = read_dtype(args, "yType");
    p.y = const_cast<void*>(read_buffer(args, "y", p.y_type, x_elems, false, on_device));
    p.y_batch_stride = p.x_batch_stride; p.y_seq_stride = p.x_seq_stride; p.y_head_stride = p.x_head_stride;
    p.final_states = static_cast<float*>(const_cast<void*>(read_buffer(args, "finalStates", SSD_FLOAT32, state_elems, true, on_device)));
  }

  Napi::Value cu_seqlens = args.Get("cuSeqlens");
  if (!cu_seqlens.IsNull() && !cu_seqlens.IsUndefined()) {
    if (!on_device && (!cu_seqlens.IsTypedArray() || cu_seqlens.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)) {
      throw Napi::TypeError::New(env, "Expected an Int32Array for cuSeqlens");
    }
    if (b != 1) throw Napi::RangeError::New(env, "Expected batch 1 with cuSeqlens");
    p.num_seqs = read_size(env, args.Get("numSeqs"), "numSeqs");
    p.cu_seqlens = static_cast<const int32_t*>(read_buffer(args, "cuSeqlens", SSD_FLOAT32, p.num_seqs + 1, false, on_device));
    p.varlen_states = static_cast<float*>(const_cast<void*>(
        read_buffer(args, "varlenStates", SSD_FLOAT32, p.num_seqs * h * hd * n, true, on_device)));
  } else {
    Napi::Value varlen = args.Get("varlenStates");
    if (!varlen.IsNull() && !varlen.IsUndefined()) throw Napi::TypeError::New(env, "Expected cuSeqlens with varlenStates");
  }

  Napi::Value threads = args.Get("threads");
  if (!threads.IsNumber()) throw Napi::TypeError::New(env, "Expected a number for threads");
  double t = threads.As<Napi::Number>().DoubleValue();
  if (!(t >= 0 && t <= 1024)) throw Napi::RangeError::New(env, "Expected threads in [0, 1024]");
  call.threads = int(t);
  call.y_bytes = outputs ? size_t(x_elems * element_size(p.y_type)) : 0;
  call.yu_bytes = (outputs && p.y_ungated) ? size_t(x_elems * element_size(p.y_ungated_type)) : 0;
  call.states_bytes = p.final_states ? size_t(state_elems * 4) : 0;
  call.varlen_bytes = p.varlen_states ? size_t(p.num_seqs * h * hd * n * 4) : 0;
  // The one check of the parameter contract (core/params.h), before any backend sees the block.
  std::string error;
  const SsdStatus status = outputs ? ssd::check_params(p, &error) : SSD_OK;
  if (status != SSD_OK) throw status_error(env, status, error);
  return call;
}

Napi::Object args_object(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(info.Env(), "Expected an argument object");
  return info[0].As<Napi::Object>();
}

Napi::Value ForwardSync(const Napi::CallbackInfo& info) {
  Call call = read_call(args_object(info), false);
  std::string error;
  SsdStatus status = run_cpu(call, &error);
  if (status != SSD_OK) throw status_error(info.Env(), status, error);
  return info.Env().Undefined();
}

// Runs one CPU call (`run`, a forward or a backward) on a libuv worker thread. The argument object
// (and through it every input and output buffer) stays referenced until the Promise settles.
class CpuWorker : public Napi::AsyncWorker {
 public:
  CpuWorker(Napi::Env env, Napi::Object args, const char* name, std::function<SsdStatus(std::string*)> run)
      : Napi::AsyncWorker(env, name),
        deferred_(Napi::Promise::Deferred::New(env)),
        args_(Napi::Persistent(args)),
        run_(std::move(run)) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override { status_ = run_(&error_); }

  void OnOK() override {
    Napi::Env env = Env();
    if (status_ == SSD_OK) {
      deferred_.Resolve(env.Undefined());
    } else {
      deferred_.Reject(status_error(env, status_, error_).Value());
    }
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference args_;
  std::function<SsdStatus(std::string*)> run_;
  SsdStatus status_ = SSD_OK;
  std::string error_;
};

Napi::Value Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object args = args_object(info);
  Call call = read_call(args, false);
  auto* worker = new CpuWorker(env, args, "ssd-kernels:forward", [call](std::string* error) { return run_cpu(call, error); });
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// ---- The backward on the CPU: backwardSync(args) and backward(args) (a Promise) ---------------------

struct BackwardCall {
  SsdBackwardParams params{};
  int threads = 0;
  size_t x_bytes[3] = {0, 0, 0};  // dx, dz and dB + dC: host output sizes, for prefault()
};

// The forward's argument fields (minus y and finalStates) plus dy, dFinalStates and the gradient
// outputs: dx (x's type), ddt (dt's), dA (float32), dB (B's), dC (C's), dD (float32, only with D),
// dz (z's, only with z), dDtBias and dInitialStates (float32, optional).
BackwardCall read_backward_call(Napi::Object args, bool on_device = false) {
  Napi::Env env = args.Env();
  BackwardCall call;
  Call fwd = read_call(args, on_device, false);
  call.threads = fwd.threads;
  SsdBackwardParams& q = call.params;
  q.fwd = fwd.params;
  const SsdParams& p = q.fwd;
  const int64_t b = p.batch, L = p.seqlen, h = p.nheads, hd = p.headdim, g = p.ngroups, n = p.dstate;
  const int64_t x_elems = b * L * h * hd, bc_elems = b * L * g * n, state_elems = b * h * hd * n;

  q.dy_type = read_dtype(args, "dyType");
  q.dy = read_buffer(args, "dy", q.dy_type, x_elems, false, on_device);
  q.dy_batch_stride = p.x_batch_stride; q.dy_seq_stride = p.x_seq_stride; q.dy_head_stride = p.x_head_stride;
  q.d_final_states = static_cast<const float*>(read_buffer(args, "dFinalStates", SSD_FLOAT32, state_elems, true, on_device));

  auto output = [&](const char* name, SsdDtype t, int64_t elems, bool optional) {
    return const_cast<void*>(read_buffer(args, name, t, elems, optional, on_device));
  };
  q.dx_type = p.x_type;
  q.dx = output("dx", q.dx_type, x_elems, false);
  q.dx_batch_stride = p.x_batch_stride; q.dx_seq_stride = p.x_seq_stride; q.dx_head_stride = p.x_head_stride;
  q.ddt_type = p.dt_type;
  q.ddt = output("ddt", q.ddt_type, b * L * h, false);
  q.ddt_batch_stride = p.dt_batch_stride; q.ddt_seq_stride = p.dt_seq_stride;
  q.dA = static_cast<float*>(output("dA", SSD_FLOAT32, h, false));
  q.dB_type = p.B_type;
  q.dB = output("dB", q.dB_type, bc_elems, false);
  q.dB_batch_stride = p.B_batch_stride; q.dB_seq_stride = p.B_seq_stride; q.dB_group_stride = p.B_group_stride;
  q.dC_type = p.C_type;
  q.dC = output("dC", q.dC_type, bc_elems, false);
  q.dC_batch_stride = p.C_batch_stride; q.dC_seq_stride = p.C_seq_stride; q.dC_group_stride = p.C_group_stride;
  q.dD = static_cast<float*>(output("dD", SSD_FLOAT32, p.D_per_channel ? h * hd : h, true));
  if (q.dD && !p.D) throw Napi::TypeError::New(env, "Expected no dD without D");
  q.dz_type = p.z_type;
  q.dz = output("dz", q.dz_type, x_elems, true);
  if (q.dz && !p.z) throw Napi::TypeError::New(env, "Expected no dz without z");
  q.dz_batch_stride = p.x_batch_stride; q.dz_seq_stride = p.x_seq_stride; q.dz_head_stride = p.x_head_stride;
  q.d_dt_bias = static_cast<float*>(output("dDtBias", SSD_FLOAT32, h, true));
  q.d_initial_states = static_cast<float*>(output("dInitialStates", SSD_FLOAT32, state_elems, true));

  call.x_bytes[0] = size_t(x_elems * element_size(q.dx_type));
  call.x_bytes[1] = q.dz ? size_t(x_elems * element_size(q.dz_type)) : 0;
  call.x_bytes[2] = size_t(bc_elems * element_size(q.dB_type));
  std::string error;
  const SsdStatus status = ssd::check_backward_params(q, &error);
  if (status != SSD_OK) throw status_error(env, status, error);
  return call;
}

SsdStatus run_backward_cpu(const BackwardCall& call, std::string* error) {
  prefault(call.params.dx, call.x_bytes[0]);
  prefault(call.params.dz, call.x_bytes[1]);
  prefault(call.params.dB, call.x_bytes[2]);
  prefault(call.params.dC, call.x_bytes[2]);
  return ssd::backward_cpu(call.params, call.threads, error);
}

Napi::Value BackwardSync(const Napi::CallbackInfo& info) {
  BackwardCall call = read_backward_call(args_object(info));
  std::string error;
  SsdStatus status = run_backward_cpu(call, &error);
  if (status != SSD_OK) throw status_error(info.Env(), status, error);
  return info.Env().Undefined();
}

Napi::Value Backward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object args = args_object(info);
  BackwardCall call = read_backward_call(args);
  auto* worker = new CpuWorker(env, args, "ssd-kernels:backward",
                               [call](std::string* error) { return run_backward_cpu(call, error); });
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}


// ---- CUDA: device memory, copies and the forward, each settling a Promise -------------------------


int read_device(Napi::Env env, Napi::Value v) {
  if (!v.IsNumber()) throw Napi::TypeError::New(env, "Expected a device index (number)");
  int32_t d = v.As<Napi::Number>().Int32Value();
  if (d < 0 || d > 1023) throw Napi::RangeError::New(env, "Expected a device index in [0, 1023]");
  return d;
}

void* read_pointer(Napi::Env env, Napi::Value v, const char* name) {
  if (!v.IsBigInt()) throw Napi::TypeError::New(env, std::string("Expected a BigInt device pointer for ") + name);
  bool lossless = false;
  uint64_t address = v.As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless || address == 0) throw Napi::RangeError::New(env, std::string("Expected a nonzero 64-bit pointer for ") + name);
  return reinterpret_cast<void*>(static_cast<uintptr_t>(address));
}

// Submits `job` to the device's worker thread and returns a Promise that settles on the JS thread
// (through a thread-safe function) once the GPU work is complete. `keep` stays referenced until then.
// On success the Promise resolves with value(env) (undefined when no value function is given).
using ValueFn = std::function<Napi::Value(Napi::Env)>;

// One thread-safe function per environment carries every completion back to the JS thread
// (creating and closing one per call costs more than a small step). It holds the event loop open
// only while some Promise is pending.
struct Completions {
  Napi::ThreadSafeFunction tsfn;
  size_t pending = 0;  // touched on the JS thread only
};

Completions& completions(Napi::Env env) {
  Completions* c = env.GetInstanceData<Completions>();
  if (!c) {
    c = new Completions();
    c->tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}),
                                            "ssd-kernels:cuda", 0, 1);
    c->tsfn.Unref(env);
    env.SetInstanceData(c);  // deleted with the environment; Node closes the function then
  }
  return *c;
}

Napi::Promise submit_with_promise(Napi::Env env, int device, Napi::Object keep, ssd::device::Job job,
                                  ValueFn value = nullptr) {
  struct Pending {
    Napi::Promise::Deferred deferred;
    Napi::ObjectReference keep;
    ssd::device::Result result;
    ValueFn value;
  };
  Completions& done = completions(env);
  auto* pending = new Pending{Napi::Promise::Deferred::New(env), Napi::Persistent(keep), {}, std::move(value)};
  Napi::Promise promise = pending->deferred.Promise();
  if (done.pending++ == 0) done.tsfn.Ref(env);
  Napi::ThreadSafeFunction tsfn = done.tsfn;
  ssd::device::submit(device, std::move(job), [pending, tsfn](const ssd::device::Result& r) mutable {
    pending->result = r;
    tsfn.BlockingCall([pending](Napi::Env env, Napi::Function) {
      std::unique_ptr<Pending> owned(pending);
      Completions& done = completions(env);
      if (--done.pending == 0) done.tsfn.Unref(env);
      if (owned->result.ok()) {
        owned->deferred.Resolve(owned->value ? owned->value(env) : env.Undefined());
      } else {
        owned->deferred.Reject(status_error(env, owned->result.status, owned->result.message).Value());
      }
    });
  });
  return promise;
}

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

Napi::Value CudaRelease(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int device = read_device(env, info[0]);
  ssd::device::release(device, read_pointer(env, info[1], "ptr"));
  return env.Undefined();
}

// cudaCopy(device, ptr, typedArray, toDevice): Promise
Napi::Value CudaCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int device = read_device(env, info[0]);
  void* ptr = read_pointer(env, info[1], "ptr");
  if (!info[2].IsTypedArray()) throw Napi::TypeError::New(env, "Expected a TypedArray");
  Napi::TypedArray array = info[2].As<Napi::TypedArray>();
  bool to_device = info[3].ToBoolean().Value();
  void* host = static_cast<uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
  size_t bytes = array.ByteLength();
  Napi::Object keep = Napi::Object::New(env);
  keep.Set("array", array);
  return submit_with_promise(env, device, keep, [=](void* stream) {
    return to_device ? ssd::device::copy_async(ptr, host, bytes, true, stream)
                     : ssd::device::copy_async(host, ptr, bytes, false, stream);
  });
}

// The parameter block of a CUDA call (device pointers in args), checked; throws when CUDA cannot run.
SsdParams read_device_params(Napi::Object args) {
  Napi::Env env = args.Env();
  if (!ssd::device::availability().available) {
    throw status_error(env, SSD_ERR_CUDA, "CUDA is unavailable: " + ssd::device::availability().reason);
  }
  return read_call(args, true).params;
}

// cudaForward(args, device): Promise. Tensors in args are BigInt device pointers.
Napi::Value CudaForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object args = args_object(info);
  int device = read_device(env, info[1]);
  const SsdParams params = read_device_params(args);
  return submit_with_promise(env, device, args, [params, device](void* stream) -> ssd::device::Result {
    const size_t bytes = ssd::cuda_workspace_bytes(params);
    void* workspace = nullptr;
    if (bytes > 0) {
      ssd::device::Result r = ssd::device::allocate(device, bytes, &workspace);
      if (!r.ok()) return r;
    }
    std::string message;
    SsdStatus s = ssd::forward_cuda(params, stream, workspace, &message);
    ssd::device::release(device, workspace);  // stream-ordered: later work on this stream may reuse it
    return {s, message};
  });
}

// cudaStep(args, device): the decode step on device pointers (BigInts), in place on the state; a
// Promise that settles when the GPU is done. stateIndices live on the device: the kernels check them
// before writing, and the verdict is read back here (after the step's own synchronisation on the
// worker thread) so that a bad index rejects with the same message as on the CPU.
Napi::Value CudaStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object args = args_object(info);
  int device = read_device(env, info[1]);
  if (!ssd::device::availability().available) {
    throw status_error(env, SSD_ERR_CUDA, "CUDA is unavailable: " + ssd::device::availability().reason);
  }
  int threads = 0;
  const SsdStepParams params = ssd::addon::read_step_params(args, true, &threads);
  return submit_with_promise(env, device, args, [params, device](void* stream) -> ssd::device::Result {
    const size_t bytes = ssd::cuda_step_workspace_bytes(params);
    void* workspace = nullptr;
    if (bytes > 0) {
      ssd::device::Result r = ssd::device::allocate(device, bytes, &workspace);
      if (!r.ok()) return r;
    }
    int verdict[2] = {0, -1};
    std::string message;
    SsdStatus s = ssd::step_cuda(params, stream, workspace, params.state_indices ? verdict : nullptr, &message);
    if (s == SSD_OK && params.state_indices) {
      ssd::device::Result r = ssd::device::synchronize(stream);
      if (!r.ok()) {
        ssd::device::release(device, workspace);
        return r;
      }
      if (verdict[0] != 0) {
        s = SSD_ERR_INVALID_ARGUMENT;
        message = "state_indices[" + std::to_string(verdict[1]) + "] " +
                  (verdict[0] == 1 ? std::string("is past the last state row (") + std::to_string(params.state_rows - 1) + ")"
                                   : std::string("uses a state row that an earlier entry uses too")) +
                  "; nothing was written";
      }
    }
    ssd::device::release(device, workspace);
    return {s, message};
  });
}

// cudaBackward(args, device): the backward on device pointers (BigInts); a Promise that settles when
// the GPU is done.
Napi::Value CudaBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object args = args_object(info);
  int device = read_device(env, info[1]);
  if (!ssd::device::availability().available) {
    throw status_error(env, SSD_ERR_CUDA, "CUDA is unavailable: " + ssd::device::availability().reason);
  }
  const SsdBackwardParams params = read_backward_call(args, true).params;
  return submit_with_promise(env, device, args, [params, device](void* stream) -> ssd::device::Result {
    const size_t bytes = ssd::cuda_backward_workspace_bytes(params);
    void* workspace = nullptr;
    if (bytes > 0) {
      ssd::device::Result r = ssd::device::allocate(device, bytes, &workspace);
      if (!r.ok()) return r;
    }
    std::string message;
    SsdStatus s = ssd::backward_cuda(params, stream, workspace, &message);
    ssd::device::release(device, workspace);
    return {s, message};
  });
}

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
      [device, ms, workspace_bytes, warmup, iters, run](void* stream) -> ssd::device::Result {
        void* workspace = nullptr;
        if (workspace_bytes > 0) {
          ssd::device::Result r = ssd::device::allocate(device, workspace_bytes, &workspace);
          if (!r.ok()) return r;
        }
        ssd::device::Result r = ssd::device::time_on_stream(
            stream,
            [&](void* s) -> ssd::device::Result {
              std::string message;
              SsdStatus st = run(s, workspace, &message);
              return {st, message};
            },
            warmup, iters, ms.get());
        ssd::device::release(device, workspace);
        return r;
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
  if (!ssd::device::availability().available) {
    throw status_error(env, SSD_ERR_CUDA, "CUDA is unavailable: " + ssd::device::availability().reason);
  }
}

Napi::Value CudaTimeForward(const Napi::CallbackInfo& info) {
  check_timing_args(info);
  const SsdParams params = read_device_params(args_object(info));
  return time_on_device(info, ssd::cuda_workspace_bytes(params), [params](void* s, void* ws, std::string* m) {
    return ssd::forward_cuda(params, s, ws, m);
  });
}

Napi::Value CudaTimeStep(const Napi::CallbackInfo& info) {
  check_timing_args(info);
  int threads = 0;
  const SsdStepParams params = ssd::addon::read_step_params(args_object(info), true, &threads);
  if (params.state_indices) throw Napi::TypeError::New(info.Env(), "cudaTimeStep times steps without stateIndices");
  return time_on_device(info, 0, [params](void* s, void*, std::string* m) { return ssd::step_cuda(params, s, nullptr, nullptr, m); });
}

Napi::Value CudaTimeBackward(const Napi::CallbackInfo& info) {
  check_timing_args(info);
  const SsdBackwardParams params = read_backward_call(args_object(info), true).params;
  return time_on_device(info, ssd::cuda_backward_workspace_bytes(params), [params](void* s, void* ws, std::string* m) {
    return ssd::backward_cuda(params, s, ws, m);
  });
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

Napi::Value CudaResetPeak(const Napi::CallbackInfo& info) {
  ssd::device::reset_peak(read_device(info.Env(), info[0]));
  return info.Env().Undefined();
}

Napi::Value CudaEmptyCache(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ssd::device::Result r = ssd::device::empty_cache(read_device(env, info[0]));
  if (!r.ok()) throw status_error(env, r.status, r.message);
  return env.Undefined();
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
// dtypes ('forward', 'backward' or 'step'; query: { dims, chunkSize?, xType, dtType, BType, CType,
// zType?, stateType? }, dims as in the call's own arguments). Device 'auto' asks this before it
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
    ok = ssd::cuda_supports_step(p, &why);
  } else if (op == "forward" || op == "backward") {
    if (d.size() != 6) throw Napi::RangeError::New(env, "Expected 6 query.dims (batch, seqlen, nheads, headdim, ngroups, dstate)");
    SsdParams p{};
    p.batch = d[0]; p.seqlen = d[1]; p.nheads = d[2]; p.headdim = d[3]; p.ngroups = d[4]; p.dstate = d[5];
    p.chunk_size = q.Get("chunkSize").IsNumber() ? q.Get("chunkSize").As<Napi::Number>().Int64Value() : 256;
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

Napi::Value FmaPeakGflops(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    throw Napi::TypeError::New(env, "Expected (threads: number, seconds: number)");
  }
  int threads = info[0].As<Napi::Number>().Int32Value();
  double seconds = info[1].As<Napi::Number>().DoubleValue();
  if (threads < 1 || threads > 1024 || !(seconds > 0 && seconds <= 10)) {
    throw Napi::RangeError::New(env, "Expected threads in [1, 1024] and seconds in (0, 10]");
  }
  return Napi::Number::New(env, ssd::cpu::fma_peak_gflops(threads, seconds));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("abiVersion", Napi::Number::New(env, SSD_KERNELS_ABI_VERSION));
  exports.Set("forwardSync", Napi::Function::New(env, ForwardSync, "forwardSync"));
  exports.Set("forward", Napi::Function::New(env, Forward, "forward"));
  exports.Set("backwardSync", Napi::Function::New(env, BackwardSync, "backwardSync"));
  exports.Set("backward", Napi::Function::New(env, Backward, "backward"));
  exports.Set("backends", Napi::Function::New(env, Backends, "backends"));
  exports.Set("cudaSupports", Napi::Function::New(env, CudaSupports, "cudaSupports"));
  exports.Set("fmaPeakGflops", Napi::Function::New(env, FmaPeakGflops, "fmaPeakGflops"));
  exports.Set("cudaAlloc", Napi::Function::New(env, CudaAlloc, "cudaAlloc"));
  exports.Set("cudaRelease", Napi::Function::New(env, CudaRelease, "cudaRelease"));
  exports.Set("cudaCopy", Napi::Function::New(env, CudaCopy, "cudaCopy"));
  exports.Set("cudaForward", Napi::Function::New(env, CudaForward, "cudaForward"));
  exports.Set("cudaTimeForward", Napi::Function::New(env, CudaTimeForward, "cudaTimeForward"));
  exports.Set("cudaStep", Napi::Function::New(env, CudaStep, "cudaStep"));
  exports.Set("cudaBackward", Napi::Function::New(env, CudaBackward, "cudaBackward"));
  exports.Set("cudaTimeBackward", Napi::Function::New(env, CudaTimeBackward, "cudaTimeBackward"));
  exports.Set("cudaTimeStep", Napi::Function::New(env, CudaTimeStep, "cudaTimeStep"));
  exports.Set("cudaMemoryStats", Napi::Function::New(env, CudaMemoryStats, "cudaMemoryStats"));
  exports.Set("cudaResetPeak", Napi::Function::New(env, CudaResetPeak, "cudaResetPeak"));
  exports.Set("cudaEmptyCache", Napi::Function::New(env, CudaEmptyCache, "cudaEmptyCache"));
  exports.Set("getNativeApi", Napi::Function::New(env, ssd::abi::GetNativeApi, "getNativeApi"));
  ssd::addon::register_step(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(ssd_kernels, Init)
