// The portable CPU forward (baseline flags; the only one on non-x86): vectors are 4-float structs
// with plain loops, which the compiler maps to SSE2 / NEON. forward_isa.inc is the instance.
#define SSD_CPU_ISA scalar
#define SSD_KERNEL_NP 2
#define SSD_KERNEL_NN 4
#include "forward_isa.inc"
