// The arithmetic that every kernel must do the same way (CPU and CUDA; forward, backward and step),
// written once for the host and the device. The step size of a position is
//   d = clamp(softplus?(dt + dt_bias), dt_min, dt_max),   softplus(u) = log(1 + e^u) for u <= 20, else u
// (mamba's threshold), and its derivative with respect to dt (and dt_bias) is 0 where the clamp holds
// d, else softplus'(u) = sigmoid(u) below the threshold, 1 above it or without softplus.
// A NaN goes through as NaN, as in the float64 reference (Math.min / Math.max): the clamp returns a
// NaN v itself (fmaxf / fminf alone would return the bound), and the clamp does not hold a NaN, so its
// derivative passes (and is NaN). For every other v both are the fmaxf / fminf expressions they were,
// bit for bit (signed zeros and the bounds included).
// The CPU's SIMD kernels apply the same rule lane by lane (csrc/cpu/kernel_common.inc: vsoftplus,
// vclamp_step), with their own exp and log1p.
#pragma once
#include <math.h>

#if defined(__CUDACC__)
#define SSD_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define SSD_HOST_DEVICE inline
#endif

namespace ssd { namespace math {

constexpr float kSoftplusThreshold = 20.0f;

SSD_HOST_DEVICE float softplus(float u) { return u <= kSoftplusThreshold ? log1pf(expf(u)) : u; }

SSD_HOST_DEVICE float clamp_step(float v, float lo, float hi) { return v != v ? v : fminf(fmaxf(v, lo), hi); }

// Whether the clamp passes v through (its derivative is then softplus_grad): lo <= v <= hi, or NaN.
SSD_HOST_DEVICE bool clamp_passes(float v, float lo, float hi) { return !(v < lo) && !(v > hi); }

// d from u = dt + dt_bias.
SSD_HOST_DEVICE float step_size(float u, bool use_softplus, float lo, float hi) {
  return clamp_step(use_softplus ? softplus(u) : u, lo, hi);
}

// d(softplus?(u))/du: the derivative where the clamp does not hold d.
SSD_HOST_DEVICE float softplus_grad(float u, bool use_softplus) {
  return use_softplus && u <= kSoftplusThreshold ? 1.0f / (1.0f + expf(-u)) : 1.0f;
}

}}  // namespace ssd::math
