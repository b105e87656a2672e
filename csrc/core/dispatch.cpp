// The dispatcher: sends a checked parameter block (core/params.h) to a backend. The CUDA entries ask
// the CUDA layer first whether it takes the block (cuda_supports*), and refuse with
// SSD_ERR_UNSUPPORTED and its reason otherwise.
#include "core/dispatch.h"

#include "cpu/cpu_backend.h"
#include "cpu/step_backend.h"
#ifdef SSD_HAVE_CUDA
#include "cuda/backend.h"
#endif

namespace ssd {

#ifndef SSD_HAVE_CUDA
// A build without CUDA kernels: the CUDA layer (cuda/backend.h) takes nothing, so every CUDA entry
// below refuses with this reason and the launches are never reached.
namespace cuda { namespace {
bool none(std::string* why) {
  *why = "this build has no CUDA kernels";
  return false;
}
bool supports(const SsdParams&, std::string* why) { return none(why); }
bool supports_step(const SsdStepParams&, std::string* why) { return none(why); }
size_t forward_workspace_bytes(const SsdParams&) { return 0; }
size_t backward_workspace_bytes(const SsdBackwardParams&) { return 0; }
size_t step_workspace_bytes(const SsdStepParams&) { return 0; }
SsdStatus forward(const SsdParams&, void*, void*, std::string*) { return SSD_ERR_UNSUPPORTED; }
SsdStatus backward(const SsdBackwardParams&, void*, void*, std::string*) { return SSD_ERR_UNSUPPORTED; }
SsdStatus step(const SsdStepParams&, void*, void*, int*, std::string*) { return SSD_ERR_UNSUPPORTED; }
bool set_path_override(bool, const char*) { return true; }  // no kernels to choose between
}}  // namespace cuda::(anonymous)
#endif

SsdStatus forward_cpu(const SsdParams& p, int threads, std::string* error) {
  SsdStatus status = check_cu_seqlens(p, error);
  if (status != SSD_OK) return status;
  return cpu::forward(p, threads, error);
}

SsdStatus backward_cpu(const SsdBackwardParams& p, int threads, std::string* error) {
  SsdStatus status = check_cu_seqlens(p.fwd, error);
  if (status != SSD_OK) return status;
  return cpu::backward(p, threads, error);
}

SsdStatus step_cpu(const SsdStepParams& p, int threads, std::string* error) {
  SsdStatus status = check_state_indices(p.state_indices, p.batch, p.state_rows, error);
  if (status != SSD_OK) return status;
  return cpu::step(p, threads, error);
}

bool cuda_supports(const SsdParams& p, std::string* why) { return cuda::supports(p, why); }

bool cuda_supports_step(const SsdStepParams& p, std::string* why) { return cuda::supports_step(p, why); }

bool cuda_set_path_override(bool backward, const char* path) { return cuda::set_path_override(backward, path); }

bool cuda_supports_backward(const SsdBackwardParams& p, std::string* why) {
  if (!cuda::supports(p.fwd, why)) return false;
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
  if (!same) *why = "the CUDA backward needs dy and every gradient in its input's dtype and layout";
  return same;
}

size_t cuda_workspace_bytes(const SsdParams& p) { return cuda::forward_workspace_bytes(p); }
size_t cuda_backward_workspace_bytes(const SsdBackwardParams& p) { return cuda::backward_workspace_bytes(p); }
size_t cuda_step_workspace_bytes(const SsdStepParams& p) { return cuda::step_workspace_bytes(p); }

SsdStatus forward_cuda(const SsdParams& p, void* stream, void* workspace, std::string* error) {
  if (!cuda_supports(p, error)) return SSD_ERR_UNSUPPORTED;
  return cuda::forward(p, stream, workspace, error);
}

SsdStatus backward_cuda(const SsdBackwardParams& p, void* stream, void* workspace, std::string* error) {
  if (!cuda_supports_backward(p, error)) return SSD_ERR_UNSUPPORTED;
  return cuda::backward(p, stream, workspace, error);
}

SsdStatus step_cuda(const SsdStepParams& p, void* stream, void* workspace, int* verdict_host, std::string* error) {
  if (!cuda_supports_step(p, error)) return SSD_ERR_UNSUPPORTED;
  return cuda::step(p, stream, workspace, verdict_host, error);
}

}  // namespace ssd
