// Host memory of the binding's calls (staging.h): reading a TypedArray, and the staged copies of an
// asynchronous call.
#include "binding/staging.h"

#include <napi.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "binding/util.h"
#include "cpu/cpu_backend.h"

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

// Freed blocks kept for the next calls, at most kCacheBytes in all (a larger block is freed at
// once). Shared by every environment (worker_threads), so locked.
constexpr size_t kCacheBytes = size_t(1) << 30;
std::mutex cache_mutex;
std::multimap<size_t, uint8_t*>* cache = new std::multimap<size_t, uint8_t*>();  // never destroyed: used until exit
size_t cached_bytes = 0;

// A block of at least `bytes` (64-byte aligned) and its capacity: a cached one of up to twice the
// size, else a new one (*fresh: its pages are yet to be touched); nullptr when none can be had.
uint8_t* take_block(size_t bytes, size_t* capacity, bool* fresh) {
  const size_t rounded = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    auto it = cache->lower_bound(rounded);
    if (it != cache->end() && it->first / 2 <= rounded) {
      uint8_t* p = it->second;
      *capacity = it->first;
      cached_bytes -= it->first;
      cache->erase(it);
      *fresh = false;
      return p;
    }
  }
  *capacity = rounded;
  *fresh = true;
  return static_cast<uint8_t*>(std::aligned_alloc(64, rounded));
}

void give_block(uint8_t* p, size_t capacity) {
  if (!p) return;
  if (capacity <= kCacheBytes) {
    std::lock_guard<std::mutex> lock(cache_mutex);
    // make room by freeing the smallest blocks first
    while (cached_bytes + capacity > kCacheBytes && !cache->empty()) {
      auto smallest = cache->begin();
      cached_bytes -= smallest->first;
      std::free(smallest->second);
      cache->erase(smallest);
    }
    cache->emplace(capacity, p);
    cached_bytes += capacity;
    return;
  }
  std::free(p);
}

// The memcpy calls of one copy (a whole array, or rows of one), done by copy_all().
struct Piece {
  uint8_t* dst;
  const uint8_t* src;
  size_t bytes;
};

// memcpy of every piece, on up to 8 threads when there are many bytes in all: one core copies at a
// fraction of the machine's memory bandwidth. Runs while the JS thread waits here, so no JavaScript
// can detach the arrays meanwhile.
void copy_all(const std::vector<Piece>& pieces) {
  size_t total = 0;
  for (const Piece& p : pieces) total += p.bytes;
  constexpr size_t kPerThread = size_t(8) << 20;
  const size_t n = std::min<size_t>({total / kPerThread, size_t(ssd::cpu::default_threads()), 8});
  if (n <= 1) {
    for (const Piece& p : pieces) std::memcpy(p.dst, p.src, p.bytes);
    return;
  }
  // chunks of whole pages, about four per thread, dealt out in turn
  const size_t chunk = std::max<size_t>(4096, (total / (4 * n) + 4095) / 4096 * 4096);
  std::vector<Piece> chunks;
  for (const Piece& p : pieces) {
    for (size_t off = 0; off < p.bytes; off += chunk) chunks.push_back({p.dst + off, p.src + off, std::min(chunk, p.bytes - off)});
  }
  auto work = [&chunks, n](size_t t) {
    for (size_t j = t; j < chunks.size(); j += n) std::memcpy(chunks[j].dst, chunks[j].src, chunks[j].bytes);
  };
  std::vector<std::thread> helpers;
  size_t t = 1;
  try {
    for (; t < n; ++t) helpers.emplace_back(work, t);
  } catch (...) {  // no thread to be had: this one does the rest
    for (; t < n; ++t) work(t);
  }
  work(0);
  for (std::thread& h : helpers) h.join();
}

}  // namespace

Staging::Block& Staging::Block::operator=(Block&& o) noexcept {
  if (this != &o) {
    give_block(p_, capacity_);
    p_ = o.p_;
    capacity_ = o.capacity_;
    o.p_ = nullptr;
  }
  return *this;
}

Staging::Block::~Block() { give_block(p_, capacity_); }

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

Napi::ArrayBuffer new_buffer(Napi::Env env, size_t bytes, const std::string& name, uint8_t** data) {
  napi_value buffer = nullptr;
  void* memory = nullptr;
  if (napi_create_arraybuffer(env, bytes, &memory, &buffer) != napi_ok) {
    // the engine's own error (a RangeError) is replaced by ours
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
      napi_value ignored;
      napi_get_and_clear_last_exception(env, &ignored);
    }
    throw status_error(env, SSD_ERR_OUT_OF_MEMORY, "Could not allocate " + name + " (" + std::to_string(bytes) + " bytes)");
  }
  *data = static_cast<uint8_t*>(memory);
  return Napi::ArrayBuffer(env, buffer);
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
  size_t capacity = 0;
  bool fresh = false;
  uint8_t* p = take_block(bytes, &capacity, &fresh);
  if (!p) {
    throw status_error(env, SSD_ERR_OUT_OF_MEMORY,
                       "Could not allocate " + std::to_string(bytes) + " bytes for the copy of " + name_of(field) +
                           " that an asynchronous call works on (arrays on a SharedArrayBuffer are used in place)");
  }
  if (fresh) prefault(p, bytes);  // populate its pages in bulk, not one fault at a time
  return Block(p, capacity);
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
    copy_all({{e.copy.get(), host.data, host.bytes}});
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
  std::vector<Piece> pieces;
  for (size_t i = 0; i < rows.size(); ++i) pieces.push_back({e.copy.get() + i * row_bytes, host.data + size_t(rows[i]) * row_bytes, row_bytes});
  copy_all(pieces);
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
  size_t outputs = 0;
  for (const Entry& e : entries_) outputs += e.access == Access::In ? 0 : 1;
  for (size_t i = 0; i < entries_.size(); ++i) {
    const Entry& e = entries_[i];
    if (e.access == Access::In) continue;
    now[i] = host_array(env, e.array.Value());
    if (now[i].detached || now[i].bytes != e.bytes || (e.bytes > 0 && !now[i].data)) {
      *error = name_of(e.field) + "'s ArrayBuffer was detached (transferred) while the call ran: " +
               (outputs > 1 ? "neither it nor the call's other outputs on ArrayBuffers were written" : "it was not written") +
               " (pass arrays on a SharedArrayBuffer, or keep them until the call settles)";
      return false;
    }
  }
  std::vector<Piece> pieces;
  for (size_t i = 0; i < entries_.size(); ++i) {
    const Entry& e = entries_[i];
    if (e.access == Access::In) continue;
    if (e.row_bytes > 0) {
      for (size_t r = 0; r < e.rows.size(); ++r) {
        pieces.push_back({now[i].data + size_t(e.rows[r]) * e.row_bytes, e.copy.get() + r * e.row_bytes, e.row_bytes});
      }
    } else if (e.bytes > 0) {
      pieces.push_back({now[i].data, e.copy.get(), e.bytes});
    }
  }
  copy_all(pieces);
  return true;
}

}}  // namespace ssd::addon
