/*
 * An example of another native addon that calls ssd-kernels through its C ABI: it compiles against
 * include/ssd_kernels.h (found with require('ssd-kernels/native').includeDir) and links nothing of
 * ssd-kernels. The function table arrives at run time as the type-tagged napi External that
 * require('ssd-kernels/native').getNativeApi() returns.
 *
 *   info(api)            checks the tag and ABI version; { abiVersion, structSize, version, hasForward }
 *   isTable(value)       whether `value` carries the table's type tag
 *   untaggedExternal()   an External without the tag (for the rejection test)
 *   forward(api, spec)   fills an SsdParams from `spec` and calls api->forward; { status, message }
 *   cudaSynchronize()    waits for the current CUDA context (driver API, loaded at run time)
 *   layout()             the byte layout of SsdParams, SsdBackwardParams and SsdStepParams as this
 *                        compiler lays them out: { Name: { size, fields: { field: { offset, size, kind } } } }
 *                        (kind 'i' integer or enum, 'f' float, 'p' pointer, 's' a nested SsdParams)
 *   address(view)        the address of a TypedArray's first byte (BigInt), for raw blocks
 *   callRaw(api, entry, block, memory, stream)
 *                        calls api->forward, ->backward or ->step ('forward' | 'backward' | 'step')
 *                        on `block` (a Uint8Array holding the struct's bytes, or null for a NULL
 *                        block) as it is, with `memory` and `stream` (BigInt or null); { status, message }.
 *                        The C ABI fuzz (test/abi-fuzz.test.ts) builds every field this way.
 *
 * spec: { dims: [b, L, h, p, g, n], chunkSize, memory (0 host, 1 CUDA), stream (BigInt, optional),
 *         x, dt, A, B, C, D, z, dtBias, initialStates, seqIdx, y, finalStates: a TypedArray (host),
 *           a BigInt address (device) or null,
 *         xType, dtType, BType, CType, zType, yType: SsdDtype codes (default 0, float32),
 *         dPerChannel, dtSoftplus (booleans), dtMin, dtMax (numbers),
 *         strides: { x: [b, L, h], z, y, dt: [b, L], B: [b, L, g], C, seqIdx: [b] } (default contiguous) }
 */
#include <dlfcn.h>
#include <math.h>
#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ssd_kernels.h"

#define CHECK(call)                                                   \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      napi_throw_error(env, NULL, "abi-consumer: " #call " failed");  \
      return NULL;                                                    \
    }                                                                 \
  } while (0)

static const napi_type_tag kTableTag = SSD_KERNELS_NAPI_TYPE_TAG;

/* The table behind `value`, or NULL with a JS error thrown. */
static const SsdApi* get_table(napi_env env, napi_value value) {
  bool tagged = false;
  if (napi_check_object_type_tag(env, value, &kTableTag, &tagged) != napi_ok || !tagged) {
    napi_throw_type_error(env, NULL, "expected the External from require('ssd-kernels/native').getNativeApi()");
    return NULL;
  }
  void* data = NULL;
  if (napi_get_value_external(env, value, &data) != napi_ok || !data) {
    napi_throw_type_error(env, NULL, "the tagged value is not an External");
    return NULL;
  }
  const SsdApi* api = (const SsdApi*)data;
  if (api->abi_version != SSD_KERNELS_ABI_VERSION) {
    char message[128];
    snprintf(message, sizeof message, "ssd-kernels ABI version %u, this addon was built for %d",
             (unsigned)api->abi_version, SSD_KERNELS_ABI_VERSION);
    napi_throw_error(env, NULL, message);
    return NULL;
  }
  if (!SSD_API_HAS(api, forward)) {
    napi_throw_error(env, NULL, "the ssd-kernels table has no forward entry");
    return NULL;
  }
  return api;
}

