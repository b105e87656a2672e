// The N-API binding of the decode step: reads the argument object that lib/native.ts describes
// (NativeStepArgs), re-checks sizes and byte lengths, and hands one SsdStepParams to the dispatcher
// on the calling thread (stepSync) or on a worker thread (step, a Promise). Also the memory
// bandwidth probe of the step benchmark (rmwBandwidth).
#include <napi.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "binding/util.h"
#include "cpu/step_backend.h"
#include "core/dispatch.h"
#include "core/dtype.h"
#include "core/params.h"
#include "device/device.h"
#include "ssd_kernels.h"

namespace ssd { namespace addon {

SsdStepParams read_step_params(Napi::Object args, const Source& src, int* threads) {
  Napi::Env env = args.Env();
  SsdStepParams p{};
  const std::vector<int64_t> d = read_dims(args, {"batch", "nheads", "headdim", "ngroups", "dstate"});
  p.batch = d[0]; p.nheads = d[1]; p.headdim = d[2]; p.ngroups = d[3]; p.dstate = d[4];
  p.state_rows = read_size(env, args.Get("stateRows"), "stateRows");
  read_options(args, ssd::Option::kStep, &p);
  if (p.nheads % p.ngroups != 0) throw Napi::RangeError::New(env, "ngroups must divide nheads");

  const int64_t b = p.batch, h = p.nheads, hd = p.headdim, g = p.ngroups, n = p.dstate;
  const double state_elems = double(p.state_rows) * double(h) * double(hd) * double(n);
  if (state_elems > 9.0e15) throw Napi::RangeError::New(env, "The state is too large to index");

  p.state_type = read_dtype(args, "stateType");
  if (!dtype_step(p.state_type)) {
    throw Napi::TypeError::New(env, "Expected a " + dtype_names(dtype_step) + " state");
  }

  Napi::Value indices = args.Get("stateIndices");
  if (!indices.IsNull() && !indices.IsUndefined()) {
    if (!src.on_device && (!indices.IsTypedArray() || indices.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)) {
      throw Napi::TypeError::New(env, "Expected an Int32Array for stateIndices");
    }
    p.state_indices = static_cast<const int32_t*>(read_buffer(args, "stateIndices", SSD_FLOAT32, b, false, src));
  } else if (p.state_rows != b) {
    throw Napi::RangeError::New(env, "Expected stateRows == batch without stateIndices");
  }
  // An asynchronous step of a state cache on an ArrayBuffer stages only the rows its indices pick
  // (staging.h): the copies cost what the step itself reads and writes, not the whole cache.
  const int64_t state_elements = p.state_rows * h * hd * n;
  if (src.staging && p.state_indices) {
    void* in_place = const_cast<void*>(read_buffer(args, "state", p.state_type, state_elements, false, kInPlace));
    const HostArray host = host_array(env, args.Get("state"));
    std::string error;
    // the dispatcher's own check, here because the rows must be known before they are copied
    const SsdStatus status = ssd::check_state_indices(p.state_indices, b, p.state_rows, &error);
    if (status != SSD_OK) throw status_error(env, status, error);
    std::vector<int64_t> rows;
    for (int64_t i = 0; i < b; ++i) {
      if (p.state_indices[i] >= 0) rows.push_back(p.state_indices[i]);
    }
    const size_t row_bytes = size_t(h * hd * n * dtype_bytes(p.state_type));
    void* copy = src.staging->add_rows(env, args.Get("state"), host, "state", row_bytes, rows);
    if (copy) {
      auto* remapped = static_cast<int32_t*>(src.staging->scratch(env, size_t(b) * sizeof(int32_t), "stateIndices"));
      int32_t next = 0;
      for (int64_t i = 0; i < b; ++i) remapped[i] = p.state_indices[i] >= 0 ? next++ : -1;
      p.state = copy;
      p.state_rows = std::max<int64_t>(next, 1);  // all padding: one row that nothing reads
      p.state_indices = remapped;
    } else {
      p.state = in_place;  // on a SharedArrayBuffer
    }
  } else {
    p.state = const_cast<void*>(read_buffer(args, "state", p.state_type, state_elements, false, src, Access::InOut));
  }

  p.x_type = read_dtype(args, "xType");
  p.x = read_buffer(args, "x", p.x_type, b * h * hd, false, src);
  p.x_batch_stride = h * hd;
  p.x_head_stride = hd;
  p.dt_type = read_dtype(args, "dtType");
  p.dt = read_buffer(args, "dt", p.dt_type, b * h, false, src);
  p.dt_batch_stride = h;
  p.A = static_cast<const float*>(read_buffer(args, "A", SSD_FLOAT32, h, false, src));
  p.B_type = read_dtype(args, "BType");
  p.B = read_buffer(args, "B", p.B_type, b * g * n, false, src);
  p.C_type = read_dtype(args, "CType");
  p.C = read_buffer(args, "C", p.C_type, b * g * n, false, src);
  p.B_batch_stride = p.C_batch_stride = g * n;
  p.B_group_stride = p.C_group_stride = n;
  p.D_per_channel = args.Get("dPerChannel").ToBoolean().Value() ? 1 : 0;
  p.D = static_cast<const float*>(read_buffer(args, "D", SSD_FLOAT32, p.D_per_channel ? h * hd : h, true, src));
  p.z_type = read_dtype(args, "zType");
  p.z = read_buffer(args, "z", p.z_type, b * h * hd, true, src);
  p.z_batch_stride = h * hd;
  p.z_head_stride = hd;
  p.dt_bias = static_cast<const float*>(read_buffer(args, "dtBias", SSD_FLOAT32, h, true, src));

  read_dt_limits(args, &p.dt_min, &p.dt_max);

  p.y_type = read_dtype(args, "yType");
  p.y = const_cast<void*>(read_buffer(args, "y", p.y_type, b * h * hd, false, src, Access::Out));
  p.y_batch_stride = h * hd;
  p.y_head_stride = hd;

  *threads = read_threads(args);
  std::string error;
  const SsdStatus status = ssd::check_step_params(p, &error);
  if (status != SSD_OK) throw status_error(env, status, error);
  return p;
}

namespace {

constexpr char kWorkerName[] = "ssd-kernels:step";

struct StepCall {
  SsdStepParams params;
  int threads;
};

StepCall read_step_call(Napi::Object args, const Source& src) {
  StepCall call{};
  call.params = read_step_params(args, src, &call.threads);
  return call;
}

SsdStatus run_cpu(const StepCall& call, std::string* error) { return ssd::step_cpu(call.params, call.threads, error); }

// The CUDA step on device pointers, in place on the state. stateIndices live on the device: the
// kernels check them before writing, and the verdict is read back here (after the step's own
// synchronisation on the worker thread) so that a bad index rejects with the same message as on
// the CPU.
SsdStatus run_cuda(const SsdStepParams& params, void* stream, void* workspace, std::string* message) {
  int verdict[2] = {0, -1};
  SsdStatus s = ssd::step_cuda(params, stream, workspace, params.state_indices ? verdict : nullptr, message);
  if (s == SSD_OK && params.state_indices) {
    ssd::device::Result r = ssd::device::synchronize(stream);
    if (!r.ok()) {
      *message = r.message;
      return r.status;
    }
    if (verdict[0] != 0) {
      s = SSD_ERR_INVALID_ARGUMENT;
      *message = "state_indices[" + std::to_string(verdict[1]) + "] " +
                 (verdict[0] == 1 ? std::string("is past the last state row (") + std::to_string(params.state_rows - 1) + ")"
                                  : std::string("uses a state row that an earlier entry uses too")) +
                 "; nothing was written";
    }
  }
  return s;
}

}  // namespace

void register_step(Napi::Env env, Napi::Object exports) {
  export_operation<read_step_call, run_cpu, kWorkerName, ssd::cuda_step_workspace_bytes, run_cuda>(
      env, exports, "stepSync", "step", "cudaStep");
}

}}  // namespace ssd::addon
