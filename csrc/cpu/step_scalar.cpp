// The portable CPU decode step (baseline flags; the only one on non-x86). step_isa.inc is the
// instance.
#define SSD_CPU_ISA scalar
#define SSD_STEP_NV 4
#define SSD_STEP_PF_BYTES 4096
#define SSD_STEP_PREFETCHW 0
#include "step_isa.inc"