static napi_value Info(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) {
    napi_throw_type_error(env, NULL, "info(api)");
    return NULL;
  }
  const SsdApi* api = get_table(env, argv[0]);
  if (!api) return NULL;
  napi_value out, v;
  CHECK(napi_create_object(env, &out));
  CHECK(napi_create_uint32(env, api->abi_version, &v));
  CHECK(napi_set_named_property(env, out, "abiVersion", v));
  CHECK(napi_create_uint32(env, api->struct_size, &v));
  CHECK(napi_set_named_property(env, out, "structSize", v));
  CHECK(napi_create_string_utf8(env, api->version, NAPI_AUTO_LENGTH, &v));
  CHECK(napi_set_named_property(env, out, "version", v));
  CHECK(napi_get_boolean(env, SSD_API_HAS(api, forward), &v));
  CHECK(napi_set_named_property(env, out, "hasForward", v));
  CHECK(napi_create_string_utf8(env, SSD_KERNELS_VERSION, NAPI_AUTO_LENGTH, &v));
  CHECK(napi_set_named_property(env, out, "headerVersion", v));
  return out;
}

static napi_value IsTable(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool tagged = false;
  napi_valuetype type = napi_undefined;
  if (argc >= 1) CHECK(napi_typeof(env, argv[0], &type));
  if (type == napi_object || type == napi_external) {
    CHECK(napi_check_object_type_tag(env, argv[0], &kTableTag, &tagged));
  }
  napi_value out;
  CHECK(napi_get_boolean(env, tagged, &out));
  return out;
}

static int g_dummy;

static napi_value UntaggedExternal(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  CHECK(napi_create_external(env, &g_dummy, NULL, NULL, &out));
  return out;
}

/* ---- reading the spec ---- */

static bool has(napi_env env, napi_value obj, const char* name, napi_value* value) {
  bool present = false;
  if (napi_has_named_property(env, obj, name, &present) != napi_ok || !present) return false;
  if (napi_get_named_property(env, obj, name, value) != napi_ok) return false;
  napi_valuetype type;
  napi_typeof(env, *value, &type);
  return type != napi_undefined && type != napi_null;
}

static int64_t get_int(napi_env env, napi_value obj, const char* name, int64_t fallback) {
  napi_value v;
  if (!has(env, obj, name, &v)) return fallback;
  int64_t out = fallback;
  napi_get_value_int64(env, v, &out);
  return out;
}

static double get_double(napi_env env, napi_value obj, const char* name, double fallback) {
  napi_value v;
  if (!has(env, obj, name, &v)) return fallback;
  double out = fallback;
  napi_get_value_double(env, v, &out);
  return out;
}

static bool get_bool(napi_env env, napi_value obj, const char* name) {
  napi_value v;
  if (!has(env, obj, name, &v)) return false;
  bool out = false;
  napi_coerce_to_bool(env, v, &v);
  napi_get_value_bool(env, v, &out);
  return out;
}

/* A TypedArray's first byte, or a BigInt address, or NULL. */
static void* get_pointer(napi_env env, napi_value obj, const char* name) {
  napi_value v;
  if (!has(env, obj, name, &v)) return NULL;
  bool is_typed = false;
  napi_is_typedarray(env, v, &is_typed);
  if (is_typed) {
    napi_typedarray_type type;
    size_t length, offset;
    void* data = NULL;
    napi_value buffer;
    napi_get_typedarray_info(env, v, &type, &length, &data, &buffer, &offset);
    return data;
  }
  uint64_t address = 0;
  bool lossless = false;
  if (napi_get_value_bigint_uint64(env, v, &address, &lossless) == napi_ok) return (void*)(uintptr_t)address;
  return NULL;
}

/* strides[name] as up to `n` integers into out (left unchanged when absent). */
static void get_strides(napi_env env, napi_value spec, const char* name, int64_t* out, uint32_t n) {
  napi_value strides, list;
  if (!has(env, spec, "strides", &strides) || !has(env, strides, name, &list)) return;
  for (uint32_t i = 0; i < n; i++) {
    napi_value item;
    if (napi_get_element(env, list, i, &item) == napi_ok) napi_get_value_int64(env, item, &out[i]);
  }
}

