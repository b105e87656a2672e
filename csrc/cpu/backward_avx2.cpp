// The CPU backward on AVX2 + FMA + F16C (this file is compiled with -mavx2 -mfma -mf16c);
// backward_isa.inc is the instance, here is the ISA's register tile.
#define SSD_CPU_ISA avx2
#define SSD_BWD_NP 2  // 16 channels of p per tile
#define SSD_BWD_NN 2  // 4 state registers, 4 for the adjoint (16 ymm registers)
#include "backward_isa.inc"
