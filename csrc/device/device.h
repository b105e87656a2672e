// The CUDA device layer: lazy initialisation, one stream and one caching allocator per device,
// and one worker thread per device that runs GPU jobs in order. Plain C++ (no CUDA types), so the
// binding compiles the same with or without CUDA; device_none.cpp implements it for builds
// without CUDA and reports why nothing runs.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ssd_kernels.h"

namespace ssd {
namespace device {

struct Availability {
  bool compiled = false;   // this build contains the CUDA kernels
  bool available = false;  // a device can run them now
  int devices = 0;
  std::string reason;      // why not, when !available
};

// Initialises CUDA on first use (never at load time): without a driver or GPU the addon still
// loads and the CPU path works. SSD_KERNELS_DEVICE=cpu (read once, at the first call) reports CUDA
// unavailable without touching the driver.
const Availability& availability();

// Result of a device operation: status plus a message that names the CUDA error.
struct Result {
  SsdStatus status = SSD_OK;
  std::string message;
  bool ok() const { return status == SSD_OK; }
};

// The caching allocator. Blocks are reused by rounded size; cudaMalloc runs only on a miss (after
// an out-of-memory miss the cache is emptied once and the allocation retried). Frees are ordered on
// the device's one stream, so a block returned while queued work still reads it is safe to reuse by
// later work on that stream.
Result allocate(int device, size_t bytes, void** ptr);
void release(int device, void* ptr);
Result empty_cache(int device);

struct MemoryStats {
  size_t in_use = 0;    // bytes handed out and not released
  size_t cached = 0;    // bytes held by the cache, free for reuse
  size_t peak_in_use = 0;
};
MemoryStats memory_stats(int device);
void reset_peak(int device);

// A job runs on the device's worker thread with the device current, receiving its stream
// (a cudaStream_t as void*). It enqueues work and returns a Result; the worker then records an
// event, waits for it (blocking, no spin) and calls `done` on the worker thread with the outcome,
// which includes any asynchronous CUDA error of the job's kernels.
using Job = std::function<Result(void* stream)>;
using Done = std::function<void(const Result&)>;
void submit(int device, Job job, Done done);

// Enqueues a copy between host and device memory on `stream` (inside a job).
Result copy_async(void* dst, const void* src, size_t bytes, bool to_device, void* stream);

// Inside a job: runs `body` `warmup` times, then `iters` times with a pair of CUDA events around
// each run, and appends each run's milliseconds to *ms.
Result time_on_stream(void* stream, const std::function<Result(void*)>& body, int warmup, int iters, std::vector<float>* ms);

// Waits (blocking, inside a job) until the work queued on `stream` so far is complete.
Result synchronize(void* stream);

// Enqueues a fill of `bytes` zero bytes (inside a job).
Result zero_async(void* dst, size_t bytes, void* stream);

// ---- For the C ABI, on the caller's thread and stream (not the device's worker) ----

// The calling thread's current CUDA device.
Result current_device(int* device);
// SSD_OK when `ptr` is device or managed memory that `device`'s kernels can read; otherwise
// SSD_ERR_INVALID_ARGUMENT naming `name` and what the pointer is.
Result check_device_pointer(int device, const void* ptr, const char* name);
// Scratch memory ordered on a stream the caller owns: a memory pool of this library per device
// (cudaMallocFromPoolAsync / cudaFreeAsync), so a block is reused only after the work that used it
// is done, whichever stream asks next. empty_cache(device) trims the pool.
Result stream_alloc(int device, size_t bytes, void* stream, void** ptr);
Result stream_free(void* ptr, void* stream);

// ---- Lost contexts ----
//
// A sticky CUDA error (an illegal address, a trap, a kernel that faults) leaves the device's CUDA
// context unusable for the rest of the process: every later CUDA call would fail with it. The layer
// notices it when a job, or a C ABI call, fails that way, says so in that failure's message, and
// from then on refuses all work on the device at once (submit, allocate, empty_cache, the C ABI's
// device entries) with SSD_ERR_CUDA and a message that names the first error and says that the
// process must restart to use the GPU again. The CPU path is unaffected.

// SSD_OK, or the refusal of a device whose context is lost.
Result usable(int device);
// After a CUDA failure of a C ABI call on `device`: notes a lost context; returns `failure` with
// that said in its message when it is lost.
Result note_failure(int device, Result failure);

// ---- Fault injection, for the GPU suite (test/cuda/fault.cuda.test.ts) ----
//
// Off unless the process started with SSD_KERNELS_FAULT_INJECT=1 (read once, at the first use;
// when off, the only cost is one relaxed atomic load per job and per allocation). arm_fault(kind)
// then makes the next CUDA operation of the package fail, once:
//   "trap"    the next job (or C ABI device call) first runs a kernel that executes __trap(): a
//             sticky error, the context is lost;
//   "launch"  the next job (or C ABI device call) fails with a kernel launch of an invalid
//             configuration instead of its work: cudaErrorInvalidConfiguration, not sticky;
//   "alloc"   the next device allocation asks CUDA for more memory than any device has:
//             cudaErrorMemoryAllocation, not sticky.
Result arm_fault(const std::string& kind);
// Runs an armed "trap" or "launch" on `stream` (SSD_OK when none is armed): the C ABI's device
// entries call it before they enqueue (the device worker does, before each job).
Result inject_armed_fault(void* stream);

}  // namespace device
}  // namespace ssd
