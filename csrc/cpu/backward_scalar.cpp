// Portable instantiation of the CPU SSD backward (baseline flags; the only kernel on non-x86).
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

namespace ssd { namespace cpu { namespace isa_scalar { namespace {

#include "convert.inc"
#include "simd_scalar.inc"

constexpr int BWD_NP = 2;
constexpr int BWD_NN = 2;

#include "kernel_common.inc"
#include "ssd_backward.inc"

}  // namespace
}  // namespace isa_scalar

namespace detail {
SsdStatus backward_scalar(const SsdBackwardParams& p, int threads, char* err, size_t errlen) {
  return isa_scalar::backward_impl(p, threads, err, errlen);
}
}  // namespace detail
}}  // namespace ssd::cpu
