// The pieces every file of the N-API binding uses (util.h).
#include "binding/util.h"

#include <napi.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/params.h"

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

// Reads args[name] as a TypedArray of exactly `elements` elements of `dtype` and returns its data
// (staged by src.staging when given). Absent (null/undefined) is allowed when `optional`. An output
// given as `true` is made here (see below).
// On a device call (src.on_device), tensors arrive as BigInt device pointers whose sizes the
// TypeScript layer checked against the tensors' dims.
const void* read_buffer(Napi::Object args, const char* name, SsdDtype dtype, int64_t elements, bool optional,
                        const Source& src, Access access) {
  Napi::Env env = args.Env();
  Napi::Value v = args.Get(name);
  if (v.IsNull() || v.IsUndefined()) {
    if (optional) return nullptr;
    throw Napi::TypeError::New(env, std::string("Expected a TypedArray for ") + name + " but received nothing");
  }
  if (src.on_device) {
    if (!v.IsBigInt()) throw Napi::TypeError::New(env, std::string("Expected a device pointer (BigInt) for ") + name);
    bool lossless = false;
    uint64_t address = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless || address == 0) throw Napi::RangeError::New(env, std::string("Expected a nonzero 64-bit device pointer for ") + name);
    return reinterpret_cast<const void*>(static_cast<uintptr_t>(address));
  }
  if (access == Access::Out && v.IsBoolean() && v.As<Napi::Boolean>().Value()) {
    // `true`: a result in a new ArrayBuffer, made here and set as args[name]; JavaScript reaches it
    // only through this argument object, once the call has settled, so it is written in place
    uint8_t* data = nullptr;
    args.Set(name, new_buffer(env, size_t(elements * dtype_bytes(dtype)), name, &data));
    return data;
  }
  if (!v.IsTypedArray()) throw Napi::TypeError::New(env, std::string("Expected a TypedArray for ") + name);
  const HostArray host = host_array(env, v);
  const int64_t expected = elements * dtype_bytes(dtype);
  if (host.element_bytes == 0) {
    throw Napi::TypeError::New(env, std::string("Expected a TypedArray of ") + std::to_string(dtype_bytes(dtype)) +
                                        "-byte elements for " + name + " but received one of an element type N-API does not name");
  }
  if (host.detached) {
    throw Napi::TypeError::New(env, std::string("Expected a TypedArray for ") + name +
                                        " but received one whose ArrayBuffer is detached (transferred)");
  }
  if (int64_t(host.bytes) != expected) {
    throw Napi::RangeError::New(env, std::string("Expected ") + std::to_string(expected) + " bytes for " + name +
                                         " but received " + std::to_string(host.bytes));
  }
  if (int64_t(host.element_bytes) != dtype_bytes(dtype)) {
    throw Napi::TypeError::New(env, std::string("Expected ") + std::to_string(dtype_bytes(dtype)) +
                                        "-byte elements for " + name);
  }
  if (src.staging) return src.staging->add(env, v, host, name, access);
  return host.data;
}

