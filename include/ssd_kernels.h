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
 *   cuSeqlens (num_seqs + 1) int32   varlenStates (num_seqs, h, p, n) float32, contiguous
 *
 * A second block, SsdStepParams, describes one decode step: the recurrence advanced by one token
 * per batch entry, in place on a state cache (see docs/semantics.md, "The step").
 */
#ifndef SSD_KERNELS_H
#define SSD_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SSD_KERNELS_ABI_VERSION 2 /* 2: SsdParams.y_ungated (appended, so SsdBackwardParams moved) */
#define SSD_KERNELS_VERSION "0.1.0" /* the package version this header belongs to */

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
  int32_t D_per_channel;  /* 1 when D is (h, p); 0 or 1 (checked) */
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
   * cu_seqlens[num_seqs] == seqlen. The state resets at each sequence start, as with seq_idx (the
   * pack is the seq_idx row that gives sequence k's positions the value k). The forward and the
   * backward take it; host values are checked, device-resident ones are not read back (offsets that
   * break these rules then give wrong results, never out-of-bounds accesses). */
  const int32_t* cu_seqlens; int64_t num_seqs;
  float* varlen_states;   /* optional (num_seqs, h, p, n) contiguous: each sequence's final state
                             (zeros for an empty sequence); needs cu_seqlens; a forward output only
                             (the backward refuses it: there is no gradient of it to take) */

  /* optional, only with z: the output before the gate, y_ungated = C·H + D x (so y = y_ungated ·
   * silu(z)), layout (b, L, h, p) as y, rounded once to its own dtype (mamba_chunk_scan_combined's
   * out_x). The forward writes it. The backward (SsdBackwardParams.fwd) reads it when it is set and
   * dz is wanted: the CUDA backward then takes dz from it instead of recomputing the pre-gate output
   * (it must hold what the forward wrote for these inputs); the CPU backward recomputes and ignores it. */
  void* y_ungated; SsdDtype y_ungated_type;
  int64_t y_ungated_batch_stride, y_ungated_seq_stride, y_ungated_head_stride;
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
  int32_t D_per_channel;  /* 1 when D is (h, p); 0 or 1 (checked) */
  const void* z;  SsdDtype z_type;  int64_t z_batch_stride, z_head_stride;  /* optional */
  const float* dt_bias;   /* optional (h) */

  int32_t dt_softplus;
  float dt_min, dt_max;

  void* y; SsdDtype y_type; int64_t y_batch_stride, y_head_stride;
} SsdStepParams;

/*
 * The backward of one SSD call: the gradients of L = sum(dy * y) + sum(dFinalStates * finalStates)
 * with respect to every input (design §3). `fwd` describes the forward call being differentiated
 * (sizes, inputs, options); its outputs fwd.y and fwd.final_states are not read (fwd.y_ungated may
 * be: see SsdParams), and fwd.varlen_states must be NULL. A pack (fwd.cu_seqlens) is differentiated
 * as its seq_idx row: nothing flows between sequences, d_final_states reaches only the last non-empty
 * one (whose state final_states is), and d_initial_states must be NULL (every sequence starts from
 * a zero state). Gradients have the layouts of their inputs; the dtype of each 16-bit one is its
 * own field (normally the input's), and every gradient is accumulated in float32 and rounded once.
 * Reductions (dB, dC over the heads of a group and over p; dA, dD, dDtBias over positions) run in a
 * fixed order: the same inputs give the same bits on every run and for every thread count.
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
                              position 0 (fwd.initial_states may be absent; not with fwd.cu_seqlens) */
} SsdBackwardParams;