static napi_value Forward(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "forward(api, spec)");
    return NULL;
  }
  const SsdApi* api = get_table(env, argv[0]);
  if (!api) return NULL;
  napi_value spec = argv[1];

  SsdParams p;
  memset(&p, 0, sizeof p);
  napi_value dims;
  CHECK(napi_get_named_property(env, spec, "dims", &dims));
  int64_t d[6] = {0};
  for (uint32_t i = 0; i < 6; i++) {
    napi_value item;
    CHECK(napi_get_element(env, dims, i, &item));
    CHECK(napi_get_value_int64(env, item, &d[i]));
  }
  p.batch = d[0], p.seqlen = d[1], p.nheads = d[2], p.headdim = d[3], p.ngroups = d[4], p.dstate = d[5];
  const int64_t L = d[1], h = d[2], hd = d[3], g = d[4], n = d[5];
  p.chunk_size = get_int(env, spec, "chunkSize", 64);

  p.x = get_pointer(env, spec, "x");
  p.x_type = (SsdDtype)get_int(env, spec, "xType", SSD_FLOAT32);
  int64_t xs[3] = {L * h * hd, h * hd, hd};
  get_strides(env, spec, "x", xs, 3);
  p.x_batch_stride = xs[0], p.x_seq_stride = xs[1], p.x_head_stride = xs[2];

  p.dt = get_pointer(env, spec, "dt");
  p.dt_type = (SsdDtype)get_int(env, spec, "dtType", SSD_FLOAT32);
  int64_t dts[2] = {L * h, h};
  get_strides(env, spec, "dt", dts, 2);
  p.dt_batch_stride = dts[0], p.dt_seq_stride = dts[1];

  p.A = (const float*)get_pointer(env, spec, "A");

  p.B = get_pointer(env, spec, "B");
  p.B_type = (SsdDtype)get_int(env, spec, "BType", SSD_FLOAT32);
  int64_t bs[3] = {L * g * n, g * n, n};
  get_strides(env, spec, "B", bs, 3);
  p.B_batch_stride = bs[0], p.B_seq_stride = bs[1], p.B_group_stride = bs[2];
  p.C = get_pointer(env, spec, "C");
  p.C_type = (SsdDtype)get_int(env, spec, "CType", SSD_FLOAT32);
  int64_t cs[3] = {L * g * n, g * n, n};
  get_strides(env, spec, "C", cs, 3);
  p.C_batch_stride = cs[0], p.C_seq_stride = cs[1], p.C_group_stride = cs[2];

  p.D = (const float*)get_pointer(env, spec, "D");
  p.D_per_channel = (int32_t)get_int(env, spec, "dPerChannel", 0);

  p.z = get_pointer(env, spec, "z");
  p.z_type = (SsdDtype)get_int(env, spec, "zType", SSD_FLOAT32);
  int64_t zs[3] = {xs[0], xs[1], xs[2]};
  get_strides(env, spec, "z", zs, 3);
  p.z_batch_stride = zs[0], p.z_seq_stride = zs[1], p.z_head_stride = zs[2];

  p.dt_bias = (const float*)get_pointer(env, spec, "dtBias");
  p.initial_states = (const float*)get_pointer(env, spec, "initialStates");
  p.seq_idx = (const int32_t*)get_pointer(env, spec, "seqIdx");
  int64_t ss[1] = {L};
  get_strides(env, spec, "seqIdx", ss, 1);
  p.seq_idx_batch_stride = ss[0];

  p.dt_softplus = get_bool(env, spec, "dtSoftplus") ? 1 : 0;
  p.dt_min = (float)get_double(env, spec, "dtMin", 0.0);
  p.dt_max = (float)get_double(env, spec, "dtMax", INFINITY);

  p.y = get_pointer(env, spec, "y");
  p.y_type = (SsdDtype)get_int(env, spec, "yType", SSD_FLOAT32);
  int64_t ys[3] = {xs[0], xs[1], xs[2]};
  get_strides(env, spec, "y", ys, 3);
  p.y_batch_stride = ys[0], p.y_seq_stride = ys[1], p.y_head_stride = ys[2];
  p.final_states = (float*)get_pointer(env, spec, "finalStates");

  const SsdMemory memory = (SsdMemory)get_int(env, spec, "memory", SSD_MEMORY_HOST);
  void* stream = get_pointer(env, spec, "stream");

  const SsdStatus status = api->forward(&p, memory, stream);

  napi_value out, v;
  CHECK(napi_create_object(env, &out));
  CHECK(napi_create_int32(env, (int32_t)status, &v));
  CHECK(napi_set_named_property(env, out, "status", v));
  CHECK(napi_create_string_utf8(env, api->last_error(), NAPI_AUTO_LENGTH, &v));
  CHECK(napi_set_named_property(env, out, "message", v));
  return out;
}

