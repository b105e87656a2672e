// AVX-512 instantiation of the CPU SSD kernel (compiled with -mavx512f -mavx512vl -mavx512bw
// -mavx512dq -mfma -mf16c). Nothing here runs unless cpu_backend.cpp's dispatch checked the CPU.
#if defined(__x86_64__)
// GCC 12's AVX-512 intrinsics use `__m512 __Y = __Y;` for undefined vectors, which -Wall reports as
// uninitialised once inlined (GCC bug 105593, fixed in GCC 13); the warning is a false positive.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

namespace ssd { namespace cpu { namespace isa_avx512 { namespace {

constexpr int KERNEL_NP = 4;  // 64 channels of p per task
constexpr int KERNEL_NN = 4;  // 16 state registers

#include "simd_avx512.inc"
#include "ssd_kernel.inc"

static float fma_burst(int64_t iters, float seed, double* flops_per_iter) {
  // 12 independent accumulators in registers (FMA latency x pipes <= 12)
  VF a0 = vset1(seed + 0.000f), a1 = vset1(seed + 0.001f), a2 = vset1(seed + 0.002f), a3 = vset1(seed + 0.003f), a4 = vset1(seed + 0.004f), a5 = vset1(seed + 0.005f), a6 = vset1(seed + 0.006f), a7 = vset1(seed + 0.007f), a8 = vset1(seed + 0.008f), a9 = vset1(seed + 0.009f), a10 = vset1(seed + 0.010f), a11 = vset1(seed + 0.011f);
  const VF m = vset1(0.9999999f), c = vset1(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
    a0 = vfma(a0, m, c);
    a1 = vfma(a1, m, c);
    a2 = vfma(a2, m, c);
    a3 = vfma(a3, m, c);
    a4 = vfma(a4, m, c);
    a5 = vfma(a5, m, c);
    a6 = vfma(a6, m, c);
    a7 = vfma(a7, m, c);
    a8 = vfma(a8, m, c);
    a9 = vfma(a9, m, c);
    a10 = vfma(a10, m, c);
    a11 = vfma(a11, m, c);
  }
  const VF s = vadd(vadd(vadd(vadd(vadd(vadd(vadd(vadd(vadd(vadd(vadd(a0, a1), a2), a3), a4), a5), a6), a7), a8), a9), a10), a11);
  *flops_per_iter = 2.0 * 12 * W;
  return _mm512_reduce_add_ps(s);
}

}  // namespace
}  // namespace isa_avx512

namespace detail {
SsdStatus forward_avx512(const SsdParams& p, int threads, char* err, size_t errlen) {
  return isa_avx512::forward_impl(p, threads, err, errlen);
}
float fma_burst_avx512(int64_t iters, float seed, double* flops_per_iter) {
  return isa_avx512::fma_burst(iters, seed, flops_per_iter);
}
}  // namespace detail
}}  // namespace ssd::cpu
#endif  // __x86_64__
