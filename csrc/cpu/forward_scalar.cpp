// Portable instantiation of the CPU SSD kernel (baseline flags; the only kernel on non-x86).
// Vectors are 4-float structs with plain loops, which the compiler maps to SSE2 / NEON.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

namespace ssd { namespace cpu { namespace isa_scalar { namespace {

constexpr int W = 4;
constexpr int KERNEL_NP = 2;
constexpr int KERNEL_NN = 4;
struct VF { float v[W]; };

#define SSD_LANES(expr) VF r; for (int l = 0; l < W; ++l) r.v[l] = (expr); return r
static inline VF vload(const float* p) { VF r; memcpy(r.v, p, sizeof r.v); return r; }
static inline void vstore(float* p, VF v) { memcpy(p, v.v, sizeof v.v); }
static inline VF vset1(float f) { SSD_LANES(f); }
static inline VF vzero() { SSD_LANES(0.0f); }
static inline VF vadd(VF a, VF b) { SSD_LANES(a.v[l] + b.v[l]); }
static inline VF vsub(VF a, VF b) { SSD_LANES(a.v[l] - b.v[l]); }
static inline VF vmul(VF a, VF b) { SSD_LANES(a.v[l] * b.v[l]); }
static inline VF vdiv(VF a, VF b) { SSD_LANES(a.v[l] / b.v[l]); }
static inline VF vmin(VF a, VF b) { SSD_LANES(b.v[l] < a.v[l] ? b.v[l] : a.v[l]); }
static inline VF vmax(VF a, VF b) { SSD_LANES(b.v[l] > a.v[l] ? b.v[l] : a.v[l]); }
// separate multiply and add: no hardware FMA is assumed in the baseline
static inline VF vfma(VF a, VF b, VF c) { SSD_LANES(a.v[l] * b.v[l] + c.v[l]); }
static inline VF vsel_gt(VF a, VF b, VF x, VF y) { SSD_LANES(a.v[l] > b.v[l] ? x.v[l] : y.v[l]); }
static inline VF vexp(VF a) { SSD_LANES(expf(a.v[l])); }
static inline VF vlog1p(VF a) { SSD_LANES(log1pf(a.v[l])); }
#undef SSD_LANES

// scalar conversions are defined in ssd_kernel.inc; declare the vector forms after it
static inline VF vload_bf16(const uint16_t* p);
static inline VF vload_f16(const uint16_t* p);
static inline void vstore_bf16(uint16_t* p, VF v);
static inline void vstore_f16(uint16_t* p, VF v);

#include "ssd_kernel.inc"

static inline VF vload_bf16(const uint16_t* p) { VF r; for (int l = 0; l < W; ++l) r.v[l] = bf16_to_f32(p[l]); return r; }
static inline VF vload_f16(const uint16_t* p) { VF r; for (int l = 0; l < W; ++l) r.v[l] = f16_to_f32(p[l]); return r; }
static inline void vstore_bf16(uint16_t* p, VF v) { for (int l = 0; l < W; ++l) p[l] = f32_to_bf16(v.v[l]); }
static inline void vstore_f16(uint16_t* p, VF v) { for (int l = 0; l < W; ++l) p[l] = f32_to_f16(v.v[l]); }

static float fma_burst(int64_t iters, float seed, double* flops_per_iter) {
  constexpr int K = 8;
  VF acc[K];
  for (int k = 0; k < K; ++k) acc[k] = vset1(seed + 0.001f * (float)k);
  const VF m = vset1(0.9999999f), a = vset1(1e-7f);
  for (int64_t it = 0; it < iters; ++it) {
    for (int k = 0; k < K; ++k) acc[k] = vfma(acc[k], m, a);
  }
  float s = 0.0f;
  for (int k = 0; k < K; ++k)
    for (int l = 0; l < W; ++l) s += acc[k].v[l];
  *flops_per_iter = 2.0 * K * W;
  return s;
}

}  // namespace
}  // namespace isa_scalar

namespace detail {
SsdStatus forward_scalar(const SsdParams& p, int threads, char* err, size_t errlen) {
  return isa_scalar::forward_impl(p, threads, err, errlen);
}
float fma_burst_scalar(int64_t iters, float seed, double* flops_per_iter) {
  return isa_scalar::fma_burst(iters, seed, flops_per_iter);
}
}  // namespace detail
}}  // namespace ssd::cpu
