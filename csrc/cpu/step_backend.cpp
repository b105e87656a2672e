// CPU step front: ISA dispatch and thread count; the memory-bandwidth probe of the step benchmark.
// Compiled with baseline flags; the AVX kernels are only entered after the CPU was checked.
#include "step_backend.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <new>
#include <vector>

#include "core/dtype.h"
#include "cpu_backend.h"
#include "cpu_internal.h"
#include "entries.h"

namespace ssd { namespace cpu {

namespace {

// A helper thread pays for itself once it has this much state to stream. Measured on the 2-core
// development VM (bench/NOTES.md): waking a pool thread whose core has idled for a while costs the
// caller 30-45 us there and the helper starts ~100 us later, so a second thread is slower up to
// 4 MiB and pays from 8 MiB. (A helper still spinning after the previous call, thread_pool.cpp,
// starts at once, and then two threads win from 2 MiB; calls that small rarely find one spinning.)
constexpr double kBytesPerThread = 4.0 * 1024.0 * 1024.0;

const detail::KernelEntries<SsdStepParams> kStep = SSD_CPU_ENTRIES(step);
const detail::Entries<void (*)(float*, int64_t, float)> kRmwPass = SSD_CPU_ENTRIES(rmw_pass);

// The buffer in chunks handed out through an atomic counter, as the step hands out its rows, so
// that a thread the OS delays does not hold the whole pass back.
struct RmwJob {
  void (*pass)(float*, int64_t, float);  // the active ISA's
  float* data;
  int64_t chunk;   // floats per chunk, a multiple of 64
  int64_t chunks;
  int64_t next;    // chunk counter (atomic builtins)
};

void rmw_worker(void* ctx, int /*id*/) {
  RmwJob* job = static_cast<RmwJob*>(ctx);
  for (;;) {
    const int64_t c = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
    if (c >= job->chunks) break;
    job->pass(job->data + c * job->chunk, job->chunk, 1.0f);
  }
}

}  // namespace

SsdStatus step(const SsdStepParams& p, int threads, std::string* error) {
  int64_t active = p.batch;
  if (p.state_indices) {
    active = 0;
    for (int64_t i = 0; i < p.batch; ++i) active += p.state_indices[i] >= 0 ? 1 : 0;
  }
  const double state_bytes =
      double(active) * double(p.nheads) * double(p.headdim) * double(p.dstate) * double(dtype_bytes(p.state_type));
  const double useful = std::max(1.0, state_bytes / kBytesPerThread);
  // default_threads() is a system call: skip it when one thread is all the state can use
  if (useful < 2.0) threads = 1;
  else if (threads <= 0) threads = default_threads();
  if (threads > 1024) threads = 1024;
  if (double(threads) > useful) threads = int(useful);
  return detail::run_kernel(kStep, p, threads, error, "ssd cpu: step failed");
}

double rmw_bandwidth_gbps(int threads, size_t bytes, double seconds) {
  try {
    if (threads <= 0) threads = default_threads();
    if (threads > 1024) threads = 1024;
    if (!(seconds > 0)) seconds = 0.2;
    // About eight chunks per thread, as the step's tasks, of whole 64-float blocks.
    const int64_t chunks = int64_t(threads) * 8;
    const int64_t chunk = std::max<int64_t>(64, int64_t(bytes / sizeof(float)) / chunks / 64 * 64);
    const size_t total = size_t(chunk) * size_t(chunks);
    void* mem = nullptr;
    if (posix_memalign(&mem, 64, total * sizeof(float)) != 0 || mem == nullptr) return 0.0;
    float* data = static_cast<float*>(mem);
    RmwJob job{kRmwPass.active(), data, chunk, chunks, 0};
    // Touch every page with varied values (no page the hypervisor could merge), then one untimed pass.
    for (size_t i = 0; i < total; ++i) data[i] = 1.0f + float(i % 4099) * 1e-4f;
    detail::run_workers(threads, &rmw_worker, &job);
    using clock = std::chrono::steady_clock;
    std::vector<double> rates;
    const auto start = clock::now();
    do {
      const auto t0 = clock::now();
      job.next = 0;
      detail::run_workers(threads, &rmw_worker, &job);
      const double el = std::chrono::duration<double>(clock::now() - t0).count();
      if (el > 0) rates.push_back(2.0 * double(total) * sizeof(float) / el * 1e-9);
    } while (std::chrono::duration<double>(clock::now() - start).count() < seconds || rates.size() < 3);
    free(mem);
    std::sort(rates.begin(), rates.end());
    return rates[rates.size() / 2];
  } catch (...) {
    return 0.0;
  }
}

}}  // namespace ssd::cpu
