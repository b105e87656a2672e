// CPU backend front: ISA detection and dispatch, argument checks, thread count, FMA peak.
// Compiled with baseline flags; the AVX kernels are only entered after the CPU was checked here.
#include "cpu_backend.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "core/params.h"
#include "cpu_internal.h"
#include "entries.h"

namespace ssd { namespace cpu {

namespace {

#if defined(__x86_64__)
Isa detect_isa() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return Isa::Scalar;
  const bool fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
  if (!(fma && osxsave && avx && f16c)) return Isa::Scalar;
  unsigned xlo, xhi;
  __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
  (void)xhi;
  if ((xlo & 0x6) != 0x6) return Isa::Scalar;  // XMM and YMM state enabled by the OS
  if (__get_cpuid_max(0, nullptr) < 7) return Isa::Scalar;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = (b >> 5) & 1;
  if (!avx2) return Isa::Scalar;
  const bool f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
  const bool zmm_state = (xlo & 0xE0) == 0xE0;  // opmask, ZMM_Hi256, Hi16_ZMM
  if (f && dq && bw && vl && zmm_state) return Isa::Avx512;
  return Isa::Avx2;
}
#else
Isa detect_isa() { return Isa::Scalar; }
#endif

bool ieq(const char* a, const char* b) {
  for (; *a && *b; ++a, ++b) {
    char x = *a, y = *b;
    if (x >= 'A' && x <= 'Z') x = (char)(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = (char)(y - 'A' + 'a');
    if (x != y) return false;
  }
  return *a == *b;
}

// With cu_seqlens: the final state of an empty sequence is zero (the kernel writes the others).
void zero_empty_sequences(const SsdParams& p) {
  const size_t n = (size_t)(p.nheads * p.headdim * p.dstate);
  for (int64_t k = 0; k < p.num_seqs; ++k)
    if (p.cu_seqlens[k + 1] == p.cu_seqlens[k]) std::memset(p.varlen_states + k * n, 0, n * sizeof(float));
}

// The seq_idx row of a checked cu_seqlens (check_cu_seqlens): position t of sequence k (cu[k] <= t <
// cu[k + 1]) gets k; an empty sequence owns no position.
std::vector<int32_t> seq_idx_of_cu_seqlens(const SsdParams& p) {
  std::vector<int32_t> seq((size_t)p.seqlen);
  for (int64_t k = 0; k < p.num_seqs; ++k)
    std::fill(seq.begin() + p.cu_seqlens[k], seq.begin() + p.cu_seqlens[k + 1], (int32_t)k);
  return seq;
}

struct PeakJob {
  float (*burst)(int64_t, float, double*);
  double seconds;
  double rate[1024];
  float sink[1024];
};

void peak_worker(void* ctx, int id) {
  PeakJob* job = static_cast<PeakJob*>(ctx);
  double fpi = 0.0;
  float sink = job->burst(1000, 1.0f + (float)id, &fpi);  // warm up
  using clock = std::chrono::steady_clock;
  int64_t chunk = 20000;
  const auto t0 = clock::now();
  int64_t iters = 0;
  double el = 0.0;
  for (;;) {
    sink += job->burst(chunk, 1.0f + (float)id, &fpi);
    iters += chunk;
    el = std::chrono::duration<double>(clock::now() - t0).count();
    if (el >= job->seconds) break;
    if (el < job->seconds * 0.05 && chunk < ((int64_t)1 << 26)) chunk *= 2;
  }
  job->rate[id] = el > 0 ? (double)iters * fpi / el : 0.0;
  job->sink[id] = sink;
}

}  // namespace

Isa best_isa() {
  static const Isa isa = detect_isa();
  return isa;
}

Isa active_isa() {
  const Isa best = best_isa();
  const char* env = std::getenv("SSD_KERNELS_CPU_ISA");
  if (!env || !*env) return best;
  Isa want = best;
  if (ieq(env, "scalar")) want = Isa::Scalar;
  else if (ieq(env, "avx2")) want = Isa::Avx2;
  else if (ieq(env, "avx512")) want = Isa::Avx512;
  return (int)want < (int)best ? want : best;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "scalar";
  }
}

int default_threads() {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n >= 1) return n;
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n >= 1 ? (int)n : 1;
}

namespace {

const detail::KernelEntries<SsdParams> kForward = SSD_CPU_ENTRIES(forward);
const detail::KernelEntries<SsdBackwardParams> kBackward = SSD_CPU_ENTRIES(backward);
const detail::Entries<float (*)(int64_t, float, double*)> kFmaBurst = SSD_CPU_ENTRIES(fma_burst);

}  // namespace

SsdStatus forward(const SsdParams& p, int threads, std::string* error) {
  if (p.varlen_states) zero_empty_sequences(p);
  return detail::run_kernel(kForward, p, threads, error, "ssd cpu: forward failed");
}

SsdStatus backward(const SsdBackwardParams& p, int threads, std::string* error) {
  if (!p.fwd.cu_seqlens) return detail::run_kernel(kBackward, p, threads, error, "ssd cpu: backward failed");
  // Packed sequences: the backward of the equivalent seq_idx row (sequence k's positions get k), which
  // the kernel takes as it is; the forward's definition of the pack (docs/semantics.md) is that row's.
  std::vector<int32_t> seq;
  try {
    seq = seq_idx_of_cu_seqlens(p.fwd);
  } catch (const std::bad_alloc&) {
    if (error) *error = "ssd cpu: out of memory";
    return SSD_ERR_OUT_OF_MEMORY;
  }
  return detail::run_kernel(kBackward, packed_as_seq_idx(p, seq.data()), threads, error, "ssd cpu: backward failed");
}

double fma_peak_gflops(int threads, double seconds) {
  try {
    if (threads <= 0) threads = default_threads();
    if (threads > 1024) threads = 1024;
    if (!(seconds > 0)) seconds = 0.2;
    PeakJob* job = new (std::nothrow) PeakJob();
    if (!job) return 0.0;
    job->burst = kFmaBurst.active();
    job->seconds = seconds;
    detail::run_workers(threads, &peak_worker, job);
    double total = 0.0;
    for (int i = 0; i < threads; ++i) total += job->rate[i];
    delete job;
    return total * 1e-9;
  } catch (...) {
    return 0.0;
  }
}

}}  // namespace ssd::cpu
