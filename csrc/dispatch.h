// The dispatcher: checks an SsdParams block cheaply and sends it to a backend.
#pragma once
#include <cstdint>
#include <string>

#include "ssd_kernels.h"

namespace ssd {

// Sizes and pointers that cannot be right (non-positive sizes, sizes past int32, h % g != 0,
// missing required pointers) fail with SSD_ERR_INVALID_ARGUMENT before any backend runs.
SsdStatus check_params(const SsdParams& p, std::string* error);

// The values of p.cu_seqlens in host memory: 0 first, non-decreasing, seqlen last. forward_cpu
// calls it; a device backend must check them its own way.
SsdStatus check_cu_seqlens(const SsdParams& p, std::string* error);

// The CPU forward. threads: CPU threads (<= 0: the default).
SsdStatus forward_cpu(const SsdParams& p, int threads, std::string* error);

// The step's sizes, pointers, dtypes and strides (every backend).
SsdStatus check_step_params(const SsdStepParams& p, std::string* error);

// The state indices in host memory: each < state_rows, and no row used twice (negative entries,
// padding, excepted). step_cpu calls it before anything is written; a device backend must check
// them its own way (duplicates would race).
SsdStatus check_state_indices(const int32_t* indices, int64_t batch, int64_t state_rows, std::string* error);

// The CPU decode step, in place on p.state. threads: CPU threads (<= 0: the default).
SsdStatus step_cpu(const SsdStepParams& p, int threads, std::string* error);

// The CUDA forward on the current device: `stream` is a cudaStream_t, `workspace` device memory of
// cuda_workspace_bytes(p). Builds without CUDA return SSD_ERR_UNSUPPORTED.
size_t cuda_workspace_bytes(const SsdParams& p);
SsdStatus forward_cuda(const SsdParams& p, void* stream, void* workspace, std::string* error);

// The backward's block: p.fwd as check_params (minus the forward's outputs), the incoming gradient
// dy and the required gradient outputs (dx, ddt, dA, dB, dC), dD only with fwd.D, dz only with fwd.z.
SsdStatus check_backward_params(const SsdBackwardParams& p, std::string* error);

// The CPU backward. threads: CPU threads (<= 0: the default).
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
