// The N-API binding of the decode step: reads the argument object that lib/native.ts describes
// (NativeStepArgs), re-checks sizes and byte lengths, and hands one SsdStepParams to the dispatcher
// on the calling thread (stepSync) or on a worker thread (step, a Promise). Also the memory
// bandwidth probe of the step benchmark (rmwBandwidth).
#include <napi.h>

#include <cstdint>
#include <string>

#include "binding/util.h"
#include "cpu/step_backend.h"
#include "core/dispatch.h"
#include "ssd_kernels.h"

namespace ssd { namespace addon {

SsdStepParams read_step_params(Napi::Object args, bool on_device, int* threads) {
  Napi::Env env = args.Env();
  SsdStepParams p{};
  Napi::Value dims_value = args.Get("dims");
  if (!dims_value.IsArray() || dims_value.As<Napi::Array>().Length() != 5) {
    throw Napi::TypeError::New(env, "Expected dims [batch, nheads, headdim, ngroups, dstate]");
  }
  Napi::Array dims = dims_value.As<Napi::Array>();
  p.batch = read_size(env, dims.Get(0u), "batch");
  p.nheads = read_size(env, dims.Get(1u), "nheads");
  p.headdim = read_size(env, dims.Get(2u), "headdim");
  p.ngroups = read_size(env, dims.Get(3u), "ngroups");
  p.dstate = read_size(env, dims.Get(4u), "dstate");
  p.state_rows = read_size(env, args.Get("stateRows"), "stateRows");
  if (p.nheads % p.ngroups != 0) throw Napi::RangeError::New(env, "ngroups must divide nheads");

  const int64_t b = p.batch, h = p.nheads, hd = p.headdim, g = p.ngroups, n = p.dstate;
  const double state_elems = double(p.state_rows) * double(h) * double(hd) * double(n);
  if (state_elems > 9.0e15) throw Napi::RangeError::New(env, "The state is too large to index");

  p.state_type = read_dtype(args, "stateType");
  if (p.state_type != SSD_FLOAT32 && p.state_type != SSD_BFLOAT16) {
    throw Napi::TypeError::New(env, "Expected a float32 or bfloat16 state");
  }
  p.state = const_cast<void*>(read_buffer(args, "state", p.state_type, p.state_rows * h * hd * n, false, on_device));

  Napi::Value indices = args.Get("stateIndices");
  if (!indices.IsNull() && !indices.IsUndefined()) {
    if (!on_device && (!indices.IsTypedArray() || indices.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)) {
      throw Napi::TypeError::New(env, "Expected an Int32Array for stateIndices");
    }
    p.state_indices = static_cast<const int32_t*>(read_buffer(args, "stateIndices", SSD_FLOAT32, b, false, on_device));
  } else if (p.state_rows != b) {
    throw Napi::RangeError::New(env, "Expected stateRows == batch without stateIndices");
  }

  p.x_type = read_dtype(args, "xType");
  p.x = read_buffer(args, "x", p.x_type, b * h * hd, false, on_device);
  p.x_batch_stride = h * hd;
  p.x_head_stride = hd;
  p.dt_type = read_dtype(args, "dtType");
  p.dt = read_buffer(args, "dt", p.dt_type, b * h, false, on_device);
  p.dt_batch_stride = h;
  p.A = static_cast<const float*>(read_buffer(args, "A", SSD_FLOAT32, h, false, on_device));
  p.B_type = read_dtype(args, "BType");
  p.B = read_buffer(args, "B", p.B_type, b * g * n, false, on_device);
  p.C_type = read_dtype(args, "CType");
  p.C = read_buffer(args, "C", p.C_type, b * g * n, false, on_device);
  p.B_batch_stride = p.C_batch_stride = g * n;
  p.B_group_stride = p.C_group_stride = n;
  p.D_per_channel = args.Get("dPerChannel").ToBoolean().Value() ? 1 : 0;
  p.D = static_cast<const float*>(read_buffer(args, "D", SSD_FLOAT32, p.D_per_channel ? h * hd : h, true, on_device));
  p.z_type = read_dtype(args, "zType");
  p.z = read_buffer(args, "z", p.z_type, b * h * hd, true, on_device);
  p.z_batch_stride = h * hd;
  p.z_head_stride = hd;
  p.dt_bias = static_cast<const float*>(read_buffer(args, "dtBias", SSD_FLOAT32, h, true, on_device));

  p.dt_softplus = args.Get("dtSoftplus").ToBoolean().Value() ? 1 : 0;
  Napi::Value lo = args.Get("dtMin"), hi = args.Get("dtMax");
  if (!lo.IsNumber() || !hi.IsNumber()) throw Napi::TypeError::New(env, "Expected numbers for dtMin and dtMax");
  p.dt_min = float(lo.As<Napi::Number>().DoubleValue());
  p.dt_max = float(hi.As<Napi::Number>().DoubleValue());
  if (!(p.dt_min <= p.dt_max)) throw Napi::RangeError::New(env, "Expected dtMin <= dtMax, neither NaN");

  p.y_type = read_dtype(args, "yType");
  p.y = const_cast<void*>(read_buffer(args, "y", p.y_type, b * h * hd, false, on_device));
  p.y_batch_stride = h * hd;
  p.y_head_stride = hd;

  Napi::Value t = args.Get("threads");
  if (!t.IsNumber()) throw Napi::TypeError::New(env, "Expected a number for threads");
  const double tv = t.As<Napi::Number>().DoubleValue();
  if (!(tv >= 0 && tv <= 1024)) throw Napi::RangeError::New(env, "Expected threads in [0, 1024]");
  *threads = int(tv);
  std::string error;
  const SsdStatus status = ssd::check_step_params(p, &error);
  if (status != SSD_OK) throw status_error(env, status, error);
  return p;
}

namespace {

Napi::Object args_object(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(info.Env(), "Expected an argument object");
  return info[0].As<Napi::Object>();
}

Napi::Value StepSync(const Napi::CallbackInfo& info) {
  int threads = 0;
  const SsdStepParams p = read_step_params(args_object(info), false, &threads);
  std::string error;
  const SsdStatus status = ssd::step_cpu(p, threads, &error);
  if (status != SSD_OK) throw status_error(info.Env(), status, error);
  return info.Env().Undefined();
}

// One step on a libuv worker thread; the argument object (and through it the state, inputs and y)
// stays referenced until the Promise settles.
class StepWorker : public Napi::AsyncWorker {
 public:
  StepWorker(Napi::Env env, Napi::Object args, const SsdStepParams& params, int threads)
      : Napi::AsyncWorker(env, "ssd-kernels:step"),
        deferred_(Napi::Promise::Deferred::New(env)),
        args_(Napi::Persistent(args)),
        params_(params),
        threads_(threads) {}

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override { status_ = ssd::step_cpu(params_, threads_, &error_); }

