/*
 * ssd_kernels.h: the C interface of ssd-kernels.
 *
 * One parameter block, SsdParams, describes a call of Mamba-2's SSD scan (see docs/semantics.md):
 * pointers, element strides, sizes and flags. The CPU and CUDA implementations take the same block.
 * SsdBackwardParams, the forward's block plus the incoming gradients and the gradient outputs,
 * describes its backward.
 * All strides are in elements, not bytes; the innermost dimension (p for x/z/y, n for B/C) is
 * contiguous. Layouts follow mamba_chunk_scan_combined:
 *   x, z, y (b, L, h, p)   dt (b, L, h)   B, C (b, L, g, n)   A, dtBias (h)   D (h) or (h, p)
 *   initialStates, finalStates (b, h, p, n) float32, contiguous   seqIdx (b, L) int32
 */
#ifndef SSD_KERNELS_H
#define SSD_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SSD_KERNELS_ABI_VERSION 1

typedef enum SsdDtype {
  SSD_FLOAT32 = 0,
  SSD_BFLOAT16 = 1,
  SSD_FLOAT16 = 2,
} SsdDtype;

typedef enum SsdStatus {
  SSD_OK = 0,
  SSD_ERR_INVALID_ARGUMENT = 1, /* a size, stride or pointer that cannot be right */
  SSD_ERR_OUT_OF_MEMORY = 2,    /* host or device allocation failed */
  SSD_ERR_UNSUPPORTED = 3,      /* a size or option this backend does not implement */
  SSD_ERR_CUDA = 4,             /* a CUDA call failed; see the message */
  SSD_ERR_INTERNAL = 5,
} SsdStatus;

typedef struct SsdParams {
  /* sizes */
  int64_t batch, seqlen, nheads, headdim, ngroups, dstate;
  int64_t chunk_size; /* a power of two in [16, 256]; the CPU token recurrence ignores it */

  /* inputs; dtypes are per tensor */
  const void* x;  SsdDtype x_type;  int64_t x_batch_stride, x_seq_stride, x_head_stride;
  const void* dt; SsdDtype dt_type; int64_t dt_batch_stride, dt_seq_stride; /* head stride 1 */
  const void* B;  SsdDtype B_type;  int64_t B_batch_stride, B_seq_stride, B_group_stride;
  const void* C;  SsdDtype C_type;  int64_t C_batch_stride, C_seq_stride, C_group_stride;
  const float* A;         /* (h), finite */
  const float* D;         /* optional: (h) or (h, p) */
  int32_t D_per_channel;  /* 1 when D is (h, p) */
  const void* z;  SsdDtype z_type;  int64_t z_batch_stride, z_seq_stride, z_head_stride; /* optional */
  const float* dt_bias;   /* optional (h) */
  const float* initial_states; /* optional (b, h, p, n) contiguous */
  const int32_t* seq_idx; int64_t seq_idx_batch_stride; /* optional (b, L), non-decreasing */

  /* step-size options */
  int32_t dt_softplus;    /* softplus(dt + dtBias), identity above 20 */
  float dt_min, dt_max;   /* clamp; default 0 and +inf */

  /* outputs */
  void* y; SsdDtype y_type; int64_t y_batch_stride, y_seq_stride, y_head_stride;
  float* final_states;    /* optional (b, h, p, n) contiguous */
} SsdParams;

/*
 * The backward of one SSD call: the gradients of L = sum(dy * y) + sum(dFinalStates * finalStates)
 * with respect to every input (design §3). `fwd` describes the forward call being differentiated
 * (sizes, inputs, options); its outputs fwd.y and fwd.final_states are not read. Gradients have
 * the layouts of their inputs; the dtype of each 16-bit one is its own field (normally the input's),
 * and every gradient is accumulated in float32 and rounded once. Reductions (dB, dC over the heads
 * of a group and over p; dA, dD, dDtBias over positions) run in a fixed order: the same inputs give
 * the same bits on every run and for every thread count.
 */
typedef struct SsdBackwardParams {
  SsdParams fwd;

  /* incoming gradients */
  const void* dy; SsdDtype dy_type; int64_t dy_batch_stride, dy_seq_stride, dy_head_stride; /* (b, L, h, p) */
  const float* d_final_states; /* optional (b, h, p, n) contiguous; zero when absent */

  /* gradients (outputs) */
  void* dx;  SsdDtype dx_type;  int64_t dx_batch_stride, dx_seq_stride, dx_head_stride;   /* (b, L, h, p) */
  void* ddt; SsdDtype ddt_type; int64_t ddt_batch_stride, ddt_seq_stride;                 /* (b, L, h), head stride 1 */
  float* dA;                                                                              /* (h) */
  void* dB;  SsdDtype dB_type;  int64_t dB_batch_stride, dB_seq_stride, dB_group_stride;  /* (b, L, g, n) */
  void* dC;  SsdDtype dC_type;  int64_t dC_batch_stride, dC_seq_stride, dC_group_stride;  /* (b, L, g, n) */
  float* dD;              /* optional, only with fwd.D: (h) or (h, p) as fwd.D */
  void* dz;  SsdDtype dz_type;  int64_t dz_batch_stride, dz_seq_stride, dz_head_stride;   /* optional, only with fwd.z */
  float* d_dt_bias;       /* optional (h): the sum of ddt over b and L (fwd.dt_bias may be absent) */
  float* d_initial_states; /* optional (b, h, p, n) contiguous: the gradient of the state before
                              position 0 (fwd.initial_states may be absent) */
} SsdBackwardParams;

#ifdef __cplusplus
}
#endif

#endif /* SSD_KERNELS_H */
