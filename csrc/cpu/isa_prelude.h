// isa_prelude.h: the top of every per-ISA kernel file. forward_<isa>.cpp, backward_<isa>.cpp and
// step_<isa>.cpp each define SSD_CPU_ISA (avx512, avx2 or scalar) and their operation's tuning, then
// include their operation's instance file (forward_isa.inc, backward_isa.inc, step_isa.inc), which
// starts with this header. Each per-ISA file stays its own translation unit because its name picks
// its -m flags (CMakeLists.txt, scripts/gyp-sources.js): *_avx512.cpp -mavx512f -mavx512vl
// -mavx512bw -mavx512dq -mfma -mf16c, *_avx2.cpp -mavx2 -mfma -mf16c, the others baseline flags.
// Nothing in an AVX file runs unless cpu_backend.cpp's dispatch checked the CPU.
//
// It gives the instance files:
//   SSD_CPU_LEVEL      2 for avx512, 1 for avx2, 0 for scalar (the x86 ones are above 0)
//   SSD_CPU_COMPILED   0 for an x86 instruction set on another architecture (the file is empty)
//   SSD_CPU_SIMD       the SIMD layer to include: "simd_<isa>.inc"
//   SSD_CPU_NS         the ISA's namespace, isa_<isa>, in which the kernel is compiled (inside an
//                      anonymous namespace, so the copies built with different flags never mix)
//   SSD_CPU_ENTRY(f)   the name of entry f for this ISA in cpu_internal.h: f_<isa>
#pragma once

#define SSD_CPU_CAT2(a, b) a##b
#define SSD_CPU_CAT(a, b) SSD_CPU_CAT2(a, b)
#define SSD_CPU_LEVEL_avx512 2
#define SSD_CPU_LEVEL_avx2 1
#define SSD_CPU_LEVEL_scalar 0
#define SSD_CPU_SIMD_avx512 "simd_avx512.inc"
#define SSD_CPU_SIMD_avx2 "simd_avx2.inc"
#define SSD_CPU_SIMD_scalar "simd_scalar.inc"
#define SSD_CPU_LEVEL SSD_CPU_CAT(SSD_CPU_LEVEL_, SSD_CPU_ISA)
#define SSD_CPU_SIMD SSD_CPU_CAT(SSD_CPU_SIMD_, SSD_CPU_ISA)
#define SSD_CPU_NS SSD_CPU_CAT(isa_, SSD_CPU_ISA)
#define SSD_CPU_ENTRY(f) SSD_CPU_CAT(f##_, SSD_CPU_ISA)

#if SSD_CPU_LEVEL > 0 && !defined(__x86_64__)
#define SSD_CPU_COMPILED 0
#else
#define SSD_CPU_COMPILED 1
#if SSD_CPU_LEVEL > 0
// GCC 12's AVX-512 intrinsics use `__m512 __Y = __Y;` for undefined vectors, which -Wall reports as
// uninitialised once inlined (GCC bug 105593, fixed in GCC 13); the warning is a false positive.
#if SSD_CPU_LEVEL == 2 && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#endif
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#include "core/dtype.h"
#include "cpu_internal.h"
#endif
