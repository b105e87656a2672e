#include "dispatch.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <vector>

#include "cpu/cpu_backend.h"
#include "cpu/step_backend.h"
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
  if (p.y_ungated && (!p.z || !valid_dtype(p.y_ungated_type))) {
    *error = p.z ? "unknown dtype code " + std::to_string(int(p.y_ungated_type)) + " for y_ungated"
                 : std::string("y_ungated needs z (without z it would equal y)");
    return SSD_ERR_INVALID_ARGUMENT;
  }
  if (!(p.dt_min <= p.dt_max)) {
    *error = "dt_min must not exceed dt_max (and neither may be NaN)";
    return SSD_ERR_INVALID_ARGUMENT;
  }
  if (p.varlen_states && !p.cu_seqlens) {
    *error = "varlen_states needs cu_seqlens";
    return SSD_ERR_INVALID_ARGUMENT;
  }
  if (p.cu_seqlens) {
    if (p.batch != 1 || p.seq_idx || p.initial_states) {
      *error = "cu_seqlens needs batch 1 and excludes seq_idx and initial_states";
      return SSD_ERR_INVALID_ARGUMENT;
    }
    if (p.num_seqs < 1 || p.num_seqs >= INT32_MAX) {
      *error = "num_seqs must be in [1, 2^31-2], got " + std::to_string(p.num_seqs);
      return SSD_ERR_INVALID_ARGUMENT;
    }
  }
  return SSD_OK;
}

}  // namespace

SsdStatus check_cu_seqlens(const SsdParams& p, std::string* error) {
  if (!p.cu_seqlens) return SSD_OK;
  const int32_t* cu = p.cu_seqlens;
  if (cu[0] != 0 || cu[p.num_seqs] != p.seqlen) {
    *error = "cu_seqlens must start at 0 and end at seqlen (" + std::to_string(p.seqlen) + "), got " +
             std::to_string(cu[0]) + " and " + std::to_string(cu[p.num_seqs]);
    return SSD_ERR_INVALID_ARGUMENT;
  }
  for (int64_t k = 0; k < p.num_seqs; ++k) {
    if (cu[k + 1] < cu[k]) {
      *error = "cu_seqlens must be non-decreasing, got " + std::to_string(cu[k + 1]) + " after " + std::to_string(cu[k]) +
               " at index " + std::to_string(k + 1);
      return SSD_ERR_INVALID_ARGUMENT;
    }
  }
  return SSD_OK;
}


SsdStatus check_params(const SsdParams& p, std::string* error) { return check_forward(p, true, error); }

SsdStatus check_backward_params(const SsdBackwardParams& p, std::string* error) {
  SsdStatus status = check_forward(p.fwd, false, error);
  if (status != SSD_OK) return status;
  if (p.fwd.cu_seqlens || p.fwd.varlen_states) {
    *error = "the backward does not take cu_seqlens (use seq_idx)";
    return SSD_ERR_INVALID_ARGUMENT;
  }
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
  if (status == SSD_OK) status = check_cu_seqlens(p, error);
  if (status != SSD_OK) return status;
  return cpu::forward(p, threads, error);
}

SsdStatus backward_cpu(const SsdBackwardParams& p, int threads, std::string* error) {
  SsdStatus status = check_backward_params(p, error);
  if (status != SSD_OK) return status;
  return cpu::backward(p, threads, error);
}

#ifdef SSD_HAVE_CUDA
size_t cuda_backward_workspace_bytes(const SsdBackwardParams& p) { return cuda::backward_workspace_bytes(p); }

SsdStatus backward_cuda(const SsdBackwardParams& p, void* stream, void* workspace, std::string* error) {
  SsdStatus status = check_backward_params(p, error);
  if (status != SSD_OK) return status;
  // The CUDA backward writes each gradient in its input's dtype and layout.
  const SsdParams& f = p.fwd;
  const bool same = p.dy_type == f.x_type && p.dx_type == f.x_type && p.ddt_type == f.dt_type && p.dB_type == f.B_type &&
                    p.dC_type == f.C_type && (!p.dz || p.dz_type == f.z_type) && p.dy_batch_stride == f.x_batch_stride &&
                    p.dy_seq_stride == f.x_seq_stride && p.dy_head_stride == f.x_head_stride &&
                    p.dx_batch_stride == f.x_batch_stride && p.dx_seq_stride == f.x_seq_stride &&
                    p.dx_head_stride == f.x_head_stride && p.ddt_batch_stride == f.dt_batch_stride &&
                    p.ddt_seq_stride == f.dt_seq_stride && p.dB_batch_stride == f.B_batch_stride &&
                    p.dB_seq_stride == f.B_seq_stride && p.dB_group_stride == f.B_group_stride &&
                    p.dC_batch_stride == f.C_batch_stride && p.dC_seq_stride == f.C_seq_stride &&
                    p.dC_group_stride == f.C_group_stride &&
                    (!p.dz || (p.dz_batch_stride == f.z_batch_stride && p.dz_seq_stride == f.z_seq_stride &&
                               p.dz_head_stride == f.z_head_stride));
  if (!same) {
    *error = "the CUDA backward needs dy and every gradient in its input's dtype and layout";
    return SSD_ERR_UNSUPPORTED;
  }
  return cuda::backward(p, stream, workspace, error);
}
#else
size_t cuda_backward_workspace_bytes(const SsdBackwardParams&) { return 0; }

