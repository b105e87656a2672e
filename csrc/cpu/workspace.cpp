// A one-block cache of host workspace for the CPU kernels (baseline flags).
//
// The backward needs tens of MiB of workspace per call (the states at range boundaries). Fresh pages
// cost a page fault each on first touch, which on some (virtualised) machines costs more than the
// computation, so the largest block released is kept for the next call, as a caching allocator
// would. At most kKeepBytes stay cached; concurrent calls that find the cache taken allocate their own.
#include <cstdlib>
#include <mutex>

#include "cpu_internal.h"

namespace ssd { namespace cpu { namespace detail {
namespace {

constexpr size_t kKeepBytes = size_t(128) << 20;

std::mutex cache_mu;
void* cached = nullptr;
size_t cached_bytes = 0;

}  // namespace

void* workspace_acquire(size_t bytes) {
  {
    std::lock_guard<std::mutex> lock(cache_mu);
    if (cached && cached_bytes >= bytes) {
      void* p = cached;
      cached = nullptr;
      cached_bytes = 0;
      return p;
    }
  }
  void* p = nullptr;
  if (posix_memalign(&p, 64, bytes < 64 ? 64 : bytes) != 0) return nullptr;
  return p;
}

void workspace_release(void* p, size_t bytes) {
  if (!p) return;
  void* drop = p;
  if (bytes <= kKeepBytes) {
    std::lock_guard<std::mutex> lock(cache_mu);
    if (bytes > cached_bytes) {
      drop = cached;
      cached = p;
      cached_bytes = bytes;
    }
  }
  free(drop);
}

}}}  // namespace ssd::cpu::detail
