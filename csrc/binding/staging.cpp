// Host memory of the binding's calls (staging.h): reading a TypedArray, and the staged copies of an
// asynchronous call.
#include "binding/staging.h"

#include <napi.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "binding/util.h"

namespace ssd { namespace addon {

namespace {

size_t element_bytes(napi_typedarray_type type) {
  switch (type) {
    case napi_int8_array:
    case napi_uint8_array:
    case napi_uint8_clamped_array: return 1;
    case napi_int16_array:
    case napi_uint16_array: return 2;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array: return 4;
    case napi_float64_array:
    case napi_bigint64_array:
    case napi_biguint64_array: return 8;
    default: return 0;  // a type this N-API does not name
  }
}

}  // namespace

HostArray host_array(Napi::Env env, Napi::Value value) {
  // An unknown type leaves `type` as it was on some runtimes: start from a value no array has.
  napi_typedarray_type type = static_cast<napi_typedarray_type>(-1);
  size_t length = 0;
  void* data = nullptr;
  napi_value buffer = nullptr;
  size_t offset = 0;
  napi_status status = napi_get_typedarray_info(env, value, &type, &length, &data, &buffer, &offset);
  NAPI_THROW_IF_FAILED(env, status, HostArray());
  HostArray host;
  host.type = type;
  host.element_bytes = element_bytes(type);
  host.bytes = length * host.element_bytes;
  host.data = static_cast<uint8_t*>(data);
  // A TypedArray's buffer is an ArrayBuffer or a SharedArrayBuffer, which napi_is_arraybuffer denies.
  bool is_arraybuffer = true;
  status = napi_is_arraybuffer(env, buffer, &is_arraybuffer);
  NAPI_THROW_IF_FAILED(env, status, HostArray());
  host.shared = !is_arraybuffer;
  if (is_arraybuffer) {
    status = napi_is_detached_arraybuffer(env, buffer, &host.detached);
    NAPI_THROW_IF_FAILED(env, status, HostArray());
  }
  if (host.detached || !host.data) host.bytes = 0;
  return host;
}

Napi::Error detached_error(Napi::Env env, const std::string& message) {
  Napi::Error err = Napi::Error::New(env, message);
  err.Set("code", Napi::String::New(env, "ERR_SSD_DETACHED"));
  return err;
}

Staging::Staging(Napi::Value names) {
  if (names.IsObject()) names_ = Napi::Persistent(names.As<Napi::Object>());
}

std::string Staging::name_of(const char* field) const {
  if (!names_.IsEmpty()) {
    Napi::Value name = names_.Value().Get(field);
    if (name.IsString()) return name.As<Napi::String>().Utf8Value();
  }
  return field;
}

Staging::Block Staging::allocate(Napi::Env env, size_t bytes, const char* field) {
  const size_t rounded = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) {
    throw status_error(env, SSD_ERR_OUT_OF_MEMORY,
                       "Could not allocate " + std::to_string(bytes) + " bytes for the copy of " + name_of(field) +
                           " that an asynchronous call works on (arrays on a SharedArrayBuffer are used in place)");
  }
  return Block(static_cast<uint8_t*>(p));
}

void* Staging::add(Napi::Env env, Napi::Value value, const HostArray& host, const char* field, Access access) {
  if (host.shared) return host.data;
  Entry e;
  e.field = field;
  e.array = Napi::Persistent(value.As<Napi::Object>());
  e.bytes = host.bytes;
  e.access = access;
  e.copy = allocate(env, host.bytes, field);
  if (access != Access::Out && host.bytes > 0) {
    prefault(e.copy.get(), host.bytes);
    std::memcpy(e.copy.get(), host.data, host.bytes);
    copied_ += host.bytes;
  }
  void* copy = e.copy.get();
  entries_.push_back(std::move(e));
  return copy;
}

void* Staging::add_rows(Napi::Env env, Napi::Value value, const HostArray& host, const char* field, size_t row_bytes,
                        const std::vector<int64_t>& rows) {
  if (host.shared) return nullptr;
  Entry e;
  e.field = field;
  e.array = Napi::Persistent(value.As<Napi::Object>());
  e.bytes = host.bytes;
  e.access = Access::InOut;
  e.row_bytes = row_bytes;
  e.rows = rows;
  const size_t bytes = rows.size() * row_bytes;
  e.copy = allocate(env, std::max<size_t>(rows.size(), 1) * row_bytes, field);  // a row even when none is picked
  prefault(e.copy.get(), bytes);
  for (size_t i = 0; i < rows.size(); ++i) {
    std::memcpy(e.copy.get() + i * row_bytes, host.data + size_t(rows[i]) * row_bytes, row_bytes);
  }
  copied_ += bytes;
  void* copy = e.copy.get();
  entries_.push_back(std::move(e));
  return copy;
}

void* Staging::scratch(Napi::Env env, size_t bytes, const char* what) {
  scratch_.push_back(allocate(env, bytes, what));
  return scratch_.back().get();
}

bool Staging::finish(Napi::Env env, std::string* error) {
  std::vector<HostArray> now(entries_.size());
  for (size_t i = 0; i < entries_.size(); ++i) {
    const Entry& e = entries_[i];
    if (e.access == Access::In) continue;
    now[i] = host_array(env, e.array.Value());
    if (now[i].detached || now[i].bytes != e.bytes || (e.bytes > 0 && !now[i].data)) {
      *error = name_of(e.field) + "'s ArrayBuffer was detached (transferred) while the call ran: nothing was written to " +
               "the call's outputs (pass arrays on a SharedArrayBuffer, or keep them until the call settles)";
      return false;
    }
  }
  for (size_t i = 0; i < entries_.size(); ++i) {
    const Entry& e = entries_[i];
    if (e.access == Access::In) continue;
    if (e.row_bytes > 0) {
      for (size_t r = 0; r < e.rows.size(); ++r) {
        std::memcpy(now[i].data + size_t(e.rows[r]) * e.row_bytes, e.copy.get() + r * e.row_bytes, e.row_bytes);
      }
    } else if (e.bytes > 0) {
      std::memcpy(now[i].data, e.copy.get(), e.bytes);
    }
  }
  return true;
}

}}  // namespace ssd::addon
