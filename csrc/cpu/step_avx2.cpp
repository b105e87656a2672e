// AVX2 + FMA instantiation of the CPU step (compiled with -mavx2 -mfma -mf16c). Nothing here runs
// unless step_backend.cpp's dispatch checked the CPU.
#if defined(__x86_64__)
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

namespace ssd { namespace cpu { namespace step_avx2 { namespace {

constexpr int W = 8;
typedef __m256 VF;

static inline VF vload(const float* p) { return _mm256_loadu_ps(p); }
static inline void vstore(float* p, VF v) { _mm256_storeu_ps(p, v); }
static inline VF vset1(float f) { return _mm256_set1_ps(f); }
static inline VF vzero() { return _mm256_setzero_ps(); }
static inline VF vadd(VF a, VF b) { return _mm256_add_ps(a, b); }
static inline VF vmul(VF a, VF b) { return _mm256_mul_ps(a, b); }
static inline VF vfma(VF a, VF b, VF c) { return _mm256_fmadd_ps(a, b, c); }
static inline float vhsum(VF v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
static inline VF vload_bf16(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
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
