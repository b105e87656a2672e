// The CPU forward on AVX-512 (this file is compiled with -mavx512f -mavx512vl -mavx512bw -mavx512dq
// -mfma -mf16c); forward_isa.inc is the instance, here is the ISA's register tile.
#define SSD_CPU_ISA avx512
#define SSD_KERNEL_NP 4  // 64 channels of p per task
#define SSD_KERNEL_NN 4  // 16 state registers
#include "forward_isa.inc"
