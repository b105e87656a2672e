// The dispatcher: sends a parameter block to a backend. Every block must have passed its check in
// core/params.h (the binding, the C ABI and the harnesses make it); the dispatcher checks only what
// lives in host memory on the CPU path (cu_seqlens, state indices) and what the CUDA path supports.
#pragma once
#include <cstdint>
#include <string>

#include "core/params.h"
#include "ssd_kernels.h"

namespace ssd {

// The CPU forward. threads: CPU threads (<= 0: the default).
SsdStatus forward_cpu(const SsdParams& p, int threads, std::string* error);

// The CPU decode step, in place on p.state. threads: CPU threads (<= 0: the default).
SsdStatus step_cpu(const SsdStepParams& p, int threads, std::string* error);

// Whether the CUDA kernels take a checked block (sizes, dtypes, layouts), with the reason when they
// do not; false in builds without CUDA. device 'auto' runs on the GPU only when these say yes.
bool cuda_supports(const SsdParams& p, std::string* why);
bool cuda_supports_backward(const SsdBackwardParams& p, std::string* why);
bool cuda_supports_step(const SsdStepParams& p, std::string* why);
// Checks only: the CUDA kernels a direction runs on, forced ("sm80", "sm90") or left to its variable
// (null); cuda/backend.h: set_path_override.
bool cuda_set_path_override(bool backward, const char* path);

// The CUDA forward on the current device: `stream` is a cudaStream_t, `workspace` device memory of
// cuda_workspace_bytes(p). Builds without CUDA return SSD_ERR_UNSUPPORTED.
size_t cuda_workspace_bytes(const SsdParams& p);
SsdStatus forward_cuda(const SsdParams& p, void* stream, void* workspace, std::string* error);

// The CPU backward. threads: CPU threads (<= 0: the default). A host cu_seqlens is checked as the
// forward's is (check_cu_seqlens).
SsdStatus backward_cpu(const SsdBackwardParams& p, int threads, std::string* error);

// The CUDA backward, with the forward's conventions (stream, workspace of
// cuda_backward_workspace_bytes(p) bytes); gradients in their inputs' dtypes and layouts. Builds
// without CUDA return SSD_ERR_UNSUPPORTED.
size_t cuda_backward_workspace_bytes(const SsdBackwardParams& p);
SsdStatus backward_cuda(const SsdBackwardParams& p, void* stream, void* workspace, std::string* error);

// The CUDA step on the current device (see cuda_backend.h, step): workspace of
// cuda_step_workspace_bytes(p) device bytes; with state_indices, *verdict_host receives {kind, entry}
// after the stream completes (kind 0: valid). Builds without CUDA return SSD_ERR_UNSUPPORTED.
size_t cuda_step_workspace_bytes(const SsdStepParams& p);
SsdStatus step_cuda(const SsdStepParams& p, void* stream, void* workspace, int* verdict_host, std::string* error);

}  // namespace ssd
