/*
 * ssd_bwd_params.h: the parameter block of the SSD backward (C interface, plain struct).
 *
 * Provisional home: the final definition belongs in include/ssd_kernels.h next to SsdParams (it is
 * being written there on another branch); this header keeps the CUDA backward buildable meanwhile.
 *
 * The backward gives the gradients of  L = sum(dy * y) + sum(d_final_states * final_states)  with
 * respect to every input of the forward described by `fwd` (same pointers, sizes, strides, dtypes and
 * options as the forward call; fwd.y and fwd.final_states are not read). Nothing from the forward is
 * needed: the backward recomputes what it uses.
 *
 * Gradients of tensor inputs take the input's dtype and the input's strides:
 *   dx  like x  (fwd.x_type, x strides)       dz like z (fwd.z_type, z strides)
 *   ddt like dt (fwd.dt_type, dt strides)      dB like B, dC like C
 * Gradients of the float32 inputs are float32: dA (h), dD ((h) or (h, p) as D), d_dt_bias (h),
 * d_initial_states (b, h, p, n) contiguous.
 * dx, ddt, dA, dB, dC are required. dz, dD, d_dt_bias, d_initial_states are optional: NULL means
 * "not wanted"; they must be NULL when the matching input (z, D, dt_bias, initial_states) is absent.
 * Outputs must not overlap inputs or each other.
 */
#ifndef SSD_BWD_PARAMS_H
#define SSD_BWD_PARAMS_H

#include <stdint.h>

#include "ssd_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct SsdBackwardParams {
  SsdParams fwd; /* the forward's inputs and options; fwd.y and fwd.final_states are unused */

  /* incoming gradients */
  const void* dy; SsdDtype dy_type; int64_t dy_batch_stride, dy_seq_stride, dy_head_stride; /* (b, L, h, p) */
  const float* d_final_states; /* optional (b, h, p, n) contiguous; NULL = zero */

  /* gradients of the tensor inputs: dtype and strides of the input */
  void* dx;  /* like x */
  void* ddt; /* like dt */
  void* dB;  /* like B */
  void* dC;  /* like C */
  void* dz;  /* like z; optional */

  /* gradients of the float32 inputs */
  float* dA;               /* (h) */
  float* dD;               /* optional: (h) or (h, p), as fwd.D */
  float* d_dt_bias;        /* optional (h) */
  float* d_initial_states; /* optional (b, h, p, n) contiguous */
} SsdBackwardParams;

#ifdef __cplusplus
}
#endif

#endif /* SSD_BWD_PARAMS_H */
