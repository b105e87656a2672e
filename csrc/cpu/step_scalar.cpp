// Portable instantiation of the CPU step (baseline flags; the only one on non-x86). Vectors are
// 4-float structs with plain loops, which the compiler maps to SSE2 / NEON.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

namespace ssd { namespace cpu { namespace step_scalar { namespace {

constexpr int W = 4;
struct VF { float v[W]; };

#define SSD_LANES(expr) VF r; for (int l = 0; l < W; ++l) r.v[l] = (expr); return r
static inline VF vload(const float* p) { VF r; memcpy(r.v, p, sizeof r.v); return r; }
static inline void vstore(float* p, VF v) { memcpy(p, v.v, sizeof v.v); }
static inline VF vset1(float f) { SSD_LANES(f); }
static inline VF vzero() { SSD_LANES(0.0f); }
static inline VF vadd(VF a, VF b) { SSD_LANES(a.v[l] + b.v[l]); }
static inline VF vmul(VF a, VF b) { SSD_LANES(a.v[l] * b.v[l]); }
// separate multiply and add: no hardware FMA is assumed in the baseline
static inline VF vfma(VF a, VF b, VF c) { SSD_LANES(a.v[l] * b.v[l] + c.v[l]); }
#undef SSD_LANES
static inline float vhsum(VF v) { return (v.v[0] + v.v[1]) + (v.v[2] + v.v[3]); }

// the scalar conversions are defined in step_kernel.inc (dtype_convert.inc); vector forms follow it
static inline VF vload_bf16(const uint16_t* p);
static inline void vstore_bf16(uint16_t* p, VF v);

#include "step_kernel.inc"

static inline VF vload_bf16(const uint16_t* p) { VF r; for (int l = 0; l < W; ++l) r.v[l] = bf16_to_f32(p[l]); return r; }
static inline void vstore_bf16(uint16_t* p, VF v) { for (int l = 0; l < W; ++l) p[l] = f32_to_bf16(v.v[l]); }

}  // namespace
}  // namespace step_scalar

namespace detail {
SsdStatus step_scalar(const SsdStepParams& p, int threads, char* err, size_t errlen) {
  return step_scalar::step_impl(p, threads, err, errlen);
}
void rmw_pass_scalar(float* a, int64_t n, float s) { step_scalar::rmw_pass(a, n, s); }
}  // namespace detail
}}  // namespace ssd::cpu
