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

#include "cpu_internal.h"

namespace ssd { namespace cpu { namespace step_avx512 { namespace {

constexpr int W = 16;
typedef __m512 VF;

static inline VF vload(const float* p) { return _mm512_loadu_ps(p); }
static inline void vstore(float* p, VF v) { _mm512_storeu_ps(p, v); }
static inline VF vset1(float f) { return _mm512_set1_ps(f); }
static inline VF vzero() { return _mm512_setzero_ps(); }
static inline VF vadd(VF a, VF b) { return _mm512_add_ps(a, b); }
static inline VF vmul(VF a, VF b) { return _mm512_mul_ps(a, b); }
static inline VF vfma(VF a, VF b, VF c) { return _mm512_fmadd_ps(a, b, c); }
static inline float vhsum(VF v) { return _mm512_reduce_add_ps(v); }
static inline VF vload_bf16(const uint16_t* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
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
