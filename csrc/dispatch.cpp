#include "dispatch.h"

#include <climits>
#include <cstdint>

#include "cpu/cpu_backend.h"
#ifdef SSD_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

namespace ssd {

namespace {

bool fits_int32(int64_t v) { return v >= 1 && v <= INT32_MAX; }

bool valid_dtype(SsdDtype t) { return t == SSD_FLOAT32 || t == SSD_BFLOAT16 || t == SSD_FLOAT16; }

// The forward's sizes, pointers and options; the outputs only when `outputs`.
SsdStatus check_forward(const SsdParams& p, bool outputs, std::string* error) {
  const struct {
    const char* name;
    int64_t value;
  } sizes[] = {{"batch", p.batch},     {"seqlen", p.seqlen},   {"nheads", p.nheads},
               {"headdim", p.headdim}, {"ngroups", p.ngroups}, {"dstate", p.dstate}};
  for (const auto& s : sizes) {
    if (!fits_int32(s.value)) {
      *error = std::string(s.name) + " must be in [1, 2^31-1], got " + std::to_string(s.value);
      return SSD_ERR_INVALID_ARGUMENT;
    }
  }
  if (p.nheads % p.ngroups != 0) {
    *error = "ngroups (" + std::to_string(p.ngroups) + ") must divide nheads (" + std::to_string(p.nheads) + ")";
    return SSD_ERR_INVALID_ARGUMENT;
  }
  if (p.chunk_size < 16 || p.chunk_size > 256 || (p.chunk_size & (p.chunk_size - 1)) != 0) {
    *error = "chunk_size must be a power of two in [16, 256], got " + std::to_string(p.chunk_size);
    return SSD_ERR_INVALID_ARGUMENT;
  }
  // Element counts of the largest tensors must fit in int64 with room to spare.
  const double x_elems = double(p.batch) * double(p.seqlen) * double(p.nheads) * double(p.headdim);
  const double state_elems = double(p.batch) * double(p.nheads) * double(p.headdim) * double(p.dstate);
  if (x_elems > 9.0e15 || state_elems > 9.0e15) {
    *error = "tensor sizes overflow 64-bit indexing";
    return SSD_ERR_INVALID_ARGUMENT;
  }
  if (!p.x || !p.dt || !p.A || !p.B || !p.C || (outputs && !p.y)) {
    *error = outputs ? "x, dt, A, B, C and y are required" : "x, dt, A, B and C are required";
    return SSD_ERR_INVALID_ARGUMENT;
  }
  const SsdDtype types[] = {p.x_type, p.dt_type, p.B_type, p.C_type, outputs ? p.y_type : SSD_FLOAT32, p.z_type};
  for (SsdDtype t : types) {
    if (!valid_dtype(t)) {
      *error = "unknown dtype code " + std::to_string(int(t));
      return SSD_ERR_INVALID_ARGUMENT;
    }
  }
  if (!(p.dt_min <= p.dt_max)) {
    *error = "dt_min must not exceed dt_max (and neither may be NaN)";
    return SSD_ERR_INVALID_ARGUMENT;
  }
  return SSD_OK;
}

}  // namespace

SsdStatus check_params(const SsdParams& p, std::string* error) { return check_forward(p, true, error); }

SsdStatus check_backward_params(const SsdBackwardParams& p, std::string* error) {
  SsdStatus status = check_forward(p.fwd, false, error);
  if (status != SSD_OK) return status;
  if (!p.dy || !p.dx || !p.ddt || !p.dA || !p.dB || !p.dC) {
    *error = "dy, dx, ddt, dA, dB and dC are required";
    return SSD_ERR_INVALID_ARGUMENT;
  }
  if ((p.dD && !p.fwd.D) || (p.dz && !p.fwd.z)) {
    *error = "dD needs D and dz needs z";
    return SSD_ERR_INVALID_ARGUMENT;
  }
  const SsdDtype types[] = {p.dy_type, p.dx_type, p.ddt_type, p.dB_type, p.dC_type, p.dz ? p.dz_type : SSD_FLOAT32};
  for (SsdDtype t : types) {
    if (!valid_dtype(t)) {
      *error = "unknown dtype code " + std::to_string(int(t));
      return SSD_ERR_INVALID_ARGUMENT;
    }
  }
  return SSD_OK;
}

SsdStatus forward_cpu(const SsdParams& p, int threads, std::string* error) {
  SsdStatus status = check_params(p, error);
  if (status != SSD_OK) return status;
  return cpu::forward(p, threads, error);
}

SsdStatus backward_cpu(const SsdBackwardParams& p, int threads, std::string* error) {
  SsdStatus status = check_backward_params(p, error);
  if (status != SSD_OK) return status;
  return cpu::backward(p, threads, error);
}

size_t cuda_backward_workspace_bytes(const SsdBackwardParams&) { return 0; }

SsdStatus backward_cuda(const SsdBackwardParams&, void*, void*, std::string* error) {
  *error = "the CUDA backward is not in this build yet";
  return SSD_ERR_UNSUPPORTED;
}

#ifdef SSD_HAVE_CUDA
size_t cuda_workspace_bytes(const SsdParams& p) { return cuda::forward_workspace_bytes(p); }

SsdStatus forward_cuda(const SsdParams& p, void* stream, void* workspace, std::string* error) {
  SsdStatus status = check_params(p, error);
  if (status != SSD_OK) return status;
  return cuda::forward(p, stream, workspace, error);
}
#else
size_t cuda_workspace_bytes(const SsdParams&) { return 0; }

SsdStatus forward_cuda(const SsdParams&, void*, void*, std::string* error) {
  *error = "this build has no CUDA kernels";
  return SSD_ERR_UNSUPPORTED;
}
#endif

}  // namespace ssd