/* stepAndBackward(api): one step and one backward of the smallest problem (every size 1, float32
 * host memory) through the table's step and backward entries, for closed-form checks:
 *   step:     d = dt, state' = exp(d A) state + d x B, y = state' C
 *   backward: L = 1, no initial state: y = d x B C, so dx = dy d B C, ddt = dy x B C, dB = dy d x C,
 *             dC = dy d x B, dA = 0.
 * Returns { stepStatus, y, state, backwardStatus, dx, ddt, dA, dB, dC }. */
static napi_value StepAndBackward(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  const SsdApi* api = argc >= 1 ? get_table(env, argv[0]) : NULL;
  if (!api) return NULL;
  if (!SSD_API_HAS(api, step) || !SSD_API_HAS(api, backward)) {
    napi_throw_error(env, NULL, "the ssd-kernels table has no step or backward entry");
    return NULL;
  }
  float state = 0.5f, x = 2.0f, dt = 0.25f, A = -1.0f, B = 3.0f, C = -0.5f, y = 0.0f;
  SsdStepParams sp;
  memset(&sp, 0, sizeof sp);
  sp.batch = sp.nheads = sp.headdim = sp.ngroups = sp.dstate = sp.state_rows = 1;
  sp.state = &state; sp.state_type = SSD_FLOAT32;
  sp.x = &x; sp.x_type = SSD_FLOAT32; sp.x_batch_stride = 1; sp.x_head_stride = 1;
  sp.dt = &dt; sp.dt_type = SSD_FLOAT32; sp.dt_batch_stride = 1;
  sp.B = &B; sp.B_type = SSD_FLOAT32; sp.B_batch_stride = 1; sp.B_group_stride = 1;
  sp.C = &C; sp.C_type = SSD_FLOAT32; sp.C_batch_stride = 1; sp.C_group_stride = 1;
  sp.A = &A;
  sp.dt_min = 0.0f; sp.dt_max = INFINITY;
  sp.y = &y; sp.y_type = SSD_FLOAT32; sp.y_batch_stride = 1; sp.y_head_stride = 1;
  const SsdStatus step_status = api->step(&sp, SSD_MEMORY_HOST, NULL);

  float dy = 1.5f, dx = 0, ddt = 0, dA = 0, dB = 0, dC = 0;
  SsdBackwardParams bp;
  memset(&bp, 0, sizeof bp);
  SsdParams* f = &bp.fwd;
  f->batch = f->seqlen = f->nheads = f->headdim = f->ngroups = f->dstate = 1;
  f->chunk_size = 16;
  f->x = &x; f->x_type = SSD_FLOAT32; f->x_batch_stride = f->x_seq_stride = f->x_head_stride = 1;
  f->dt = &dt; f->dt_type = SSD_FLOAT32; f->dt_batch_stride = f->dt_seq_stride = 1;
  f->B = &B; f->B_type = SSD_FLOAT32; f->B_batch_stride = f->B_seq_stride = f->B_group_stride = 1;
  f->C = &C; f->C_type = SSD_FLOAT32; f->C_batch_stride = f->C_seq_stride = f->C_group_stride = 1;
  f->A = &A;
  f->dt_min = 0.0f; f->dt_max = INFINITY;
  bp.dy = &dy; bp.dy_type = SSD_FLOAT32; bp.dy_batch_stride = bp.dy_seq_stride = bp.dy_head_stride = 1;
  bp.dx = &dx; bp.dx_type = SSD_FLOAT32; bp.dx_batch_stride = bp.dx_seq_stride = bp.dx_head_stride = 1;
  bp.ddt = &ddt; bp.ddt_type = SSD_FLOAT32; bp.ddt_batch_stride = bp.ddt_seq_stride = 1;
  bp.dA = &dA;
  bp.dB = &dB; bp.dB_type = SSD_FLOAT32; bp.dB_batch_stride = bp.dB_seq_stride = bp.dB_group_stride = 1;
  bp.dC = &dC; bp.dC_type = SSD_FLOAT32; bp.dC_batch_stride = bp.dC_seq_stride = bp.dC_group_stride = 1;
  const SsdStatus backward_status = api->backward(&bp, SSD_MEMORY_HOST, NULL);

  napi_value out, v;
  CHECK(napi_create_object(env, &out));
  const struct { const char* name; double value; } fields[] = {
      {"stepStatus", step_status}, {"y", y}, {"state", state}, {"backwardStatus", backward_status},
      {"dx", dx}, {"ddt", ddt}, {"dA", dA}, {"dB", dB}, {"dC", dC}};
  for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
    CHECK(napi_create_double(env, fields[i].value, &v));
    CHECK(napi_set_named_property(env, out, fields[i].name, v));
  }
  return out;
}

