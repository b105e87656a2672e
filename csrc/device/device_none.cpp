// The device layer of builds without CUDA (the node-gyp CPU-only build, or cmake without nvcc):
// every entry point reports that this build has no CUDA kernels.
#include <cstdlib>
#include <cstring>

#include "device/device.h"

namespace ssd {
namespace device {

namespace {
const char* kReason = "this build has no CUDA kernels (built without a CUDA compiler, or with node-gyp, which builds the CPU path only)";
Result unavailable() { return {SSD_ERR_CUDA, std::string("CUDA is unavailable: ") + kReason}; }
}  // namespace

const Availability& availability() {
  static Availability a = [] {
    Availability r;
    r.reason = kReason;
    return r;
  }();
  return a;
}

Result allocate(int, size_t, void** ptr) {
  *ptr = nullptr;
  return unavailable();
}
void release(int, void*) {}
Result empty_cache(int) { return unavailable(); }
MemoryStats memory_stats(int) { return {}; }
void reset_peak(int) {}
void submit(int, Job, Done done) { done(unavailable()); }
Result copy_async(void*, const void*, size_t, bool, void*) { return unavailable(); }
Result synchronize(void*) { return unavailable(); }
Result zero_async(void*, size_t, void*) { return unavailable(); }
Result time_on_stream(void*, const std::function<Result(void*)>&, int, int, std::vector<float>*) { return unavailable(); }
Result current_device(int*) { return unavailable(); }
Result check_device_pointer(int, const void*, const char*) { return unavailable(); }
Result stream_alloc(int, size_t, void*, void** ptr) {
  *ptr = nullptr;
  return unavailable();
}
Result stream_free(void*, void*) { return unavailable(); }
Result usable(int) { return unavailable(); }
Result note_failure(int, Result failure) { return failure; }
Result arm_fault(const std::string&) {
  const char* v = std::getenv("SSD_KERNELS_FAULT_INJECT");
  if (v == nullptr || std::strcmp(v, "1") != 0) {
    return {SSD_ERR_INVALID_ARGUMENT,
            "fault injection is off: it is for tests, and only a process started with SSD_KERNELS_FAULT_INJECT=1 can arm it"};
  }
  return unavailable();
}
Result inject_armed_fault(void*) { return {}; }

}  // namespace device
}  // namespace ssd
