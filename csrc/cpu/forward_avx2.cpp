// The CPU forward on AVX2 + FMA + F16C (this file is compiled with -mavx2 -mfma -mf16c);
// forward_isa.inc is the instance, here is the ISA's register tile.
#define SSD_CPU_ISA avx2
#define SSD_KERNEL_NP 2  // 16 channels of p per task (16 ymm registers)
#define SSD_KERNEL_NN 4
#include "forward_isa.inc"
