// The portable CPU backward (baseline flags; the only one on non-x86). backward_isa.inc is the
// instance.
#define SSD_CPU_ISA scalar
#define SSD_BWD_NP 2
#define SSD_BWD_NN 2
#include "backward_isa.inc"
