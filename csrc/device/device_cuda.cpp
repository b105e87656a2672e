// The CUDA device layer (see device.h), compiled when the build has CUDA. The CUDA runtime is
// linked statically and loads the driver on first use, so a machine without a driver or GPU only
// learns it here, lazily, and the reason is reported instead of failing the load.
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "device/device.h"
#include "device/fault_kernels.h"

namespace ssd {
namespace device {

namespace {

std::string cuda_message(cudaError_t e, const char* what) {
  return std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}

Result cuda_result(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return {};
  SsdStatus status = e == cudaErrorMemoryAllocation ? SSD_ERR_OUT_OF_MEMORY : SSD_ERR_CUDA;
  return {status, cuda_message(e, what)};
}

// Rounds a request so that blocks of nearby sizes can be reused: 512 B granules below 1 MiB,
// 2 MiB granules above.
size_t round_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
  const size_t granule = bytes < (size_t(1) << 20) ? 512 : (size_t(2) << 20);
  return (bytes + granule - 1) / granule * granule;
}

// ---- Fault injection (device.h): one armed fault at a time, taken by the first operation it fits ----

enum FaultKind : int { kNoFault = 0, kFaultTrap = 1, kFaultLaunch = 2, kFaultAlloc = 3 };
std::atomic<int> g_armed_fault{kNoFault};

bool fault_injection_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("SSD_KERNELS_FAULT_INJECT");
    return v != nullptr && std::strcmp(v, "1") == 0;
  }();
  return enabled;
}

// Takes the armed fault when it is `kind`. Unarmed (always, unless a test armed one), this is one
// relaxed load.
bool take_fault(int kind) {
  if (g_armed_fault.load(std::memory_order_relaxed) != kind) return false;
  int expected = kind;
  return g_armed_fault.compare_exchange_strong(expected, kNoFault);
}

const char* kInjected = " [injected by SSD_KERNELS_FAULT_INJECT]";

// ---- Lost contexts (device.h) ----

// The errors that CUDA documents as leaving the context unusable ("the process must be terminated
// and relaunched").
bool sticky_code(cudaError_t e) {
  switch (e) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorHardwareStackError:
    case cudaErrorAssert:
    case cudaErrorLaunchTimeout:
    case cudaErrorECCUncorrectable:
    case cudaErrorContextIsDestroyed:
      return true;
    default:
      return false;
  }
}

// After a failure on the calling thread's current device: the error that lost its context, or
// cudaSuccess. A non-sticky error is cleared by cudaGetLastError(); a sticky one is returned again
// by every call that touches the context, such as cudaFree(nullptr), which otherwise does nothing.
cudaError_t lost_error(cudaError_t seen) {
  if (sticky_code(seen)) return seen;
  cudaError_t last = cudaGetLastError();
  if (sticky_code(last)) return last;
  cudaError_t probe = cudaFree(nullptr);
  if (probe != cudaSuccess) {
    cudaGetLastError();
    return probe;
  }
  return cudaSuccess;
}

struct Job_ {
  Job job;
  Done done;
};

// One per device: the stream, the allocator's books and the worker thread.
struct DeviceState {
  int index = 0;
  std::mutex mutex;                        // guards the allocator's books
  std::multimap<size_t, void*> free_blocks;  // size -> block
  std::map<void*, size_t> block_size;        // every block this allocator owns
  MemoryStats stats;

  std::once_flag started;
  Result start_error;
  cudaStream_t stream = nullptr;
  cudaEvent_t done_event = nullptr;
  std::mutex queue_mutex;
  std::condition_variable queue_cv;
  std::deque<Job_> queue;
  std::atomic<size_t> queued{0};  // queue.size(), readable without the lock

  // Set once, when a sticky error lost the context; `lost_message` is the refusal of later work.
  std::atomic<bool> lost{false};
  std::mutex lost_mutex;
  std::string lost_message;

  Result refusal() {
    std::lock_guard<std::mutex> lock(lost_mutex);
    return {SSD_ERR_CUDA, lost_message};
  }

  // Called after `failure` (of a job, or of a C ABI call on this device): when the context is lost,
  // notes it and returns the failure with that said; else returns it as it is.
  Result check_lost(Result failure, cudaError_t seen) {
    cudaError_t e = lost_error(seen);
    if (e == cudaSuccess) return failure;
    std::lock_guard<std::mutex> lock(lost_mutex);
    if (!lost.load()) {
      lost_message = "CUDA device " + std::to_string(index) + " is unusable: an earlier error (" + failure.message +
                     ") was sticky (" + cudaGetErrorName(e) + ") and lost its CUDA context for the rest of the " +
                     "process; restart the process to use the GPU again (the CPU path still works)";
      lost.store(true);
    }
    failure.message += "; the error is sticky: the CUDA context of device " + std::to_string(index) +
                       " is lost, and every later CUDA call fails at once; restart the process to use the GPU again";
    return failure;
  }