/* cuCtxSynchronize through the driver, loaded at run time so this addon links no CUDA library. */
static napi_value CudaSynchronize(napi_env env, napi_callback_info info) {
  (void)info;
  void* driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!driver) {
    napi_throw_error(env, NULL, "cudaSynchronize: libcuda.so.1 could not be loaded");
    return NULL;
  }
  int (*sync)(void) = NULL;
  *(void**)(&sync) = dlsym(driver, "cuCtxSynchronize"); /* POSIX's way to read a function pointer */
  int result = sync ? sync() : -1;
  napi_value out;
  CHECK(napi_create_int32(env, result, &out));
  return out;
}

/* ---- raw blocks, for the C ABI fuzz ---- */

typedef struct {
  const char* name;
  size_t offset, size;
  char kind;
} FieldInfo;

#define FIELD(T, f, kind) {#f, offsetof(T, f), sizeof(((T*)0)->f), kind}

static const FieldInfo kParamsFields[] = {
    FIELD(SsdParams, batch, 'i'), FIELD(SsdParams, seqlen, 'i'), FIELD(SsdParams, nheads, 'i'),
    FIELD(SsdParams, headdim, 'i'), FIELD(SsdParams, ngroups, 'i'), FIELD(SsdParams, dstate, 'i'),
    FIELD(SsdParams, chunk_size, 'i'),
    FIELD(SsdParams, x, 'p'), FIELD(SsdParams, x_type, 'i'), FIELD(SsdParams, x_batch_stride, 'i'),
    FIELD(SsdParams, x_seq_stride, 'i'), FIELD(SsdParams, x_head_stride, 'i'),
    FIELD(SsdParams, dt, 'p'), FIELD(SsdParams, dt_type, 'i'), FIELD(SsdParams, dt_batch_stride, 'i'),
    FIELD(SsdParams, dt_seq_stride, 'i'),
    FIELD(SsdParams, B, 'p'), FIELD(SsdParams, B_type, 'i'), FIELD(SsdParams, B_batch_stride, 'i'),
    FIELD(SsdParams, B_seq_stride, 'i'), FIELD(SsdParams, B_group_stride, 'i'),
    FIELD(SsdParams, C, 'p'), FIELD(SsdParams, C_type, 'i'), FIELD(SsdParams, C_batch_stride, 'i'),
    FIELD(SsdParams, C_seq_stride, 'i'), FIELD(SsdParams, C_group_stride, 'i'),
    FIELD(SsdParams, A, 'p'), FIELD(SsdParams, D, 'p'), FIELD(SsdParams, D_per_channel, 'i'),
    FIELD(SsdParams, z, 'p'), FIELD(SsdParams, z_type, 'i'), FIELD(SsdParams, z_batch_stride, 'i'),
    FIELD(SsdParams, z_seq_stride, 'i'), FIELD(SsdParams, z_head_stride, 'i'),
    FIELD(SsdParams, dt_bias, 'p'), FIELD(SsdParams, initial_states, 'p'), FIELD(SsdParams, seq_idx, 'p'),
    FIELD(SsdParams, seq_idx_batch_stride, 'i'),
    FIELD(SsdParams, dt_softplus, 'i'), FIELD(SsdParams, dt_min, 'f'), FIELD(SsdParams, dt_max, 'f'),
    FIELD(SsdParams, y, 'p'), FIELD(SsdParams, y_type, 'i'), FIELD(SsdParams, y_batch_stride, 'i'),
    FIELD(SsdParams, y_seq_stride, 'i'), FIELD(SsdParams, y_head_stride, 'i'),
    FIELD(SsdParams, final_states, 'p'),
    FIELD(SsdParams, cu_seqlens, 'p'), FIELD(SsdParams, num_seqs, 'i'), FIELD(SsdParams, varlen_states, 'p'),
    FIELD(SsdParams, y_ungated, 'p'), FIELD(SsdParams, y_ungated_type, 'i'),
    FIELD(SsdParams, y_ungated_batch_stride, 'i'), FIELD(SsdParams, y_ungated_seq_stride, 'i'),
    FIELD(SsdParams, y_ungated_head_stride, 'i'),
};

