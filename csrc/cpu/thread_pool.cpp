// A small persistent thread pool for the CPU backend (baseline flags).
//
// Created lazily on the first multi-threaded call, grown to the largest size asked for, and never
// destroyed (it is leaked on purpose so that nothing has to be joined at process exit or addon
// unload). Concurrent callers are serialised on call_mu; a call with n <= 1 runs inline and does not
// touch the pool, so single-threaded calls from different threads run concurrently.
//
// Hand-off. Waking a sleeping thread (futex) costs 20-30 us on the 2-core development VM, as much as
// a tenth of a decode step (bench/NOTES.md). So a helper that finished a job spins for a while
// (kSpinNs, or SSD_KERNELS_POOL_SPIN_US microseconds; 0 turns spinning off) watching for the next
// one before it sleeps, and the caller spins as long for its helpers to finish. A job that follows
// within that time starts on the helpers at once; a lone job costs the helpers that much CPU time.
//
// Late helpers. Each helper id of a job is claimed once, by the helper (when it arrives) or by the
// caller (when it has finished its own id 0 first): the caller runs every id that no helper has
// claimed yet itself instead of waiting for a sleeping helper to wake. A kernel that hands out its
// work dynamically (the step) finds nothing left for such an id and returns at once, so the call
// ends when the work does, not when the last helper wakes.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "cpu_internal.h"

namespace ssd { namespace cpu { namespace detail {
namespace {

constexpr int64_t kSpinNs = 100000;  // 100 us

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t spin_ns_from_env() {
  const char* s = std::getenv("SSD_KERNELS_POOL_SPIN_US");
  if (!s || !*s) return kSpinNs;
  char* end = nullptr;
  const long long us = std::strtoll(s, &end, 10);
  if (end == s || us < 0) return kSpinNs;
  return us > 1000000 ? int64_t(1000000000) : int64_t(us) * 1000;
}

// Spins (up to spin_ns) and then waits on cv under mu until done() holds. `sleeping` is raised while
// this thread sleeps; whoever makes done() true must, after doing so, notify cv under mu when
// `sleeping` is set (the seq_cst store / load pairs on both sides make one of them see the other).
template <class Done>
void spin_then_wait(int64_t spin_ns, Done done, std::mutex& mu, std::condition_variable& cv, std::atomic<int>& sleeping) {
  if (done()) return;
  if (spin_ns > 0) {
    const int64_t t0 = now_ns();
    for (int k = 1;; ++k) {
      cpu_relax();
      if (done()) return;
      if (k % 64 == 0 && now_ns() - t0 > spin_ns) break;
    }
  }
  std::unique_lock<std::mutex> lk(mu);
  sleeping.fetch_add(1, std::memory_order_seq_cst);
  while (!done()) cv.wait(lk);
  sleeping.fetch_sub(1, std::memory_order_seq_cst);
}

class Pool {
 public:
  Pool() : spin_ns_(spin_ns_from_env()) {}

  // Runs fn(ctx, id) for id in [0, n): id 0 here, ids 1..n-1 on helpers, or here when no helper has
  // claimed them by the time id 0 is done (or when they could not be created).
  void run(int n, void (*fn)(void*, int), void* ctx) {
    std::lock_guard<std::mutex> call_lock(call_mu_);
    const int helpers_wanted = n - 1;
    grow(helpers_wanted);
    const int helpers = helpers_wanted < nthreads_ ? helpers_wanted : nthreads_;
    const uint64_t gen = generation_.load(std::memory_order_relaxed) + 1;
    fn_.store(fn, std::memory_order_relaxed);
    ctx_.store(ctx, std::memory_order_relaxed);
    for (int i = 0; i < helpers; ++i) slots_[i]->claim.store(gen << 2 | kOpen, std::memory_order_relaxed);
    generation_.store(gen, std::memory_order_seq_cst);  // publishes fn_, ctx_ and the claims
    if (helpers > 0 && sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lk(mu_);
      cv_work_.notify_all();
    }
    fn(ctx, 0);
    for (int id = helpers + 1; id < n; ++id) fn(ctx, id);  // helpers we could not create
    // Ids no helper has claimed yet run here; the others are waited for.
    for (int i = 0; i < helpers; ++i) {
      uint64_t open = gen << 2 | kOpen;
      if (slots_[i]->claim.compare_exchange_strong(open, gen << 2 | kCaller, std::memory_order_acq_rel,
                                                   std::memory_order_acquire)) {
        fn(ctx, i + 1);
        slots_[i]->done.store(gen, std::memory_order_relaxed);
      }
    }
    auto finished = [&] {
      for (int i = 0; i < helpers; ++i)
        if (slots_[i]->done.load(std::memory_order_seq_cst) != gen) return false;
      return true;
    };
    spin_then_wait(spin_ns_, finished, mu_, cv_done_, caller_sleeping_);
  }

 private:
  static constexpr uint64_t kOpen = 1, kHelper = 2, kCaller = 3;  // claim word: generation << 2 | state

  struct alignas(64) Slot {
    std::atomic<uint64_t> claim{0};  // who runs this helper's id in job `generation`
    std::atomic<uint64_t> done{0};   // the last generation whose id for this helper has finished
  };

  void grow(int want) {
    while (nthreads_ < want) {
      const int index = nthreads_;  // helper index: runs id index + 1
      Slot* slot = nullptr;
      try {
        slots_.push_back(std::unique_ptr<Slot>(new Slot()));
        slot = slots_.back().get();
        // generation_ is written only while call_mu_ is held (by us, now)
        const uint64_t gen0 = generation_.load(std::memory_order_relaxed);
        std::thread th([this, slot, index, gen0] { worker(slot, index, gen0); });
        th.detach();
      } catch (...) {
        if (slot) slots_.pop_back();
        return;  // keep the helpers we have
      }
      ++nthreads_;
    }
  }

  void worker(Slot* slot, int index, uint64_t seen) {
    for (;;) {
      uint64_t gen = seen;
      spin_then_wait(
          spin_ns_, [&] { return (gen = generation_.load(std::memory_order_seq_cst)) != seen; }, mu_, cv_work_,
          sleepers_);
      seen = gen;
      uint64_t open = gen << 2 | kOpen;
      // not part of this job, or the caller already ran our id
      if (!slot->claim.compare_exchange_strong(open, gen << 2 | kHelper, std::memory_order_acq_rel,
                                               std::memory_order_relaxed))
        continue;
      fn_.load(std::memory_order_relaxed)(ctx_.load(std::memory_order_relaxed), index + 1);
      slot->done.store(gen, std::memory_order_seq_cst);
      if (caller_sleeping_.load(std::memory_order_seq_cst) > 0) {
        std::lock_guard<std::mutex> lk(mu_);
        cv_done_.notify_all();
      }
    }
  }

  const int64_t spin_ns_;
  std::mutex call_mu_;
  std::mutex mu_;
  std::condition_variable cv_work_, cv_done_;
  int nthreads_ = 0;                         // only changed under call_mu_
  std::vector<std::unique_ptr<Slot>> slots_;  // one per helper; only changed under call_mu_
  std::atomic<uint64_t> generation_{0};      // the current job; only written under call_mu_
  std::atomic<int> sleepers_{0};             // helpers asleep on cv_work_
  std::atomic<int> caller_sleeping_{0};      // the caller asleep on cv_done_
  std::atomic<void (*)(void*, int)> fn_{nullptr};
  std::atomic<void*> ctx_{nullptr};
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