SsdDtype read_dtype(Napi::Object args, const char* name) {
  Napi::Value v = args.Get(name);
  if (!v.IsNumber()) throw Napi::TypeError::New(args.Env(), std::string("Expected a dtype code for ") + name);
  int32_t code = v.As<Napi::Number>().Int32Value();
  if (!is_float_dtype(SsdDtype(code))) throw Napi::RangeError::New(args.Env(), std::string("Unknown dtype code for ") + name);
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

void read_options(Napi::Object args, ssd::Option::Block block, void* params, bool query) {
  Napi::Env env = args.Env();
  for (const ssd::Option& o : ssd::kOptions) {
    if (o.offset[block] < 0) continue;
    void* field = static_cast<char*>(params) + o.offset[block];
    Napi::Value v = args.Get(o.name);
    const bool number = v.IsNumber();
    if (o.kind == ssd::Option::kBool) {
      *static_cast<int32_t*>(field) = v.ToBoolean().Value() ? 1 : 0;
    } else if (o.kind == ssd::Option::kInt) {
      *static_cast<int64_t*>(field) = !query ? read_size(env, v, o.name) : number ? v.As<Napi::Number>().Int64Value() : int64_t(o.fallback);
    } else {
      if (!query && !number) throw Napi::TypeError::New(env, std::string("Expected a number for ") + o.name);
      *static_cast<float*>(field) = float(number ? v.As<Napi::Number>().DoubleValue() : o.fallback);
    }
  }
}

void read_dt_limits(Napi::Object args, float* lo, float* hi) {
  Napi::Env env = args.Env();
  Napi::Value min = args.Get("dtMin"), max = args.Get("dtMax");
  if (!min.IsNumber() || !max.IsNumber()) throw Napi::TypeError::New(env, "Expected numbers for dtMin and dtMax");
  *lo = float(min.As<Napi::Number>().DoubleValue());
  *hi = float(max.As<Napi::Number>().DoubleValue());
  if (!(*lo <= *hi)) throw Napi::RangeError::New(env, "Expected dtMin <= dtMax, neither NaN");
}

int read_threads(Napi::Object args) {
  Napi::Value v = args.Get("threads");
  if (!v.IsNumber()) throw Napi::TypeError::New(args.Env(), "Expected a number for threads");
  const double t = v.As<Napi::Number>().DoubleValue();
  if (!(t >= 0 && t <= 1024)) throw Napi::RangeError::New(args.Env(), "Expected threads in [0, 1024]");
  return int(t);
}

std::vector<int64_t> read_dims(Napi::Object args, std::initializer_list<const char*> names) {
  Napi::Env env = args.Env();
  Napi::Value value = args.Get("dims");
  if (!value.IsArray() || value.As<Napi::Array>().Length() != names.size()) {
    std::string list;
    for (const char* name : names) list += (list.empty() ? "" : ", ") + std::string(name);
    throw Napi::TypeError::New(env, "Expected dims [" + list + "]");
  }
  Napi::Array dims = value.As<Napi::Array>();
  std::vector<int64_t> sizes;
  uint32_t i = 0;
  for (const char* name : names) sizes.push_back(read_size(env, dims.Get(i++), name));
  return sizes;
}

void export_functions(Napi::Env env, Napi::Object exports, std::initializer_list<std::pair<const char*, Entry>> entries) {
  for (const auto& [name, fn] : entries) exports.Set(name, Napi::Function::New(env, fn, name));
}

Napi::Object args_object(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(info.Env(), "Expected an argument object");
  return info[0].As<Napi::Object>();
}

void require_cuda(Napi::Env env) {
  if (!ssd::device::availability().available) {
    throw status_error(env, SSD_ERR_CUDA, "CUDA is unavailable: " + ssd::device::availability().reason);
  }
}

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

// Reads the forward's argument object; without `outputs`, y, finalStates and varlenStates are not read
// (a backward call, which takes cuSeqlens as the forward does but has no varlenStates).
Call read_call(Napi::Object args, const Source& src, bool outputs) {
  Napi::Env env = args.Env();
  Call call;
  SsdParams& p = call.params;
  const std::vector<int64_t> d = read_dims(args, {"batch", "seqlen", "nheads", "headdim", "ngroups", "dstate"});
  p.batch = d[0]; p.seqlen = d[1]; p.nheads = d[2]; p.headdim = d[3]; p.ngroups = d[4]; p.dstate = d[5];
  read_options(args, ssd::Option::kForward, &p);
  if (p.nheads % p.ngroups != 0) throw Napi::RangeError::New(env, "ngroups must divide nheads");

  const int64_t b = p.batch, L = p.seqlen, h = p.nheads, hd = p.headdim, g = p.ngroups, n = p.dstate;
  const int64_t x_elems = b * L * h * hd, bc_elems = b * L * g * n, state_elems = b * h * hd * n;

  p.x_type = read_dtype(args, "xType");
  p.x = read_buffer(args, "x", p.x_type, x_elems, false, src);
  p.x_batch_stride = L * h * hd; p.x_seq_stride = h * hd; p.x_head_stride = hd;

  p.dt_type = read_dtype(args, "dtType");
  p.dt = read_buffer(args, "dt", p.dt_type, b * L * h, false, src);
  p.dt_batch_stride = L * h; p.dt_seq_stride = h;

  p.A = static_cast<const float*>(read_buffer(args, "A", SSD_FLOAT32, h, false, src));

  p.B_type = read_dtype(args, "BType");
  p.B = read_buffer(args, "B", p.B_type, bc_elems, false, src);
  p.C_type = read_dtype(args, "CType");
  p.C = read_buffer(args, "C", p.C_type, bc_elems, false, src);
  p.B_batch_stride = p.C_batch_stride = L * g * n;
  p.B_seq_stride = p.C_seq_stride = g * n;
  p.B_group_stride = p.C_group_stride = n;

  p.D_per_channel = args.Get("dPerChannel").ToBoolean().Value() ? 1 : 0;
  p.D = static_cast<const float*>(read_buffer(args, "D", SSD_FLOAT32, p.D_per_channel ? h * hd : h, true, src));

  p.z_type = read_dtype(args, "zType");
  p.z = read_buffer(args, "z", p.z_type, x_elems, true, src);
  p.z_batch_stride = p.x_batch_stride; p.z_seq_stride = p.x_seq_stride; p.z_head_stride = p.x_head_stride;

  p.dt_bias = static_cast<const float*>(read_buffer(args, "dtBias", SSD_FLOAT32, h, true, src));
  // the pre-gate output: written by the forward, read by the backward (optional, only with z)
  Napi::Value yu = args.Get("yUngated");
  if (!yu.IsNull() && !yu.IsUndefined()) {
    if (!p.z) throw Napi::TypeError::New(env, "Expected no yUngated without z");
    p.y_ungated_type = read_dtype(args, "yUngatedType");
    p.y_ungated = const_cast<void*>(read_buffer(args, "yUngated", p.y_ungated_type, x_elems, false, src,
                                                    outputs ? Access::Out : Access::In));
    p.y_ungated_batch_stride = p.x_batch_stride; p.y_ungated_seq_stride = p.x_seq_stride;
    p.y_ungated_head_stride = p.x_head_stride;
  }
  p.initial_states = static_cast<const float*>(read_buffer(args, "initialStates", SSD_FLOAT32, state_elems, true, src));

  Napi::Value seq_idx = args.Get("seqIdx");
  if (!seq_idx.IsNull() && !seq_idx.IsUndefined()) {
    if (!src.on_device && (!seq_idx.IsTypedArray() || seq_idx.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)) {
      throw Napi::TypeError::New(env, "Expected an Int32Array for seqIdx");
    }
    // int32 elements are 4 bytes, like float32: the byte-length check is the same.
    p.seq_idx = static_cast<const int32_t*>(read_buffer(args, "seqIdx", SSD_FLOAT32, b * L, false, src));
    p.seq_idx_batch_stride = L;
  }

  read_dt_limits(args, &p.dt_min, &p.dt_max);

  if (outputs) {
    p.y_type = read_dtype(args, "yType");
    p.y = const_cast<void*>(read_buffer(args, "y", p.y_type, x_elems, false, src, Access::Out));
    p.y_batch_stride = p.x_batch_stride; p.y_seq_stride = p.x_seq_stride; p.y_head_stride = p.x_head_stride;
    p.final_states = static_cast<float*>(const_cast<void*>(read_buffer(args, "finalStates", SSD_FLOAT32, state_elems, true, src, Access::Out)));
  }

  Napi::Value cu_seqlens = args.Get("cuSeqlens");
  if (!cu_seqlens.IsNull() && !cu_seqlens.IsUndefined()) {
    if (!src.on_device && (!cu_seqlens.IsTypedArray() || cu_seqlens.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)) {
      throw Napi::TypeError::New(env, "Expected an Int32Array for cuSeqlens");
    }
    if (b != 1) throw Napi::RangeError::New(env, "Expected batch 1 with cuSeqlens");
    p.num_seqs = read_size(env, args.Get("numSeqs"), "numSeqs");
    p.cu_seqlens = static_cast<const int32_t*>(read_buffer(args, "cuSeqlens", SSD_FLOAT32, p.num_seqs + 1, false, src));
  }
  Napi::Value varlen = args.Get("varlenStates");
  if (!varlen.IsNull() && !varlen.IsUndefined()) {
    if (!outputs) throw Napi::TypeError::New(env, "Expected no varlenStates in a backward call (a forward output, with no gradient)");
    if (!p.cu_seqlens) throw Napi::TypeError::New(env, "Expected cuSeqlens with varlenStates");
    p.varlen_states = static_cast<float*>(const_cast<void*>(
        read_buffer(args, "varlenStates", SSD_FLOAT32, p.num_seqs * h * hd * n, true, src, Access::Out)));
  }

  call.threads = read_threads(args);
  call.host_outputs = {{{p.y, outputs ? size_t(x_elems * dtype_bytes(p.y_type)) : 0},
                        {p.y_ungated, (outputs && p.y_ungated) ? size_t(x_elems * dtype_bytes(p.y_ungated_type)) : 0},
                        {p.final_states, p.final_states ? size_t(state_elems * 4) : 0},
                        {p.varlen_states, p.varlen_states ? size_t(p.num_seqs * h * hd * n * 4) : 0}}};
  // The one check of the parameter contract (core/params.h), before any backend sees the block.
  std::string error;
  const SsdStatus status = outputs ? ssd::check_params(p, &error) : SSD_OK;
  if (status != SSD_OK) throw status_error(env, status, error);
  return call;
}

// The forward's argument fields (minus y and finalStates) plus dy, dFinalStates and the gradient
// outputs: dx (x's type), ddt (dt's), dA (float32), dB (B's), dC (C's), dD (float32, only with D),
// dz (z's, only with z), dDtBias and dInitialStates (float32, optional).
BackwardCall read_backward_call(Napi::Object args, const Source& src) {
  Napi::Env env = args.Env();
  BackwardCall call;
  Call fwd = read_call(args, src, false);
  call.threads = fwd.threads;
  SsdBackwardParams& q = call.params;
  q.fwd = fwd.params;
  const SsdParams& p = q.fwd;
  const int64_t b = p.batch, L = p.seqlen, h = p.nheads, hd = p.headdim, g = p.ngroups, n = p.dstate;
  const int64_t x_elems = b * L * h * hd, bc_elems = b * L * g * n, state_elems = b * h * hd * n;

  q.dy_type = read_dtype(args, "dyType");
  q.dy = read_buffer(args, "dy", q.dy_type, x_elems, false, src);
  q.dy_batch_stride = p.x_batch_stride; q.dy_seq_stride = p.x_seq_stride; q.dy_head_stride = p.x_head_stride;
  q.d_final_states = static_cast<const float*>(read_buffer(args, "dFinalStates", SSD_FLOAT32, state_elems, true, src));

  auto output = [&](const char* name, SsdDtype t, int64_t elems, bool optional) {
    return const_cast<void*>(read_buffer(args, name, t, elems, optional, src, Access::Out));
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

  call.host_outputs = {{{q.dx, size_t(x_elems * dtype_bytes(q.dx_type))},
                        {q.dz, q.dz ? size_t(x_elems * dtype_bytes(q.dz_type)) : 0},
                        {q.dB, size_t(bc_elems * dtype_bytes(q.dB_type))},
                        {q.dC, size_t(bc_elems * dtype_bytes(q.dC_type))}}};
  std::string error;
  const SsdStatus status = ssd::check_backward_params(q, &error);
  if (status != SSD_OK) throw status_error(env, status, error);
  return call;
}

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
                                  ValueFn value, std::unique_ptr<Staging> staging) {
  struct Pending {
    Napi::Promise::Deferred deferred;
    Napi::ObjectReference keep;
    ssd::device::Result result;
    ValueFn value;
    std::unique_ptr<Staging> staging;  // freed on the JS thread, after the job is done with it
  };
  Completions& done = completions(env);
  auto* pending = new Pending{Napi::Promise::Deferred::New(env), Napi::Persistent(keep), {}, std::move(value), std::move(staging)};
  Napi::Promise promise = pending->deferred.Promise();
  if (done.pending++ == 0) done.tsfn.Ref(env);
  Napi::ThreadSafeFunction tsfn = done.tsfn;
  ssd::device::submit(device, std::move(job), [pending, tsfn](const ssd::device::Result& r) mutable {
    pending->result = r;
    tsfn.BlockingCall([pending](Napi::Env env, Napi::Function) {
      std::unique_ptr<Pending> owned(pending);
      Completions& done = completions(env);
      if (--done.pending == 0) done.tsfn.Unref(env);
      std::string detached;
      if (!owned->result.ok()) {
        owned->deferred.Reject(status_error(env, owned->result.status, owned->result.message).Value());
      } else if (owned->staging && !owned->staging->finish(env, &detached)) {
        owned->deferred.Reject(detached_error(env, detached).Value());
      } else {
        owned->deferred.Resolve(owned->value ? owned->value(env) : env.Undefined());
      }
    });
  });
  return promise;
}

Napi::Value run_on_cpu(Napi::Env env, Napi::Object args, const char* name, std::unique_ptr<Staging> staging,
                       std::function<SsdStatus(std::string*)> run) {
  if (staging) {
    auto* worker = new CpuWorker(env, args, name, std::move(staging), std::move(run));
    Napi::Promise promise = worker->Promise();
    worker->Queue();
    return promise;
  }
  std::string error;
  const SsdStatus status = run(&error);
  if (status != SSD_OK) throw status_error(env, status, error);
  return env.Undefined();
}

ssd::device::Result with_workspace(int device, size_t bytes, const std::function<ssd::device::Result(void*)>& body) {
  void* workspace = nullptr;
  if (bytes > 0) {
    ssd::device::Result r = ssd::device::allocate(device, bytes, &workspace);
    if (!r.ok()) return r;
  }
  ssd::device::Result r = body(workspace);
  ssd::device::release(device, workspace);
  return r;
}

}}  // namespace ssd::addon
