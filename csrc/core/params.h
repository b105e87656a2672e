// The parameter contract: the one check of each parameter block of include/ssd_kernels.h. The
// N-API binding, the C ABI and the bench harnesses call these before any backend runs; backends
// (csrc/cpu, csrc/cuda) trust a block that passed them and check nothing again. Each returns SSD_OK,
// or SSD_ERR_INVALID_ARGUMENT with *error naming the field, what was expected and what came.
#pragma once
#include <cstdint>
#include <string>

#include "ssd_kernels.h"

namespace ssd {

// Sizes (each in [1, 2^31-1], ngroups dividing nheads), chunk size (a power of two in [16, 256]),
// dtypes, required pointers and the options' combinations of a forward block.
SsdStatus check_params(const SsdParams& p, std::string* error);

// p.fwd as check_params (minus the forward's outputs), the incoming gradient dy and the required
// gradient outputs (dx, ddt, dA, dB, dC), dD only with fwd.D, dz only with fwd.z; no cu_seqlens.
SsdStatus check_backward_params(const SsdBackwardParams& p, std::string* error);

// The step's sizes, pointers, dtypes (the state of a dtype of the step column, core/dtype.h) and dt limits.
SsdStatus check_step_params(const SsdStepParams& p, std::string* error);

// Strides and alignment of a block that passed the check above: every stride >= 0, offsets within
// 64 bits, outputs never overlapping themselves, pointers aligned to their elements. The binding
// builds dense strides itself; the C ABI, which takes any strides, checks them here.
SsdStatus check_layout(const SsdParams& p, std::string* error);
SsdStatus check_backward_layout(const SsdBackwardParams& p, std::string* error);
SsdStatus check_step_layout(const SsdStepParams& p, std::string* error);

// Values in host memory, checked where they are read on the host (the CPU backend's entry; a device
// backend checks them its own way): cu_seqlens 0 first, non-decreasing, seqlen last; state indices
// each below state_rows and no row used twice (negative entries, padding, excepted).
SsdStatus check_cu_seqlens(const SsdParams& p, std::string* error);
SsdStatus check_state_indices(const int32_t* indices, int64_t batch, int64_t state_rows, std::string* error);

}  // namespace ssd