  // Starts the worker thread and creates the stream on first use.
  Result start() {
    std::call_once(started, [this] {
      start_error = cuda_result(cudaSetDevice(index), "cudaSetDevice");
      if (!start_error.ok()) return;
      start_error = cuda_result(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
      if (!start_error.ok()) return;
      start_error = cuda_result(cudaEventCreateWithFlags(&done_event, cudaEventBlockingSync | cudaEventDisableTiming),
                                "cudaEventCreate");
      if (!start_error.ok()) return;
      std::thread([this] { run(); }).detach();
    });
    return start_error;
  }

  // A decode loop submits a small job, awaits it and submits the next ~0.05 ms later. Sleeping on
  // a condition variable or a blocking-sync event costs tens of microseconds per wake-up, so the
  // worker spins (yielding) for up to kSpin on the event and on the queue before it sleeps: short
  // jobs finish without a sleep, and a long one costs one core for kSpin.
  static constexpr std::chrono::microseconds kSpin{200};

  cudaError_t wait_event() {
    const auto until = std::chrono::steady_clock::now() + kSpin;
    cudaError_t e;
    while ((e = cudaEventQuery(done_event)) == cudaErrorNotReady) {
      if (std::chrono::steady_clock::now() > until) return cudaEventSynchronize(done_event);
      std::this_thread::yield();
    }
    return e;
  }

  void run() {
    cudaSetDevice(index);
    for (;;) {
      Job_ item;
      const auto until = std::chrono::steady_clock::now() + kSpin;
      while (queued.load(std::memory_order_acquire) == 0 && std::chrono::steady_clock::now() < until)
        std::this_thread::yield();
      {
        std::unique_lock<std::mutex> lock(queue_mutex);
        queue_cv.wait(lock, [this] { return !queue.empty(); });
        item = std::move(queue.front());
        queue.pop_front();
        queued.store(queue.size(), std::memory_order_release);
      }
      if (lost.load()) {  // queued before the context was lost: refused without touching CUDA
        item.done(refusal());
        continue;
      }
      Result r = inject_armed_fault(stream);
      if (r.ok()) r = item.job(stream);
      // The job's own launches may fail asynchronously: the event wait reports that.
      cudaError_t e = cudaEventRecord(done_event, stream);
      if (e == cudaSuccess) e = wait_event();
      if (r.ok() && e != cudaSuccess) r = cuda_result(e, "kernel execution");
      if (r.ok()) {
        cudaError_t last = cudaGetLastError();
        if (last != cudaSuccess) r = cuda_result(last, "kernel launch");
      }
      if (!r.ok()) r = check_lost(r, e);
      item.done(r);
    }
  }
};

std::mutex devices_mutex;
// Never destroyed: a worker thread waits on each state's condition variable until the process
// ends, and destroying a condition variable with a waiter blocks exit.
std::vector<std::unique_ptr<DeviceState>>& devices = *new std::vector<std::unique_ptr<DeviceState>>();

DeviceState* state(int device) {
  const Availability& a = availability();
  if (!a.available || device < 0 || device >= a.devices) return nullptr;
  std::lock_guard<std::mutex> lock(devices_mutex);
  if (devices.empty()) {
    for (int i = 0; i < a.devices; i++) {
      devices.emplace_back(new DeviceState());
      devices.back()->index = i;
    }
  }
  return devices[device].get();
}

Result no_device(int device) {
  const Availability& a = availability();
  if (!a.available) return {SSD_ERR_CUDA, "CUDA is unavailable: " + a.reason};
  return {SSD_ERR_INVALID_ARGUMENT, "no CUDA device " + std::to_string(device) + " (this machine has " +
                                        std::to_string(a.devices) + ")"};
}

// The C ABI's scratch memory: one pool per device, created on first use, that keeps what it has
// (release threshold: unlimited) until empty_cache() trims it.
std::mutex pools_mutex;
std::map<int, cudaMemPool_t>& pools = *new std::map<int, cudaMemPool_t>();

Result pool_of(int device, cudaMemPool_t* pool) {
  std::lock_guard<std::mutex> lock(pools_mutex);
  auto it = pools.find(device);
  if (it != pools.end()) {
    *pool = it->second;
    return {};
  }
  int supported = 0;
  Result r = cuda_result(cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, device),
                         "cudaDeviceGetAttribute(cudaDevAttrMemoryPoolsSupported)");
  if (!r.ok()) return r;
  if (!supported) {
    return {SSD_ERR_UNSUPPORTED, "CUDA device " + std::to_string(device) +
                                     " does not support stream-ordered memory pools, which calls on a caller's stream need"};
  }
  cudaMemPoolProps props;
  std::memset(&props, 0, sizeof props);
  props.allocType = cudaMemAllocationTypePinned;
  props.handleTypes = cudaMemHandleTypeNone;
  props.location.type = cudaMemLocationTypeDevice;
  props.location.id = device;
  r = cuda_result(cudaMemPoolCreate(pool, &props), "cudaMemPoolCreate");
  if (!r.ok()) return r;
  uint64_t keep = UINT64_MAX;
  cudaMemPoolSetAttribute(*pool, cudaMemPoolAttrReleaseThreshold, &keep);
  pools[device] = *pool;
  return {};
}