/* ---- The function table: the C ABI for other native code -----------------------------------------
 *
 * Another native addon calls the kernels through a table of function pointers that ssd-kernels hands
 * out at run time, so it compiles against this header and links nothing of ours:
 *
 *   JS   const { getNativeApi } = require('ssd-kernels/native');
 *        myAddon.setup(getNativeApi());            // a napi External holding a const SsdApi*
 *   C    check the value's type tag, then read the pointer:
 *          static const napi_type_tag tag = SSD_KERNELS_NAPI_TYPE_TAG;
 *          bool ok = false; void* data = NULL;
 *          napi_check_object_type_tag(env, value, &tag, &ok);  (ok false: not our table)
 *          napi_get_value_external(env, value, &data);
 *          const SsdApi* api = (const SsdApi*)data;
 *        and check api->abi_version == SSD_KERNELS_ABI_VERSION before any call.
 *
 * The table and its strings live as long as the process (Node never unloads an addon); keep the
 * pointer and call it from any thread. Versioning: abi_version changes only when an existing entry or
 * SsdParams changes meaning or layout; new entries are appended, and struct_size (sizeof(SsdApi) of
 * the loaded library) says which exist: test with SSD_API_HAS(api, member).
 *
 * Every entry returns SSD_OK or an SsdStatus; after a failure, last_error() returns a message naming
 * the argument and what was expected, valid until the same thread's next call into the table.
 *
 * The parameter block (SsdParams above) is checked before anything runs: sizes >= 1 with ngroups
 * dividing nheads, chunk_size a power of two in [16, 256], the required pointers (x, dt, A, B, C, y)
 * present, every pointer aligned to its element size, dtype codes known, dt_min <= dt_max, strides
 * >= 0 and fitting 64-bit offsets, and y's strides non-overlapping (each (b, L, h) position owns its
 * own p contiguous elements). Strides may describe views (padded rows, transposed b/L/h, slices of a
 * larger projection); the innermost dimension is always contiguous. Zero-initialise the block
 * ({0} / memset) so that unused optional fields are NULL and 0. y must not overlap any input.
 */

typedef enum SsdMemory {
  /* Every pointer is host memory. The CPU path runs on the calling thread (and the library's worker
   * threads) and has finished when the call returns. `stream` is ignored. */
  SSD_MEMORY_HOST = 0,
  /* Every pointer is device memory (cudaMalloc, cudaMallocAsync or managed) of the calling thread's
   * current CUDA device. The kernels are enqueued on `stream` (a cudaStream_t of that device; NULL is
   * the legacy default stream, cudaStreamPerThread works too) and the call returns without waiting:
   * the caller owns synchronisation. Inputs must stay valid and unchanged, and outputs untouched,
   * until the stream reaches the end of the work; y and final_states are complete at that point.
   * Scratch memory comes from a stream-ordered memory pool of the library on that device, allocated
   * and freed in order on `stream`, so nothing else needs to be kept alive. Fails with
   * SSD_ERR_UNSUPPORTED when CUDA cannot run (no CUDA in this build, no driver or GPU, or
   * SSD_KERNELS_DEVICE=cpu), and SSD_ERR_INVALID_ARGUMENT when a pointer is not device memory of
   * the current device. */
  SSD_MEMORY_CUDA = 1,
} SsdMemory;

/* The napi_type_tag of the External that getNativeApi() returns. */
#define SSD_KERNELS_NAPI_TYPE_TAG_LOWER 0xe6631275c9d9dc6dULL
#define SSD_KERNELS_NAPI_TYPE_TAG_UPPER 0x7286db3cc4450221ULL
/* An initialiser for a napi_type_tag: static const napi_type_tag tag = SSD_KERNELS_NAPI_TYPE_TAG; */
#define SSD_KERNELS_NAPI_TYPE_TAG { SSD_KERNELS_NAPI_TYPE_TAG_LOWER, SSD_KERNELS_NAPI_TYPE_TAG_UPPER }

typedef struct SsdApi {
  uint32_t abi_version;  /* SSD_KERNELS_ABI_VERSION of the loaded library */
  uint32_t struct_size;  /* sizeof(SsdApi) of the loaded library */
  const char* version;   /* the package version, e.g. "0.1.0" */

  /* The thread-local message of this thread's last failed call ("" when none). */
  const char* (*last_error)(void);

  /* y (and final_states when not NULL) from the inputs in `params`; see SsdMemory for where it runs. */
  SsdStatus (*forward)(const SsdParams* params, SsdMemory memory, void* stream);

  /* The gradients in `params` (SsdBackwardParams) of the forward it describes; same memory and
   * stream rules as forward. On CUDA, dy and every gradient must have their input's dtype and
   * layout (SSD_ERR_UNSUPPORTED otherwise); the CPU takes any float dtype per gradient. */
  SsdStatus (*backward)(const SsdBackwardParams* params, SsdMemory memory, void* stream);

  /* One decode step (SsdStepParams), in place on the state; same memory and stream rules. On the
   * host, state_indices are checked (range, no row twice) before anything is written. On CUDA they
   * are checked on the device, and invalid indices leave the state and y untouched, but the call
   * cannot report it without waiting for the stream: check device-resident indices yourself. */
  SsdStatus (*step)(const SsdStepParams* params, SsdMemory memory, void* stream);
} SsdApi;

/* Whether the loaded library's table has `member` (a table from an older release may not). */
#define SSD_API_HAS(api, member) \
  ((api)->struct_size >= offsetof(SsdApi, member) + sizeof(((const SsdApi*)0)->member))

#ifdef __cplusplus
}
#endif

#endif /* SSD_KERNELS_H */
