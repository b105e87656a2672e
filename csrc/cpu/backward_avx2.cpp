// AVX2 + FMA + F16C instantiation of the CPU SSD backward (compiled with -mavx2 -mfma -mf16c).
// Nothing here runs unless cpu_backend.cpp's dispatch checked the CPU.
#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

namespace ssd { namespace cpu { namespace isa_avx2 { namespace {

#include "convert.inc"
#include "simd_avx2.inc"
#include "simd_math_x86.inc"

constexpr int BWD_NP = 2;  // 16 channels of p per tile
constexpr int BWD_NN = 2;  // 4 state registers, 4 for the adjoint (16 ymm registers)

#include "kernel_common.inc"
#include "ssd_backward.inc"

}  // namespace
}  // namespace isa_avx2

namespace detail {
SsdStatus backward_avx2(const SsdBackwardParams& p, int threads, char* err, size_t errlen) {
  return isa_avx2::backward_impl(p, threads, err, errlen);
}
}  // namespace detail
}}  // namespace ssd::cpu
#endif  // __x86_64__
