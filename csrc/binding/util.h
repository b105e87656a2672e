// Argument readers of the N-API binding (defined in addon.cpp), shared by its files.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>

#include "ssd_kernels.h"

namespace ssd { namespace addon {

// The SsdError code ("ERR_SSD_...") of a status, and an Error carrying it as `code`.
const char* status_code(SsdStatus s);
Napi::Error status_error(Napi::Env env, SsdStatus status, const std::string& message);

int64_t element_size(SsdDtype t);

// args[name] as a TypedArray of exactly `elements` elements of `dtype` (int32 reads as 4-byte
// elements, like float32), or on a device call a nonzero BigInt device pointer. Absent
// (null/undefined) gives nullptr when `optional`, else throws.
const void* read_buffer(Napi::Object args, const char* name, SsdDtype dtype, int64_t elements, bool optional,
                        bool on_device);
SsdDtype read_dtype(Napi::Object args, const char* name);
// An integer in [1, 2^31-1].
int64_t read_size(Napi::Env env, Napi::Value v, const char* name);

// Adds stepSync, step and rmwBandwidth to the addon's exports (addon_step.cpp).
void register_step(Napi::Env env, Napi::Object exports);

// The step's parameter block from its argument object (lib/native.ts, NativeStepArgs): host arrays,
// or BigInt device pointers when `on_device`. Sizes and byte lengths are checked; values (state
// indices) are not. *threads receives the CPU thread count (0: the default).
SsdStepParams read_step_params(Napi::Object args, bool on_device, int* threads);

}}  // namespace ssd::addon
