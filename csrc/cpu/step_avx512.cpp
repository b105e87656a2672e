// The CPU decode step on AVX-512 (this file is compiled with -mavx512f -mavx512vl -mavx512bw
// -mavx512dq -mfma -mf16c); step_isa.inc is the instance, here is the ISA's tuning.
#define SSD_CPU_ISA avx512
#define SSD_STEP_NV 8  // 16 of the 32 zmm registers hold B and C
// Prefetch the state 8 KiB ahead with write intent (PREFETCHW, which every AVX-512 CPU has), which
// beats a read prefetch 4 KiB ahead once the state comes from DRAM (bench/NOTES.md).
#define SSD_STEP_PF_BYTES 8192
#define SSD_STEP_PREFETCHW 1
#include "step_isa.inc"
