// The CPU decode step and the memory-bandwidth probe of its benchmark (step_backend.cpp, baseline
// flags; the per-ISA kernels are declared in cpu_internal.h).
#pragma once
#include <stddef.h>
#include <string>
#include "ssd_kernels.h"

namespace ssd { namespace cpu {

// One decode step (see SsdStepParams), in place on p.state. The parameters must have passed
// ssd::check_step_params and ssd::check_state_indices (core/params.h). threads <= 0 means
// default_threads(); fewer are used when the state is small. Never throws; results are bitwise the
// same for any thread count.
SsdStatus step(const SsdStepParams& p, int threads, std::string* error);

// Read-modify-write bandwidth in GB/s (bytes read plus bytes written, per second) of `threads`
// threads sweeping a buffer of `bytes` in place with the active ISA's vectors, for about `seconds`
// after one untimed pass. The ceiling for a kernel that reads and writes that much memory once.
// Returns 0 when the buffer cannot be allocated.
double rmw_bandwidth_gbps(int threads, size_t bytes, double seconds);

}}  // namespace ssd::cpu
