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

constexpr int W = 16;
constexpr int KERNEL_NP = 4;  // 64 channels of p per task
constexpr int KERNEL_NN = 4;  // 16 state registers
typedef __m512 VF;

static inline VF vload(const float* p) { return _mm512_loadu_ps(p); }
static inline void vstore(float* p, VF v) { _mm512_storeu_ps(p, v); }
static inline VF vset1(float f) { return _mm512_set1_ps(f); }
static inline VF vzero() { return _mm512_setzero_ps(); }
static inline VF vadd(VF a, VF b) { return _mm512_add_ps(a, b); }
static inline VF vsub(VF a, VF b) { return _mm512_sub_ps(a, b); }
static inline VF vmul(VF a, VF b) { return _mm512_mul_ps(a, b); }
static inline VF vdiv(VF a, VF b) { return _mm512_div_ps(a, b); }
static inline VF vmin(VF a, VF b) { return _mm512_min_ps(a, b); }
static inline VF vmax(VF a, VF b) { return _mm512_max_ps(a, b); }
static inline VF vfma(VF a, VF b, VF c) { return _mm512_fmadd_ps(a, b, c); }
static inline VF vsel_gt(VF a, VF b, VF x, VF y) {
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_GT_OQ), y, x);
}
static inline VF vsel_lt(VF a, VF b, VF x, VF y) {
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_LT_OQ), y, x);
}
static inline VF vround(VF x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline VF vpow2i(VF n) {
  const __m512i i = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
  return _mm512_castsi512_ps(_mm512_slli_epi32(i, 23));
}
static inline void vsplit(VF x, VF* e, VF* m) {
  const __m512i b = _mm512_castps_si512(x);
  *e = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(b, 23), _mm512_set1_epi32(127)));
  *m = _mm512_castsi512_ps(_mm512_or_si512(_mm512_and_si512(b, _mm512_set1_epi32(0x7FFFFF)),
                                           _mm512_set1_epi32(0x3F800000)));
}
static inline VF vload_bf16(const uint16_t* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
static inline VF vload_f16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
static inline void vstore_f16(uint16_t* p, VF v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                      _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
static inline void vstore_bf16(uint16_t* p, VF v) {
  const __m512i b = _mm512_castps_si512(v);
  const __m512i hi = _mm512_srli_epi32(b, 16);
  const __m512i lsb = _mm512_and_si512(hi, _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7FFF)), lsb), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(r));
}

#include "simd_math_x86.inc"
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
