// The N-API binding: reads the argument object that lib/native.ts describes, re-checks it cheaply
// (types, byte lengths against sizes, int32 ranges), fills one SsdParams and hands it to the
// dispatcher, on the calling thread (forwardSync) or on a worker thread (forward, a Promise).
#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "cpu/cpu_backend.h"
#include "dispatch.h"
#include "ssd_kernels.h"

namespace {

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
const void* read_buffer(Napi::Object args, const char* name, SsdDtype dtype, int64_t elements, bool optional) {
  Napi::Env env = args.Env();
  Napi::Value v = args.Get(name);
  if (v.IsNull() || v.IsUndefined()) {
    if (optional) return nullptr;
    throw Napi::TypeError::New(env, std::string("Expected a TypedArray for ") + name + " but received nothing");
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

struct Call {
  SsdParams params{};
  int threads = 0;
};

Call read_call(Napi::Object args) {
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
  p.x = read_buffer(args, "x", p.x_type, x_elems, false);
  p.x_batch_stride = L * h * hd; p.x_seq_stride = h * hd; p.x_head_stride = hd;

  p.dt_type = read_dtype(args, "dtType");
  p.dt = read_buffer(args, "dt", p.dt_type, b * L * h, false);
  p.dt_batch_stride = L * h; p.dt_seq_stride = h;

  p.A = static_cast<const float*>(read_buffer(args, "A", SSD_FLOAT32, h, false));

  p.B_type = read_dtype(args, "BType");
  p.B = read_buffer(args, "B", p.B_type, bc_elems, false);
  p.C_type = read_dtype(args, "CType");
  p.C = read_buffer(args, "C", p.C_type, bc_elems, false);
  p.B_batch_stride = p.C_batch_stride = L * g * n;
  p.B_seq_stride = p.C_seq_stride = g * n;
  p.B_group_stride = p.C_group_stride = n;

  p.D_per_channel = args.Get("dPerChannel").ToBoolean().Value() ? 1 : 0;
  p.D = static_cast<const float*>(read_buffer(args, "D", SSD_FLOAT32, p.D_per_channel ? h * hd : h, true));

  p.z_type = read_dtype(args, "zType");
  p.z = read_buffer(args, "z", p.z_type, x_elems, true);
  p.z_batch_stride = p.x_batch_stride; p.z_seq_stride = p.x_seq_stride; p.z_head_stride = p.x_head_stride;

  p.dt_bias = static_cast<const float*>(read_buffer(args, "dtBias", SSD_FLOAT32, h, true));
  p.initial_states = static_cast<const float*>(read_buffer(args, "initialStates", SSD_FLOAT32, state_elems, true));

  Napi::Value seq_idx = args.Get("seqIdx");
  if (!seq_idx.IsNull() && !seq_idx.IsUndefined()) {
    if (!seq_idx.IsTypedArray() || seq_idx.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
      throw Napi::TypeError::New(env, "Expected an Int32Array for seqIdx");
    }
    // int32 elements are 4 bytes, like float32: the byte-length check is the same.
    p.seq_idx = static_cast<const int32_t*>(read_buffer(args, "seqIdx", SSD_FLOAT32, b * L, false));
    p.seq_idx_batch_stride = L;
  }

  p.dt_softplus = args.Get("dtSoftplus").ToBoolean().Value() ? 1 : 0;
  Napi::Value lo = args.Get("dtMin"), hi = args.Get("dtMax");
  if (!lo.IsNumber() || !hi.IsNumber()) throw Napi::TypeError::New(env, "Expected numbers for dtMin and dtMax");
  p.dt_min = float(lo.As<Napi::Number>().DoubleValue());
  p.dt_max = float(hi.As<Napi::Number>().DoubleValue());
  if (!(p.dt_min <= p.dt_max)) throw Napi::RangeError::New(env, "Expected dtMin <= dtMax, neither NaN");

  p.y_type = read_dtype(args, "yType");
  p.y = const_cast<void*>(read_buffer(args, "y", p.y_type, x_elems, false));
  p.y_batch_stride = p.x_batch_stride; p.y_seq_stride = p.x_seq_stride; p.y_head_stride = p.x_head_stride;
  p.final_states = static_cast<float*>(const_cast<void*>(read_buffer(args, "finalStates", SSD_FLOAT32, state_elems, true)));

  Napi::Value threads = args.Get("threads");
  if (!threads.IsNumber()) throw Napi::TypeError::New(env, "Expected a number for threads");
  double t = threads.As<Napi::Number>().DoubleValue();
  if (!(t >= 0 && t <= 1024)) throw Napi::RangeError::New(env, "Expected threads in [0, 1024]");
  call.threads = int(t);
  return call;
}

Napi::Object args_object(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(info.Env(), "Expected an argument object");
  return info[0].As<Napi::Object>();
}

Napi::Value ForwardSync(const Napi::CallbackInfo& info) {
  Call call = read_call(args_object(info));
  std::string error;
  SsdStatus status = ssd::forward(call.params, ssd::Backend::Cpu, call.threads, &error);
  if (status != SSD_OK) throw status_error(info.Env(), status, error);
  return info.Env().Undefined();
}

// Runs one forward on a libuv worker thread. The argument object (and through it every input and
// output buffer) stays referenced until the Promise settles.
class ForwardWorker : public Napi::AsyncWorker {
 public:
  ForwardWorker(Napi::Env env, Napi::Object args, const Call& call)
      : Napi::AsyncWorker(env, "ssd-kernels:forward"),
        deferred_(Napi::Promise::Deferred::New(env)),
        args_(Napi::Persistent(args)),
        call_(call) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override { status_ = ssd::forward(call_.params, ssd::Backend::Cpu, call_.threads, &error_); }

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
  Call call_;
  SsdStatus status_ = SSD_OK;
  std::string error_;
};

Napi::Value Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object args = args_object(info);
  Call call = read_call(args);
  auto* worker = new ForwardWorker(env, args, call);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

Napi::Value Backends(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object cpu = Napi::Object::New(env);
  cpu.Set("isa", ssd::cpu::isa_name(ssd::cpu::active_isa()));
  cpu.Set("bestIsa", ssd::cpu::isa_name(ssd::cpu::best_isa()));
  cpu.Set("threads", ssd::cpu::default_threads());
  Napi::Object cuda = Napi::Object::New(env);
  cuda.Set("compiled", false);
  cuda.Set("available", false);
  cuda.Set("reason", "this build has no CUDA kernels: the CUDA forward is not implemented in this version");
  cuda.Set("devices", 0);
  Napi::Object result = Napi::Object::New(env);
  result.Set("cpu", cpu);
  result.Set("cuda", cuda);
  return result;
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
  exports.Set("backends", Napi::Function::New(env, Backends, "backends"));
  exports.Set("fmaPeakGflops", Napi::Function::New(env, FmaPeakGflops, "fmaPeakGflops"));
  return exports;
}

}  // namespace

NODE_API_MODULE(ssd_kernels, Init)
