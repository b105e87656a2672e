// AVX2 + FMA + F16C instantiation of the CPU SSD kernel (compiled with -mavx2 -mfma -mf16c).
// Nothing here runs unless cpu_backend.cpp's dispatch checked the CPU.
#if defined(__x86_64__)
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

namespace ssd { namespace cpu { namespace isa_avx2 { namespace {

constexpr int W = 8;
constexpr int KERNEL_NP = 2;  // 16 channels of p per task (16 ymm registers)
constexpr int KERNEL_NN = 4;
typedef __m256 VF;

static inline VF vload(const float* p) { return _mm256_loadu_ps(p); }
static inline void vstore(float* p, VF v) { _mm256_storeu_ps(p, v); }
static inline VF vset1(float f) { return _mm256_set1_ps(f); }
static inline VF vzero() { return _mm256_setzero_ps(); }
static inline VF vadd(VF a, VF b) { return _mm256_add_ps(a, b); }
static inline VF vsub(VF a, VF b) { return _mm256_sub_ps(a, b); }
static inline VF vmul(VF a, VF b) { return _mm256_mul_ps(a, b); }
static inline VF vdiv(VF a, VF b) { return _mm256_div_ps(a, b); }
static inline VF vmin(VF a, VF b) { return _mm256_min_ps(a, b); }
static inline VF vmax(VF a, VF b) { return _mm256_max_ps(a, b); }
static inline VF vfma(VF a, VF b, VF c) { return _mm256_fmadd_ps(a, b, c); }
static inline VF vsel_gt(VF a, VF b, VF x, VF y) { return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_GT_OQ)); }
static inline VF vsel_lt(VF a, VF b, VF x, VF y) { return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_LT_OQ)); }
static inline VF vround(VF x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline VF vpow2i(VF n) {
  const __m256i i = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
  return _mm256_castsi256_ps(_mm256_slli_epi32(i, 23));
}
static inline void vsplit(VF x, VF* e, VF* m) {
  const __m256i b = _mm256_castps_si256(x);
  *e = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(b, 23), _mm256_set1_epi32(127)));
  *m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(b, _mm256_set1_epi32(0x7FFFFF)),
                                           _mm256_set1_epi32(0x3F800000)));
}
static inline VF vload_bf16(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
static inline VF vload_f16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
static inline void vstore_f16(uint16_t* p, VF v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
static inline void vstore_bf16(uint16_t* p, VF v) {
  const __m256i b = _mm256_castps_si256(v);
  const __m256i hi = _mm256_srli_epi32(b, 16);
  const __m256i lsb = _mm256_and_si256(hi, _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(b, _mm256_set1_epi32(0x7FFF)), lsb), 16);
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  r = _mm256_blendv_epi8(r, _mm256_or_si256(hi, _mm256_set1_epi32(0x40)), nan);
  const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), packed);
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
  alignas(32) float f[8];
  vstore(f, s);
  return f[0] + f[1] + f[2] + f[3] + f[4] + f[5] + f[6] + f[7];
}

}  // namespace
}  // namespace isa_avx2

namespace detail {
SsdStatus forward_avx2(const SsdParams& p, int threads, char* err, size_t errlen) {
  return isa_avx2::forward_impl(p, threads, err, errlen);
}
float fma_burst_avx2(int64_t iters, float seed, double* flops_per_iter) {
  return isa_avx2::fma_burst(iters, seed, flops_per_iter);
}
}  // namespace detail
}}  // namespace ssd::cpu
#endif  // __x86_64__
