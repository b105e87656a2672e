// The CPU decode step on AVX2 + FMA (this file is compiled with -mavx2 -mfma -mf16c); step_isa.inc
// is the instance, here is the ISA's tuning.
#define SSD_CPU_ISA avx2
#define SSD_STEP_NV 4  // 8 of the 16 ymm registers hold B and C
#define SSD_STEP_PF_BYTES 4096  // about 8 n=128 rows ahead, with write intent
#define SSD_STEP_PREFETCHW 0
#include "step_isa.inc"
