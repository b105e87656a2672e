// A small persistent thread pool for the CPU backend (baseline flags).
//
// Created lazily on the first multi-threaded call, grown to the largest size asked for, and never
// destroyed (it is leaked on purpose so that nothing has to be joined at process exit or addon
// unload). Concurrent callers are serialised on call_mu; a call with n <= 1 runs inline and does not
// touch the pool, so single-threaded calls from different threads run concurrently.
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#include "cpu_internal.h"

namespace ssd { namespace cpu { namespace detail {
namespace {

class Pool {
 public:
  // Runs fn(ctx, id) for id in [0, n): id 0 here, ids 1..n-1 on helpers (or here if they are missing).
  void run(int n, void (*fn)(void*, int), void* ctx) {
    std::lock_guard<std::mutex> call_lock(call_mu_);
    const int helpers_wanted = n - 1;
    grow(helpers_wanted);
    const int helpers = helpers_wanted < nthreads_ ? helpers_wanted : nthreads_;
    {
      std::lock_guard<std::mutex> lk(mu_);
      fn_ = fn;
      ctx_ = ctx;
      job_helpers_ = helpers;
      pending_ = helpers;
      ++generation_;
    }
    if (helpers > 0) cv_work_.notify_all();
    fn(ctx, 0);
    for (int id = helpers + 1; id < n; ++id) fn(ctx, id);  // helpers we could not create
    std::unique_lock<std::mutex> lk(mu_);
    cv_done_.wait(lk, [&] { return pending_ == 0; });
  }

 private:
  void grow(int want) {
    while (nthreads_ < want) {
      const int index = nthreads_;        // helper index: runs id index + 1
      const uint64_t gen0 = generation_;  // written only while call_mu_ is held (by us, now)
      try {
        std::thread th([this, index, gen0] { worker(index, gen0); });
        th.detach();
      } catch (...) {
        return;  // keep the helpers we have
      }
      ++nthreads_;
    }
  }

  void worker(int index, uint64_t seen) {
    for (;;) {
      void (*fn)(void*, int);
      void* ctx;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_work_.wait(lk, [&] { return generation_ != seen; });
        seen = generation_;
        if (index >= job_helpers_) continue;
        fn = fn_;
        ctx = ctx_;
      }
      fn(ctx, index + 1);
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (--pending_ == 0) cv_done_.notify_one();
      }
    }
  }

  std::mutex call_mu_;
  std::mutex mu_;
  std::condition_variable cv_work_, cv_done_;
  int nthreads_ = 0;  // only changed under call_mu_
  uint64_t generation_ = 0;
  int job_helpers_ = 0;
  int pending_ = 0;
  void (*fn_)(void*, int) = nullptr;
  void* ctx_ = nullptr;
};

Pool* get_pool() {
  static Pool* pool = new (std::nothrow) Pool();
  return pool;
}

}  // namespace

void run_workers(int n, void (*fn)(void* ctx, int id), void* ctx) {
  if (n <= 1) {
    fn(ctx, 0);
    return;
  }
  Pool* pool = nullptr;
  try {
    pool = get_pool();
  } catch (...) {
    pool = nullptr;
  }
  if (!pool) {
    for (int id = 0; id < n; ++id) fn(ctx, id);
    return;
  }
  try {
    pool->run(n, fn, ctx);
  } catch (...) {
    // std::mutex / condition_variable failures (system_error) are not expected; fn never throws.
  }
}

}}}  // namespace ssd::cpu::detail
