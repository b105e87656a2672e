// AVX2 + FMA instantiation of the CPU step (compiled with -mavx2 -mfma -mf16c). Nothing here runs
// unless step_backend.cpp's dispatch checked the CPU.
#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#include "cpu_internal.h"

namespace ssd { namespace cpu { namespace step_avx2 { namespace {

#include "convert.inc"
#include "simd_avx2.inc"
#include "simd_math_x86.inc"
#include "kernel_common.inc"

constexpr int STEP_NV = 4;    // 8 of the 16 ymm registers hold B and C
constexpr int STEP_ROWS = 1;
constexpr int64_t STEP_PF_BYTES = 4096;  // about 8 n=128 rows ahead, write intent where the ISA has it
static inline void step_prefetch(const void* p) { __builtin_prefetch(p, 1, 3); }

#include "step_kernel.inc"

}  // namespace
}  // namespace step_avx2

namespace detail {
SsdStatus step_avx2(const SsdStepParams& p, int threads, char* err, size_t errlen) {
  return step_avx2::step_impl(p, threads, err, errlen);
}
void rmw_pass_avx2(float* a, int64_t n, float s) { step_avx2::rmw_pass(a, n, s); }
}  // namespace detail
}}  // namespace ssd::cpu
#endif  // __x86_64__