void trim_pool(int device) {
  cudaMemPool_t pool = nullptr;
  {
    std::lock_guard<std::mutex> lock(pools_mutex);
    auto it = pools.find(device);
    if (it == pools.end()) return;
    pool = it->second;
  }
  cudaMemPoolTrimTo(pool, 0);  // frees only blocks no queued work still uses
}

}  // namespace

const Availability& availability() {
  static Availability a = [] {
    Availability r;
    r.compiled = true;
    const char* forced = std::getenv("SSD_KERNELS_DEVICE");
    if (forced && std::strcmp(forced, "cpu") == 0) {
      r.reason = "disabled by SSD_KERNELS_DEVICE=cpu";
      return r;
    }
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
      r.reason = cuda_message(e, "cudaGetDeviceCount");
      cudaGetLastError();
      if (e == cudaErrorInsufficientDriver) {
        // The runtime says this both when there is no driver and when it is too old: tell them apart.
        void* driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
        if (!driver) {
          r.reason = "no NVIDIA driver (libcuda.so.1 could not be loaded); " + r.reason;
        } else {
          r.reason = "the NVIDIA driver is older than this build's CUDA runtime needs (" +
                     std::to_string(CUDART_VERSION / 1000) + "." + std::to_string(CUDART_VERSION % 1000 / 10) +
                     "); " + r.reason;
          dlclose(driver);
        }
      }
      return r;
    }
    if (count == 0) {
      r.reason = "no CUDA device found";
      return r;
    }
    for (int i = 0; i < count; i++) {
      cudaDeviceProp prop;
      if (cudaGetDeviceProperties(&prop, i) == cudaSuccess && prop.major < 8) {
        r.reason = std::string("device ") + std::to_string(i) + " (" + prop.name + ") has compute capability " +
                   std::to_string(prop.major) + "." + std::to_string(prop.minor) + "; the kernels need 8.0 or newer";
        return r;
      }
    }
    r.available = true;
    r.devices = count;
    return r;
  }();
  return a;
}

Result allocate(int device, size_t bytes, void** ptr) {
  DeviceState* d = state(device);
  if (!d) return no_device(device);
  if (d->lost.load()) return d->refusal();
  const size_t size = round_size(bytes);
  const bool injected = take_fault(kFaultAlloc);
  if (!injected) {
    std::lock_guard<std::mutex> lock(d->mutex);
    auto it = d->free_blocks.lower_bound(size);
    if (it != d->free_blocks.end() && it->first <= 2 * size) {
      *ptr = it->second;
      d->stats.cached -= it->first;
      d->stats.in_use += it->first;
      if (d->stats.in_use > d->stats.peak_in_use) d->stats.peak_in_use = d->stats.in_use;
      d->free_blocks.erase(it);
      return {};
    }
  }
  Result started = d->start();
  if (!started.ok()) return started;
  cudaSetDevice(device);
  void* p = nullptr;
  // An injected fault asks for 2^60 bytes, more than any device has: CUDA's own out-of-memory error.
  const size_t request = injected ? (size_t(1) << 60) : size;
  cudaError_t e = cudaMalloc(&p, request);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // not sticky: clear it, give the cache back and try once more
    empty_cache(device);
    cudaSetDevice(device);
    e = cudaMalloc(&p, request);
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    Result r = cuda_result(e, ("cudaMalloc of " + std::to_string(size) + " bytes").c_str());
    if (injected) r.message += kInjected;
    // an error other than out-of-memory may be a sticky one that a job has not met yet
    return e == cudaErrorMemoryAllocation ? r : d->check_lost(std::move(r), e);
  }
  std::lock_guard<std::mutex> lock(d->mutex);
  d->block_size[p] = size;
  d->stats.in_use += size;
  if (d->stats.in_use > d->stats.peak_in_use) d->stats.peak_in_use = d->stats.in_use;
  *ptr = p;
  return {};
}

