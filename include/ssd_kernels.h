/*
 * ssd_kernels.h: the C interface of ssd-kernels.
 *
 * One parameter block, SsdParams, describes a call of Mamba-2's SSD scan (see docs/semantics.md):
 * pointers, element strides, sizes and flags. The CPU and CUDA implementations take the same block.
 * All strides are in elements, not bytes; the innermost dimension (p for x/z/y, n for B/C) is
 * contiguous. Layouts follow mamba_chunk_scan_combined:
 *   x, z, y (b, L, h, p)   dt (b, L, h)   B, C (b, L, g, n)   A, dtBias (h)   D (h) or (h, p)
 *   initialStates, finalStates (b, h, p, n) float32, contiguous   seqIdx (b, L) int32
 *   cuSeqlens (num_seqs + 1) int32   varlenStates (num_seqs, h, p, n) float32, contiguous
 *
 * A second block, SsdStepParams, describes one decode step: the recurrence advanced by one token
 * per batch entry, in place on a state cache (see docs/semantics.md, "The step").
 */
#ifndef SSD_KERNELS_H
#define SSD_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SSD_KERNELS_ABI_VERSION 2  /* 2: SsdStepParams, varlen fields of SsdParams */

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

  /* variable length (optional): batch must be 1 and seq_idx, initial_states absent. Sequence k
   * covers positions [cu_seqlens[k], cu_seqlens[k+1]); cu_seqlens[0] == 0, non-decreasing,
   * cu_seqlens[num_seqs] == seqlen. The state resets at each sequence start, as with seq_idx. */
  const int32_t* cu_seqlens; int64_t num_seqs;
  float* varlen_states;   /* optional (num_seqs, h, p, n) contiguous: each sequence's final state
                             (zeros for an empty sequence); needs cu_seqlens */
} SsdParams;

/*
 * One decode step for each batch entry i, on the state row r = state_indices[i] (or i):
 *   d = clamp(sp(dt + dtBias)), H_r = exp(d A) H_r + d x (x) B, y = H_r . C + D x, y *= silu(z)
 * Layouts: x, z, y (b, h, p)   dt (b, h)   B, C (b, g, n)   A, dtBias (h)   D (h) or (h, p)
 *   state (state_rows, h, p, n) contiguous, float32 or bfloat16 (read, computed in fp32, written
 *   rounded to nearest even).   state_indices (b) int32: a negative entry marks padding (its y is
 *   zeros and no state row is touched); the non-negative entries must be < state_rows and distinct.
 */
typedef struct SsdStepParams {
  int64_t batch, nheads, headdim, ngroups, dstate;
  int64_t state_rows;     /* rows of the state cache; == batch when state_indices is absent */

  void* state; SsdDtype state_type;   /* SSD_FLOAT32 or SSD_BFLOAT16 */
  const int32_t* state_indices;       /* optional (b) */

  const void* x;  SsdDtype x_type;  int64_t x_batch_stride, x_head_stride;
  const void* dt; SsdDtype dt_type; int64_t dt_batch_stride;  /* head stride 1 */
  const void* B;  SsdDtype B_type;  int64_t B_batch_stride, B_group_stride;
  const void* C;  SsdDtype C_type;  int64_t C_batch_stride, C_group_stride;
  const float* A;         /* (h), finite */
  const float* D;         /* optional: (h) or (h, p) */
  int32_t D_per_channel;
  const void* z;  SsdDtype z_type;  int64_t z_batch_stride, z_head_stride;  /* optional */
  const float* dt_bias;   /* optional (h) */

  int32_t dt_softplus;
  float dt_min, dt_max;

  void* y; SsdDtype y_type; int64_t y_batch_stride, y_head_stride;
} SsdStepParams;

#ifdef __cplusplus
}
#endif

#endif /* SSD_KERNELS_H */