  void OnOK() override {
    Napi::Env env = Env();
    if (status_ == SSD_OK) deferred_.Resolve(env.Undefined());
    else deferred_.Reject(status_error(env, status_, error_).Value());
  }

  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference args_;
  SsdStepParams params_;
  int threads_;
  SsdStatus status_ = SSD_OK;
  std::string error_;
};

Napi::Value Step(const Napi::CallbackInfo& info) {
  Napi::Object args = args_object(info);
  int threads = 0;
  const SsdStepParams p = read_step_params(args, false, &threads);
  auto* worker = new StepWorker(info.Env(), args, p, threads);
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// rmwBandwidth(threads, bytes, seconds): GB/s of an in-place read-modify-write sweep of `bytes`.
Napi::Value RmwBandwidth(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) {
    throw Napi::TypeError::New(env, "Expected (threads: number, bytes: number, seconds: number)");
  }
  const int threads = info[0].As<Napi::Number>().Int32Value();
  const double bytes = info[1].As<Napi::Number>().DoubleValue();
  const double seconds = info[2].As<Napi::Number>().DoubleValue();
  if (threads < 1 || threads > 1024 || !(bytes >= 4096 && bytes <= 64.0 * (1ull << 30)) || !(seconds > 0 && seconds <= 10)) {
    throw Napi::RangeError::New(env, "Expected threads in [1, 1024], bytes in [4 KiB, 64 GiB] and seconds in (0, 10]");
  }
  return Napi::Number::New(env, ssd::cpu::rmw_bandwidth_gbps(threads, size_t(bytes), seconds));
}

}  // namespace

void register_step(Napi::Env env, Napi::Object exports) {
  exports.Set("stepSync", Napi::Function::New(env, StepSync, "stepSync"));
  exports.Set("step", Napi::Function::New(env, Step, "step"));
  exports.Set("rmwBandwidth", Napi::Function::New(env, RmwBandwidth, "rmwBandwidth"));
}

}}  // namespace ssd::addon
