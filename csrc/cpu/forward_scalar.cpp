// Portable instantiation of the CPU SSD kernel (baseline flags; the only kernel on non-x86).
// Vectors are 4-float structs with plain loops, which the compiler maps to SSE2 / NEON.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

namespace ssd { namespace cpu { namespace isa_scalar { namespace {

constexpr int KERNEL_NP = 2;
constexpr int KERNEL_NN = 4;

#include "simd_scalar.inc"
#include "ssd_kernel.inc"

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