static const FieldInfo kBackwardFields[] = {
    FIELD(SsdBackwardParams, fwd, 's'),
    FIELD(SsdBackwardParams, dy, 'p'), FIELD(SsdBackwardParams, dy_type, 'i'),
    FIELD(SsdBackwardParams, dy_batch_stride, 'i'), FIELD(SsdBackwardParams, dy_seq_stride, 'i'),
    FIELD(SsdBackwardParams, dy_head_stride, 'i'), FIELD(SsdBackwardParams, d_final_states, 'p'),
    FIELD(SsdBackwardParams, dx, 'p'), FIELD(SsdBackwardParams, dx_type, 'i'),
    FIELD(SsdBackwardParams, dx_batch_stride, 'i'), FIELD(SsdBackwardParams, dx_seq_stride, 'i'),
    FIELD(SsdBackwardParams, dx_head_stride, 'i'),
    FIELD(SsdBackwardParams, ddt, 'p'), FIELD(SsdBackwardParams, ddt_type, 'i'),
    FIELD(SsdBackwardParams, ddt_batch_stride, 'i'), FIELD(SsdBackwardParams, ddt_seq_stride, 'i'),
    FIELD(SsdBackwardParams, dA, 'p'),
    FIELD(SsdBackwardParams, dB, 'p'), FIELD(SsdBackwardParams, dB_type, 'i'),
    FIELD(SsdBackwardParams, dB_batch_stride, 'i'), FIELD(SsdBackwardParams, dB_seq_stride, 'i'),
    FIELD(SsdBackwardParams, dB_group_stride, 'i'),
    FIELD(SsdBackwardParams, dC, 'p'), FIELD(SsdBackwardParams, dC_type, 'i'),
    FIELD(SsdBackwardParams, dC_batch_stride, 'i'), FIELD(SsdBackwardParams, dC_seq_stride, 'i'),
    FIELD(SsdBackwardParams, dC_group_stride, 'i'),
    FIELD(SsdBackwardParams, dD, 'p'),
    FIELD(SsdBackwardParams, dz, 'p'), FIELD(SsdBackwardParams, dz_type, 'i'),
    FIELD(SsdBackwardParams, dz_batch_stride, 'i'), FIELD(SsdBackwardParams, dz_seq_stride, 'i'),
    FIELD(SsdBackwardParams, dz_head_stride, 'i'),
    FIELD(SsdBackwardParams, d_dt_bias, 'p'), FIELD(SsdBackwardParams, d_initial_states, 'p'),
};

