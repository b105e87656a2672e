// The N-API addon: registers what each file of csrc/binding exports (the object lib/native.ts
// describes). Each entry reads its argument object, checks the parameter block once
// (core/params.h) and hands it to the dispatcher (core/dispatch.h).
#include <napi.h>

#include "binding/c_abi.h"
#include "binding/util.h"
#include "ssd_kernels.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("abiVersion", Napi::Number::New(env, SSD_KERNELS_ABI_VERSION));
  exports.Set("getNativeApi", Napi::Function::New(env, ssd::abi::GetNativeApi, "getNativeApi"));
  ssd::addon::register_forward(env, exports);
  ssd::addon::register_backward(env, exports);
  ssd::addon::register_step(env, exports);
  ssd::addon::register_device(env, exports);
  ssd::addon::register_bench(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(ssd_kernels, Init)
