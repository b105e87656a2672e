// The CPU backward on AVX-512 (this file is compiled with -mavx512f -mavx512vl -mavx512bw -mavx512dq
// -mfma -mf16c); backward_isa.inc is the instance, here is the ISA's register tile.
#define SSD_CPU_ISA avx512
#define SSD_BWD_NP 4  // 64 channels of p per tile
#define SSD_BWD_NN 4  // 16 state registers, 16 for the adjoint
#include "backward_isa.inc"