static const FieldInfo kStepFields[] = {
    FIELD(SsdStepParams, batch, 'i'), FIELD(SsdStepParams, nheads, 'i'), FIELD(SsdStepParams, headdim, 'i'),
    FIELD(SsdStepParams, ngroups, 'i'), FIELD(SsdStepParams, dstate, 'i'), FIELD(SsdStepParams, state_rows, 'i'),
    FIELD(SsdStepParams, state, 'p'), FIELD(SsdStepParams, state_type, 'i'), FIELD(SsdStepParams, state_indices, 'p'),
    FIELD(SsdStepParams, x, 'p'), FIELD(SsdStepParams, x_type, 'i'), FIELD(SsdStepParams, x_batch_stride, 'i'),
    FIELD(SsdStepParams, x_head_stride, 'i'),
    FIELD(SsdStepParams, dt, 'p'), FIELD(SsdStepParams, dt_type, 'i'), FIELD(SsdStepParams, dt_batch_stride, 'i'),
    FIELD(SsdStepParams, B, 'p'), FIELD(SsdStepParams, B_type, 'i'), FIELD(SsdStepParams, B_batch_stride, 'i'),
    FIELD(SsdStepParams, B_group_stride, 'i'),
    FIELD(SsdStepParams, C, 'p'), FIELD(SsdStepParams, C_type, 'i'), FIELD(SsdStepParams, C_batch_stride, 'i'),
    FIELD(SsdStepParams, C_group_stride, 'i'),
    FIELD(SsdStepParams, A, 'p'), FIELD(SsdStepParams, D, 'p'), FIELD(SsdStepParams, D_per_channel, 'i'),
    FIELD(SsdStepParams, z, 'p'), FIELD(SsdStepParams, z_type, 'i'), FIELD(SsdStepParams, z_batch_stride, 'i'),
    FIELD(SsdStepParams, z_head_stride, 'i'),
    FIELD(SsdStepParams, dt_bias, 'p'),
    FIELD(SsdStepParams, dt_softplus, 'i'), FIELD(SsdStepParams, dt_min, 'f'), FIELD(SsdStepParams, dt_max, 'f'),
    FIELD(SsdStepParams, y, 'p'), FIELD(SsdStepParams, y_type, 'i'), FIELD(SsdStepParams, y_batch_stride, 'i'),
    FIELD(SsdStepParams, y_head_stride, 'i'),
};

static napi_value StructLayout(napi_env env, size_t size, const FieldInfo* fields, size_t count) {
  napi_value out, list, v;
  CHECK(napi_create_object(env, &out));
  CHECK(napi_create_object(env, &list));
  for (size_t i = 0; i < count; i++) {
    napi_value field;
    char kind[2] = {fields[i].kind, 0};
    CHECK(napi_create_object(env, &field));
    CHECK(napi_create_uint32(env, (uint32_t)fields[i].offset, &v));
    CHECK(napi_set_named_property(env, field, "offset", v));
    CHECK(napi_create_uint32(env, (uint32_t)fields[i].size, &v));
    CHECK(napi_set_named_property(env, field, "size", v));
    CHECK(napi_create_string_utf8(env, kind, 1, &v));
    CHECK(napi_set_named_property(env, field, "kind", v));
    CHECK(napi_set_named_property(env, list, fields[i].name, field));
  }
  CHECK(napi_create_uint32(env, (uint32_t)size, &v));
  CHECK(napi_set_named_property(env, out, "size", v));
  CHECK(napi_set_named_property(env, out, "fields", list));
  return out;
}

static napi_value Layout(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out, v;
  CHECK(napi_create_object(env, &out));
  v = StructLayout(env, sizeof(SsdParams), kParamsFields, sizeof kParamsFields / sizeof kParamsFields[0]);
  if (!v) return NULL;
  CHECK(napi_set_named_property(env, out, "SsdParams", v));
  v = StructLayout(env, sizeof(SsdBackwardParams), kBackwardFields, sizeof kBackwardFields / sizeof kBackwardFields[0]);
  if (!v) return NULL;
  CHECK(napi_set_named_property(env, out, "SsdBackwardParams", v));
  v = StructLayout(env, sizeof(SsdStepParams), kStepFields, sizeof kStepFields / sizeof kStepFields[0]);
  if (!v) return NULL;
  CHECK(napi_set_named_property(env, out, "SsdStepParams", v));
  return out;
}

/* The address of a TypedArray's first byte (its buffer's data plus its offset). */
static napi_value Address(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool is_typed = false;
  if (argc >= 1) CHECK(napi_is_typedarray(env, argv[0], &is_typed));
  if (!is_typed) {
    napi_throw_type_error(env, NULL, "address(view): expected a TypedArray");
    return NULL;
  }
  napi_typedarray_type type;
  size_t length, offset;
  void* data = NULL;
  napi_value buffer, out;
  CHECK(napi_get_typedarray_info(env, argv[0], &type, &length, &data, &buffer, &offset));
  CHECK(napi_create_bigint_uint64(env, (uint64_t)(uintptr_t)data, &out));
  return out;
}

