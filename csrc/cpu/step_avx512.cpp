// AVX-512 instantiation of the CPU step (compiled with -mavx512f -mavx512vl -mavx512bw -mavx512dq
// -mfma -mf16c). Nothing here runs unless step_backend.cpp's dispatch checked the CPU.
#if defined(__x86_64__)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"  // GCC 12 false positive in AVX-512 intrinsics (bug 105593)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#include "cpu_internal.h"

namespace ssd { namespace cpu { namespace step_avx512 { namespace {

#include "convert.inc"
#include "simd_avx512.inc"
#include "simd_math_x86.inc"
#include "kernel_common.inc"

constexpr int STEP_NV = 8;    // 16 of the 32 zmm registers hold B and C
constexpr int STEP_ROWS = 1;  // one row at a time (with two sums) measured a little faster than two
// Prefetch the state 8 KiB ahead with write intent (PREFETCHW, which every AVX-512 CPU has; the
// compiler emits it for __builtin_prefetch only with -mprfchw), which beats a read prefetch 4 KiB
// ahead once the state comes from DRAM (bench/NOTES.md).
constexpr int64_t STEP_PF_BYTES = 8192;
static inline void step_prefetch(const void* p) { asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(p))); }

#include "step_kernel.inc"

}  // namespace
}  // namespace step_avx512

namespace detail {
SsdStatus step_avx512(const SsdStepParams& p, int threads, char* err, size_t errlen) {
  return step_avx512::step_impl(p, threads, err, errlen);
}
void rmw_pass_avx512(float* a, int64_t n, float s) { step_avx512::rmw_pass(a, n, s); }
}  // namespace detail
}}  // namespace ssd::cpu
#endif  // __x86_64__