void release(int device, void* ptr) {
  if (!ptr) return;
  DeviceState* d = state(device);
  if (!d) return;
  std::lock_guard<std::mutex> lock(d->mutex);
  auto it = d->block_size.find(ptr);
  if (it == d->block_size.end()) return;  // not ours
  d->free_blocks.emplace(it->second, ptr);
  d->stats.in_use -= it->second;
  d->stats.cached += it->second;
}

Result empty_cache(int device) {
  DeviceState* d = state(device);
  if (!d) return no_device(device);
  if (d->lost.load()) {  // the blocks went with the context: forget them without calling CUDA
    std::lock_guard<std::mutex> lock(d->mutex);
    for (auto& kv : d->free_blocks) d->block_size.erase(kv.second);
    d->free_blocks.clear();
    d->stats.cached = 0;
    return d->refusal();
  }
  trim_pool(device);
  std::vector<void*> blocks;
  {
    std::lock_guard<std::mutex> lock(d->mutex);
    for (auto& kv : d->free_blocks) {
      blocks.push_back(kv.second);
      d->block_size.erase(kv.second);
    }
    d->free_blocks.clear();
    d->stats.cached = 0;
  }
  if (blocks.empty()) return {};
  cudaSetDevice(device);
  // Queued work on the stream may still use a cached block: wait for it before freeing.
  if (d->stream) cudaStreamSynchronize(d->stream);
  for (void* p : blocks) cudaFree(p);
  cudaGetLastError();
  return {};
}

MemoryStats memory_stats(int device) {
  DeviceState* d = state(device);
  if (!d) return {};
  std::lock_guard<std::mutex> lock(d->mutex);
  return d->stats;
}

void reset_peak(int device) {
  DeviceState* d = state(device);
  if (!d) return;
  std::lock_guard<std::mutex> lock(d->mutex);
  d->stats.peak_in_use = d->stats.in_use;
}

void submit(int device, Job job, Done done) {
  DeviceState* d = state(device);
  if (!d) {
    done(no_device(device));
    return;
  }
  if (d->lost.load()) {
    done(d->refusal());
    return;
  }
  Result started = d->start();
  if (!started.ok()) {
    done(started);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(d->queue_mutex);
    d->queue.push_back(Job_{std::move(job), std::move(done)});
    d->queued.store(d->queue.size(), std::memory_order_release);
  }
  d->queue_cv.notify_one();
}

Result copy_async(void* dst, const void* src, size_t bytes, bool to_device, void* stream) {
  return cuda_result(cudaMemcpyAsync(dst, src, bytes, to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost,
                                     static_cast<cudaStream_t>(stream)),
                     to_device ? "cudaMemcpyAsync (host to device)" : "cudaMemcpyAsync (device to host)");
}

Result time_on_stream(void* stream, const std::function<Result(void*)>& body, int warmup, int iters, std::vector<float>* ms) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  for (int i = 0; i < warmup; i++) {
    Result r = body(stream);
    if (!r.ok()) return r;
  }
  std::vector<cudaEvent_t> events(2 * size_t(iters));
  for (auto& e : events) {
    Result r = cuda_result(cudaEventCreate(&e), "cudaEventCreate");
    if (!r.ok()) return r;
  }
  Result result;
  for (int i = 0; i < iters && result.ok(); i++) {
    cudaEventRecord(events[2 * i], s);
    result = body(stream);
    cudaEventRecord(events[2 * i + 1], s);
  }
  if (result.ok()) result = cuda_result(cudaStreamSynchronize(s), "cudaStreamSynchronize");
  for (int i = 0; i < iters && result.ok(); i++) {
    float t = 0;
    result = cuda_result(cudaEventElapsedTime(&t, events[2 * i], events[2 * i + 1]), "cudaEventElapsedTime");
    ms->push_back(t);
  }
  for (auto& e : events) cudaEventDestroy(e);
  return result;
}

Result synchronize(void* stream) {
  return cuda_result(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)), "cudaStreamSynchronize");
}

