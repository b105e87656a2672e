// Portable instantiation of the CPU step (baseline flags; the only one on non-x86). Vectors are
// 4-float structs with plain loops, which the compiler maps to SSE2 / NEON.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#include "cpu_internal.h"

namespace ssd { namespace cpu { namespace step_scalar { namespace {

#include "convert.inc"
#include "simd_scalar.inc"
#include "kernel_common.inc"

constexpr int STEP_NV = 4;
constexpr int STEP_ROWS = 1;
constexpr int64_t STEP_PF_BYTES = 4096;
static inline void step_prefetch(const void* p) { __builtin_prefetch(p, 1, 3); }

#include "step_kernel.inc"

}  // namespace
}  // namespace step_scalar

namespace detail {
SsdStatus step_scalar(const SsdStepParams& p, int threads, char* err, size_t errlen) {
  return step_scalar::step_impl(p, threads, err, errlen);
}
void rmw_pass_scalar(float* a, int64_t n, float s) { step_scalar::rmw_pass(a, n, s); }
}  // namespace detail
}}  // namespace ssd::cpu
