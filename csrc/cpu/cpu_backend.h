#pragma once
#include <string>
#include "ssd_kernels.h"  // include dir "include/" is on the include path

namespace ssd { namespace cpu {

enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2 };

// What this CPU (and OS) supports, detected once with cpuid/xgetbv and cached.
Isa best_isa();
// best_isa(), lowered by env SSD_KERNELS_CPU_ISA=scalar|avx2|avx512 (read on every call; never raises
// above best_isa(); an unknown value is ignored).
Isa active_isa();
const char* isa_name(Isa);  // "scalar", "avx2", "avx512"
// CPUs available to this process (sched_getaffinity on Linux), >= 1.
int default_threads();

// Forward of the SSD (y, and final_states if p.final_states != nullptr), for a block that passed
// check_params and check_cu_seqlens (core/params.h; the dispatcher's forward_cpu). threads <= 0 means
// default_threads(). Never throws, never aborts; returns SSD_OK or an error code and fills *error
// (when error != nullptr) with a message. Results are bitwise identical for any thread count.
SsdStatus forward(const SsdParams& p, int threads, std::string* error);

// Backward of the SSD: every gradient p asks for (see SsdBackwardParams) of a block that passed
// check_backward_params (and check_cu_seqlens: a pack runs as its equivalent seq_idx row), with the
// same conventions
// as forward(): never throws or aborts, bitwise identical results for any thread count.
SsdStatus backward(const SsdBackwardParams& p, int threads, std::string* error);

// Measured fp32 FMA throughput of this machine with `threads` threads, in GFLOP/s (2 flops per FMA),
// using the active ISA's widest vectors and several independent accumulators, running about
// `seconds` in total. Returns 0 on failure.
double fma_peak_gflops(int threads, double seconds);

}}  // namespace ssd::cpu