Result zero_async(void* dst, size_t bytes, void* stream) {
  return cuda_result(cudaMemsetAsync(dst, 0, bytes, static_cast<cudaStream_t>(stream)), "cudaMemsetAsync");
}

Result current_device(int* device) { return cuda_result(cudaGetDevice(device), "cudaGetDevice"); }

Result check_device_pointer(int device, const void* ptr, const char* name) {
  cudaPointerAttributes attr;
  std::memset(&attr, 0, sizeof attr);
  cudaError_t e = cudaPointerGetAttributes(&attr, ptr);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return {SSD_ERR_INVALID_ARGUMENT, std::string(name) + ": cannot tell where the pointer lives (" +
                                          cudaGetErrorName(e) + "); expected device memory of CUDA device " +
                                          std::to_string(device)};
  }
  if (attr.type == cudaMemoryTypeManaged) return {};
  if (attr.type == cudaMemoryTypeDevice && attr.device == device) return {};
  std::string what = attr.type == cudaMemoryTypeDevice ? "device memory of CUDA device " + std::to_string(attr.device)
                     : attr.type == cudaMemoryTypeHost ? "page-locked host memory"
                                                       : "host memory";
  return {SSD_ERR_INVALID_ARGUMENT, std::string(name) + ": expected device memory of the current CUDA device (" +
                                        std::to_string(device) + ") but received " + what};
}

Result stream_alloc(int device, size_t bytes, void* stream, void** ptr) {
  *ptr = nullptr;
  Result r = usable(device);
  if (!r.ok()) return r;
  cudaMemPool_t pool = nullptr;
  r = pool_of(device, &pool);
  if (!r.ok()) return r;
  const bool injected = take_fault(kFaultAlloc);
  const size_t request = injected ? (size_t(1) << 60) : bytes;  // more than any device has
  cudaError_t e = cudaMallocFromPoolAsync(ptr, request, pool, static_cast<cudaStream_t>(stream));
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    empty_cache(device);  // give back what the package's other allocator caches, then try once more
    e = cudaMallocFromPoolAsync(ptr, request, pool, static_cast<cudaStream_t>(stream));
  }
  if (e != cudaSuccess) {
    cudaGetLastError();
    *ptr = nullptr;
    r = cuda_result(e, ("cudaMallocFromPoolAsync of " + std::to_string(bytes) + " bytes").c_str());
    if (injected) r.message += kInjected;
    return r;
  }
  return {};
}

Result usable(int device) {
  DeviceState* d = state(device);
  if (!d) return no_device(device);
  return d->lost.load() ? d->refusal() : Result{};
}

Result note_failure(int device, Result failure) {
  DeviceState* d = state(device);
  if (!d || failure.status != SSD_ERR_CUDA) return failure;
  return d->check_lost(std::move(failure), cudaSuccess);
}

Result arm_fault(const std::string& kind) {
  if (!fault_injection_enabled()) {
    return {SSD_ERR_INVALID_ARGUMENT,
            "fault injection is off: it is for tests, and only a process started with SSD_KERNELS_FAULT_INJECT=1 can arm it"};
  }
  const int fault = kind == "trap" ? kFaultTrap : kind == "launch" ? kFaultLaunch : kind == "alloc" ? kFaultAlloc : kNoFault;
  if (fault == kNoFault) {
    return {SSD_ERR_INVALID_ARGUMENT, "fault injection: expected 'trap', 'launch' or 'alloc' but received '" + kind + "'"};
  }
  const Availability& a = availability();
  if (!a.available) return {SSD_ERR_CUDA, "CUDA is unavailable: " + a.reason};
  g_armed_fault.store(fault);
  return {};
}

Result inject_armed_fault(void* stream) {
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (take_fault(kFaultLaunch)) {
    cudaError_t e = launch_fault_invalid(s);
    if (e == cudaSuccess) return {SSD_ERR_INTERNAL, std::string("an invalid launch did not fail") + kInjected};
    Result r = cuda_result(e, "kernel launch");
    r.message += kInjected;
    return r;
  }
  if (take_fault(kFaultTrap)) {
    cudaError_t e = launch_fault_trap(s);  // the work enqueued after it fails once the trap runs
    if (e != cudaSuccess) {
      Result r = cuda_result(e, "kernel launch");
      r.message += kInjected;
      return r;
    }
  }
  return {};
}

Result stream_free(void* ptr, void* stream) {
  return cuda_result(cudaFreeAsync(ptr, static_cast<cudaStream_t>(stream)), "cudaFreeAsync");
}

}  // namespace device
}  // namespace ssd
