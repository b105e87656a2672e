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

static napi_value Init(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"info", NULL, Info, NULL, NULL, NULL, napi_enumerable, NULL},
      {"isTable", NULL, IsTable, NULL, NULL, NULL, napi_enumerable, NULL},
      {"untaggedExternal", NULL, UntaggedExternal, NULL, NULL, NULL, napi_enumerable, NULL},
      {"forward", NULL, Forward, NULL, NULL, NULL, napi_enumerable, NULL},
      {"stepAndBackward", NULL, StepAndBackward, NULL, NULL, NULL, napi_enumerable, NULL},
      {"cudaSynchronize", NULL, CudaSynchronize, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
