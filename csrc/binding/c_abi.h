// The C ABI of include/ssd_kernels.h ("The function table"): the SsdApi table and the napi External
// that hands it to other native addons.
#pragma once
#include <napi.h>

#include <string>

#include "ssd_kernels.h"

namespace ssd {
namespace abi {

// The table (static storage, valid for the life of the process).
const SsdApi* table();

// getNativeApi(): a napi External holding table(), type-tagged with SSD_KERNELS_NAPI_TYPE_TAG.
Napi::Value GetNativeApi(const Napi::CallbackInfo& info);

}  // namespace abi
}  // namespace ssd
