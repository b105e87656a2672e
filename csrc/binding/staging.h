// Host memory of the binding's calls: how a TypedArray's memory is read, and the memory policy of
// asynchronous calls (README, "Memory of asynchronous calls").
//
// While a call runs on another thread, JavaScript may detach any ArrayBuffer it passed
// (structuredClone(buf, { transfer: [buf] }), postMessage with a transfer list, buf.transfer()), and
// N-API can neither forbid that nor keep the memory alive past it: the memory then belongs to the
// new owner, or is freed. So no thread but the JS thread ever touches the memory of an
// ArrayBuffer. An asynchronous call stages its arrays (Staging): on the JS thread, before the work
// starts, each array on an ArrayBuffer is copied into memory the call owns (inputs; an output only
// gets memory of its size), and the work reads and writes only those copies; once the work is done,
// again on the JS thread, every output array is checked to still have its memory and then each is
// written from its copy. If one was detached, none is written and the call fails with
// ERR_SSD_DETACHED, naming it. A result the call returns in a new array is made here (new_buffer()):
// no JavaScript can reach it before the call settles, so the work writes it in place. An array on a SharedArrayBuffer cannot be detached nor shrink: the
// work uses its memory in place (the call's reference keeps it alive), and what other threads write
// to it meanwhile is the caller's business. Synchronous calls use every array in place (no
// JavaScript runs until they return).
#pragma once
#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace ssd { namespace addon {

// The memory of a TypedArray, as napi_get_typedarray_info sees it (Napi::TypedArray::ArrayBuffer()
// refuses a SharedArrayBuffer). A detached array has no data and 0 bytes.
struct HostArray {
  uint8_t* data = nullptr;
  size_t bytes = 0;
  // bytes per element; 0 for an element type that N-API does not name (Float16Array on some runtimes)
  size_t element_bytes = 0;
  napi_typedarray_type type = napi_uint8_array;
  bool shared = false;    // on a SharedArrayBuffer
  bool detached = false;  // its ArrayBuffer was detached (transferred): no data, 0 bytes
};
// `value` must be a TypedArray (check IsTypedArray() first).
HostArray host_array(Napi::Env env, Napi::Value value);

// A new zero-filled ArrayBuffer of `bytes` bytes, and its data in *data. The caller's TypeScript
// wraps it in a TypedArray of its own realm (a vm context's, under jest) once the call settled.
// Failure to allocate throws ERR_SSD_OUT_OF_MEMORY naming `name`.
Napi::ArrayBuffer new_buffer(Napi::Env env, size_t bytes, const std::string& name, uint8_t** data);

// An Error with code ERR_SSD_DETACHED.
Napi::Error detached_error(Napi::Env env, const std::string& message);

// How a call uses one of its arrays.
enum class Access { In, Out, InOut };

// The staged arrays of one asynchronous call. Made, filled and finished on the JS thread; the work
// (on any thread) uses only the pointers that add() returned.
class Staging {
 public:
  // `names`: the argument object's `names` field ({ x: 'inputs.x', y: 'options.out.y', ... }), the
  // arguments' names for messages (a field without one is named by its field).
  explicit Staging(Napi::Value names);
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;

  // The memory the work uses for `value` (the array `host` describes, read just now, of exactly the
  // bytes the call needs): its own on a SharedArrayBuffer, else a copy owned here (filled from the
  // array unless `access` is Out; written back by finish() unless it is In). `field` must outlive
  // this object (the binding passes string literals).
  void* add(Napi::Env env, Napi::Value value, const HostArray& host, const char* field, Access access);
  // For an InOut array of rows of `row_bytes` (the step's state cache with state indices): a copy
  // of only `rows` (distinct row numbers), one after another in that order, written back to the same
  // rows. On a SharedArrayBuffer nothing is staged and this returns nullptr: use the array in place.
  void* add_rows(Napi::Env env, Napi::Value value, const HostArray& host, const char* field, size_t row_bytes,
                 const std::vector<int64_t>& rows);
  // `bytes` of memory owned here (for what the call derives on the JS thread, such as remapped indices).
  void* scratch(Napi::Env env, size_t bytes, const char* what);

  // On the JS thread, once the work succeeded: writes every output array from its copy, or none of
  // them. Returns false, with a message naming the array in *error, when one lost its memory.
  bool finish(Napi::Env env, std::string* error);

  // Bytes copied into copies so far (for tests and benchmarks of the policy's cost).
  size_t bytes_copied() const { return copied_; }

 private:
  // Memory for copies, from a cache of freed blocks (staging.cpp): fresh pages cost a fault each,
  // which on virtual machines costs more than the copy, and calls in a loop copy the same sizes.
  class Block {
   public:
    Block() = default;
    Block(uint8_t* p, size_t capacity) : p_(p), capacity_(capacity) {}
    Block(Block&& o) noexcept : p_(o.p_), capacity_(o.capacity_) { o.p_ = nullptr; }
    Block& operator=(Block&& o) noexcept;
    ~Block();
    uint8_t* get() const { return p_; }

   private:
    uint8_t* p_ = nullptr;
    size_t capacity_ = 0;
  };
  struct Entry {
    const char* field = "";  // a string literal of the binding
    Napi::ObjectReference array;
    Block copy;
    size_t bytes = 0;  // of the array
    Access access = Access::In;
    size_t row_bytes = 0;       // with rows: the rows staged, in the copy's order
    std::vector<int64_t> rows;
  };
  Block allocate(Napi::Env env, size_t bytes, const char* field);
  std::string name_of(const char* field) const;  // its name in messages

  Napi::ObjectReference names_;
  std::vector<Entry> entries_;
  std::vector<Block> scratch_;
  size_t copied_ = 0;
};

}}  // namespace ssd::addon