static napi_value CallRaw(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) {
    napi_throw_type_error(env, NULL, "callRaw(api, entry, block, memory, stream?)");
    return NULL;
  }
  const SsdApi* api = get_table(env, argv[0]);
  if (!api) return NULL;
  char entry[16] = {0};
  size_t entry_length = 0;
  CHECK(napi_get_value_string_utf8(env, argv[1], entry, sizeof entry, &entry_length));
  const void* block = NULL;
  size_t block_bytes = 0;
  napi_valuetype block_type = napi_undefined;
  CHECK(napi_typeof(env, argv[2], &block_type));
  if (block_type != napi_null) {
    napi_typedarray_type type;
    napi_value buffer;
    size_t offset;
    void* data = NULL;
    bool is_typed = false;
    CHECK(napi_is_typedarray(env, argv[2], &is_typed));
    if (!is_typed) {
      napi_throw_type_error(env, NULL, "callRaw: expected a Uint8Array block or null");
      return NULL;
    }
    CHECK(napi_get_typedarray_info(env, argv[2], &type, &block_bytes, &data, &buffer, &offset));
    block = data;
  }
  int32_t memory = 0;
  CHECK(napi_get_value_int32(env, argv[3], &memory));
  void* stream = NULL;
  if (argc >= 5) {
    uint64_t address = 0;
    bool lossless = false;
    if (napi_get_value_bigint_uint64(env, argv[4], &address, &lossless) == napi_ok) stream = (void*)(uintptr_t)address;
  }
  size_t need = strcmp(entry, "forward") == 0 ? sizeof(SsdParams)
                : strcmp(entry, "backward") == 0 ? sizeof(SsdBackwardParams)
                : strcmp(entry, "step") == 0 ? sizeof(SsdStepParams) : 0;
  if (need == 0 || (block && block_bytes < need) || (block && ((uintptr_t)block % 8) != 0)) {
    napi_throw_range_error(env, NULL, "callRaw: unknown entry, or a block smaller than its struct or not 8-byte aligned");
    return NULL;
  }
  SsdStatus status;
  if (strcmp(entry, "forward") == 0) {
    status = api->forward((const SsdParams*)block, (SsdMemory)memory, stream);
  } else if (strcmp(entry, "backward") == 0) {
    status = api->backward((const SsdBackwardParams*)block, (SsdMemory)memory, stream);
  } else {
    status = api->step((const SsdStepParams*)block, (SsdMemory)memory, stream);
  }
  napi_value out, v;
  CHECK(napi_create_object(env, &out));
  CHECK(napi_create_int32(env, (int32_t)status, &v));
  CHECK(napi_set_named_property(env, out, "status", v));
  CHECK(napi_create_string_utf8(env, api->last_error(), NAPI_AUTO_LENGTH, &v));
  CHECK(napi_set_named_property(env, out, "message", v));
  return out;
}

static napi_value Init(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"info", NULL, Info, NULL, NULL, NULL, napi_enumerable, NULL},
      {"isTable", NULL, IsTable, NULL, NULL, NULL, napi_enumerable, NULL},
      {"untaggedExternal", NULL, UntaggedExternal, NULL, NULL, NULL, napi_enumerable, NULL},
      {"forward", NULL, Forward, NULL, NULL, NULL, napi_enumerable, NULL},
      {"stepAndBackward", NULL, StepAndBackward, NULL, NULL, NULL, napi_enumerable, NULL},
      {"cudaSynchronize", NULL, CudaSynchronize, NULL, NULL, NULL, napi_enumerable, NULL},
      {"layout", NULL, Layout, NULL, NULL, NULL, napi_enumerable, NULL},
      {"address", NULL, Address, NULL, NULL, NULL, napi_enumerable, NULL},
      {"callRaw", NULL, CallRaw, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
