// The parameter contract: the one check of each parameter block of include/ssd_kernels.h. The
// N-API binding, the C ABI and the bench harnesses call these before any backend runs; backends
// (csrc/cpu, csrc/cuda) trust a block that passed them and check nothing again. Each returns SSD_OK,
// or SSD_ERR_INVALID_ARGUMENT with *error naming the field, what was expected and what came.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "ssd_kernels.h"

namespace ssd {

// The options: the scalar fields of the blocks that a caller chooses, one row each in kOptions.
// The binding reads each from a call's argument object under `name` (read_options, binding/util.h);
// check_params and check_step_params check its rule. A new option is its field in
// include/ssd_kernels.h, a row here and its row in lib/validate.ts (OPTIONS); then the kernels
// that implement it. Read and checked by their own code instead: dt_min and dt_max (dtLimit), a
// pair with a rule across both (check_dt_limits); D_per_channel, D's layout, read with D and
// checked by check_layout; the sizes.
struct Option {
  enum Kind { kBool, kInt, kFloat };
  enum Block { kForward, kStep };  // SsdParams (SsdBackwardParams.fwd too), SsdStepParams
  const char* name;   // in the argument object (lib/native.ts)
  const char* field;  // in the block, for messages
  // kBool: an int32_t, 1 where the argument is truthy, else 0; kInt: an int64_t, from an integer
  // in [1, 2^31-1]; kFloat: a float, from a number
  Kind kind;
  int64_t offset[2];            // the field's offsetof in each Block; -1 where that block lacks it
  double fallback = 0;          // its value in a cudaSupports query that leaves it out
  bool (*ok)(double) = nullptr; // its rule, if any; a value it refuses fails with
  const char* rule = nullptr;   // "<field> <rule>, got <value>"
};

inline constexpr Option kOptions[] = {
    {"chunkSize", "chunk_size", Option::kInt, {offsetof(SsdParams, chunk_size), -1}, 256,
     [](double c) { return c >= 16 && c <= 256 && (int64_t(c) & (int64_t(c) - 1)) == 0; },
     "must be a power of two in [16, 256]"},
    {"dtSoftplus", "dt_softplus", Option::kBool, {offsetof(SsdParams, dt_softplus), offsetof(SsdStepParams, dt_softplus)}},
};

// Sizes (each in [1, 2^31-1], ngroups dividing nheads), chunk size (a power of two in [16, 256]),
// dtypes, required pointers and the options' combinations of a forward block.
SsdStatus check_params(const SsdParams& p, std::string* error);

// p.fwd as check_params (minus the forward's outputs), the incoming gradient dy and the required
// gradient outputs (dx, ddt, dA, dB, dC), dD only with fwd.D, dz only with fwd.z; cu_seqlens as
// the forward takes it (batch 1, no seq_idx, no initial_states), no varlen_states.
SsdStatus check_backward_params(const SsdBackwardParams& p, std::string* error);

// A pack's backward as its seq_idx row's (include/ssd_kernels.h: sequence k's positions get k):
// `given` with the row `seq` (seqlen entries) in place of its cu_seqlens, or `given` itself when it
// has none. The backends whose kernels take seq_idx only (the CPU, the sm_80 CUDA launches) run a
// pack through it, each writing the row its own way.
inline SsdBackwardParams packed_as_seq_idx(const SsdBackwardParams& given, const int32_t* seq) {
  SsdBackwardParams bp = given;
  if (!given.fwd.cu_seqlens) return bp;
  bp.fwd.seq_idx = seq;
  bp.fwd.seq_idx_batch_stride = given.fwd.seqlen;
  bp.fwd.cu_seqlens = nullptr;
  bp.fwd.num_seqs = 0;
  return bp;
}

// The step's sizes, pointers, dtypes (the state of a dtype of the step column, core/dtype.h) and dt limits.
SsdStatus check_step_params(const SsdStepParams& p, std::string* error);

// Strides and alignment of a block that passed the check above: every stride >= 0, offsets within
// 64 bits, outputs never overlapping themselves, pointers aligned to their elements. The binding
// builds dense strides itself; the C ABI, which takes any strides, checks them here.
SsdStatus check_layout(const SsdParams& p, std::string* error);
SsdStatus check_backward_layout(const SsdBackwardParams& p, std::string* error);
SsdStatus check_step_layout(const SsdStepParams& p, std::string* error);

// Values in host memory, checked where they are read on the host (the CPU entries of the forward and
// the backward, core/dispatch.cpp; a device backend checks them its own way): cu_seqlens 0 first, non-decreasing, seqlen last; state indices
// each below state_rows and no row used twice (negative entries, padding, excepted).
SsdStatus check_cu_seqlens(const SsdParams& p, std::string* error);
SsdStatus check_state_indices(const int32_t* indices, int64_t batch, int64_t state_rows, std::string* error);

}  // namespace ssd