SsdStatus backward_cuda(const SsdBackwardParams&, void*, void*, std::string* error) {
  *error = "this build has no CUDA kernels";
  return SSD_ERR_UNSUPPORTED;
}
#endif

SsdStatus check_step_params(const SsdStepParams& p, std::string* error) {
  const struct {
    const char* name;
    int64_t value;
  } sizes[] = {{"batch", p.batch},     {"nheads", p.nheads}, {"headdim", p.headdim},
               {"ngroups", p.ngroups}, {"dstate", p.dstate}, {"state_rows", p.state_rows}};
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
  if (!p.state_indices && p.state_rows != p.batch) {
    *error = "without state_indices, state_rows (" + std::to_string(p.state_rows) + ") must equal batch (" +
             std::to_string(p.batch) + ")";
    return SSD_ERR_INVALID_ARGUMENT;
  }
  const double state_elems = double(p.state_rows) * double(p.nheads) * double(p.headdim) * double(p.dstate);
  if (state_elems > 9.0e15) {
    *error = "tensor sizes overflow 64-bit indexing";
    return SSD_ERR_INVALID_ARGUMENT;
  }
  if (!p.state || !p.x || !p.dt || !p.A || !p.B || !p.C || !p.y) {
    *error = "state, x, dt, A, B, C and y are required";
    return SSD_ERR_INVALID_ARGUMENT;
  }
  if (p.state_type != SSD_FLOAT32 && p.state_type != SSD_BFLOAT16) {
    *error = "the state must be float32 or bfloat16, got dtype code " + std::to_string(int(p.state_type));
    return SSD_ERR_INVALID_ARGUMENT;
  }
  const SsdDtype types[] = {p.x_type, p.dt_type, p.B_type, p.C_type, p.y_type, p.z_type};
  for (SsdDtype t : types) {
    if (t != SSD_FLOAT32 && t != SSD_BFLOAT16 && t != SSD_FLOAT16) {
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

SsdStatus check_state_indices(const int32_t* indices, int64_t batch, int64_t state_rows, std::string* error) {
  if (!indices) return SSD_OK;
  std::vector<int32_t> used;
  used.reserve(size_t(batch));
  for (int64_t i = 0; i < batch; ++i) {
    if (indices[i] >= state_rows) {
      *error = "state_indices[" + std::to_string(i) + "] = " + std::to_string(indices[i]) +
               " is past the last state row (" + std::to_string(state_rows - 1) + ")";
      return SSD_ERR_INVALID_ARGUMENT;
    }
    if (indices[i] >= 0) used.push_back(indices[i]);
  }
  std::sort(used.begin(), used.end());
  const auto twice = std::adjacent_find(used.begin(), used.end());
  if (twice != used.end()) {
    *error = "state_indices uses state row " + std::to_string(*twice) + " more than once";
    return SSD_ERR_INVALID_ARGUMENT;
  }
  return SSD_OK;
}

SsdStatus step_cpu(const SsdStepParams& p, int threads, std::string* error) {
  SsdStatus status = check_step_params(p, error);
  if (status == SSD_OK) status = check_state_indices(p.state_indices, p.batch, p.state_rows, error);
  if (status != SSD_OK) return status;
  return cpu::step(p, threads, error);
}

#ifdef SSD_HAVE_CUDA
size_t cuda_workspace_bytes(const SsdParams& p) { return cuda::forward_workspace_bytes(p); }

SsdStatus forward_cuda(const SsdParams& p, void* stream, void* workspace, std::string* error) {
  SsdStatus status = check_params(p, error);
  if (status != SSD_OK) return status;
  return cuda::forward(p, stream, workspace, error);
}

size_t cuda_step_workspace_bytes(const SsdStepParams& p) { return cuda::step_workspace_bytes(p); }

SsdStatus step_cuda(const SsdStepParams& p, void* stream, void* workspace, int* verdict_host, std::string* error) {
  SsdStatus status = check_step_params(p, error);
  if (status != SSD_OK) return status;
  return cuda::step(p, stream, workspace, verdict_host, error);
}
#else
size_t cuda_workspace_bytes(const SsdParams&) { return 0; }
size_t cuda_step_workspace_bytes(const SsdStepParams&) { return 0; }

SsdStatus step_cuda(const SsdStepParams&, void*, void*, int*, std::string* error) {
  *error = "this build has no CUDA kernels";
  return SSD_ERR_UNSUPPORTED;
}

SsdStatus forward_cuda(const SsdParams&, void*, void*, std::string* error) {
  *error = "this build has no CUDA kernels";
  return SSD_ERR_UNSUPPORTED;
}
#endif

}  // namespace ssd
