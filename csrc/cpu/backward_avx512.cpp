// AVX-512 instantiation of the CPU SSD backward (compiled with -mavx512f -mavx512vl -mavx512bw
// -mavx512dq -mfma -mf16c). Nothing here runs unless cpu_backend.cpp's dispatch checked the CPU.
#if defined(__x86_64__)
// GCC 12's AVX-512 intrinsics use `__m512 __Y = __Y;` for undefined vectors, which -Wall reports as
// uninitialised once inlined (GCC bug 105593, fixed in GCC 13); the warning is a false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

namespace ssd { namespace cpu { namespace isa_avx512 { namespace {

#include "convert.inc"
#include "simd_avx512.inc"
#include "simd_math_x86.inc"

constexpr int BWD_NP = 4;  // 64 channels of p per tile
constexpr int BWD_NN = 4;  // 16 state registers, 16 for the adjoint

#include "kernel_common.inc"
#include "ssd_backward.inc"

}  // namespace
}  // namespace isa_avx512

namespace detail {
SsdStatus backward_avx512(const SsdBackwardParams& p, int threads, char* err, size_t errlen) {
  return isa_avx512::backward_impl(p, threads, err, errlen);
}
}  // namespace detail
}}  // namespace ssd::cpu
#endif  // __x86_64__
