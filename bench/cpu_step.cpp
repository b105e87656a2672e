// bench/cpu_step.cpp: the CPU decode step's kernel alone (no N-API, no thread-count heuristic), for
// the experiments behind bench/NOTES.md: time per batch size and thread count, against the
// in-place sweep bandwidth of a buffer of the state's size.
//
//   ./cpu_step [--batch 1,2,4,8,16,64,256] [--threads 1,2] [--runs 200] [--full 0|1] [--gap-us 0]
//
// nheads 32, headdim 64, dstate 128, ngroups 1, float32 state and inputs; with --full 1 also D per
// head, z, dtBias and dtSoftplus (the shape of the target), without them by default. The
// instruction set is the active one (SSD_KERNELS_CPU_ISA lowers it). --gap-us keeps the calling
// thread busy that long between timed calls (the rest of a decode step), so that the pool's helpers
// have gone to sleep when it exceeds their spin (thread_pool.cpp). Built by bench/cpu_step.sh.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../csrc/cpu/cpu_backend.h"
#include "../csrc/cpu/cpu_internal.h"
#include "../csrc/cpu/step_backend.h"

namespace {

std::vector<int> list(const char* s) {
  std::vector<int> out;
  for (const char* p = s; *p;) {
    out.push_back(std::atoi(p));
    while (*p && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return out;
}

SsdStatus run_step(const SsdStepParams& p, int threads) {
  char err[256];
  switch (ssd::cpu::active_isa()) {
    case ssd::cpu::Isa::Avx512: return ssd::cpu::detail::step_avx512(p, threads, err, sizeof err);
    case ssd::cpu::Isa::Avx2: return ssd::cpu::detail::step_avx2(p, threads, err, sizeof err);
    default: return ssd::cpu::detail::step_scalar(p, threads, err, sizeof err);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> batches = {1, 2, 4, 8, 16, 64, 256}, thread_counts = {1, 2};
  int runs = 200;
  bool full = false;
  double gap_us = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--batch") batches = list(argv[i + 1]);
    else if (a == "--threads") thread_counts = list(argv[i + 1]);
    else if (a == "--runs") runs = std::max(1, std::atoi(argv[i + 1]));
    else if (a == "--full") full = std::atoi(argv[i + 1]) != 0;
    else if (a == "--gap-us") gap_us = std::atof(argv[i + 1]);
    else {
      std::fprintf(stderr, "usage: cpu_step [--batch 1,16,64,256] [--threads 1,2] [--runs 200] [--full 0|1] [--gap-us 0]\n");
      return 2;
    }
  }
  const int h = 32, P = 64, N = 128;
  std::printf("isa %s; nheads 32, headdim 64, dstate 128, fp32%s; median of %d runs, %g us apart\n",
              ssd::cpu::isa_name(ssd::cpu::active_isa()), full ? ", D, z, dtBias, dtSoftplus" : "", runs, gap_us);
  std::printf("batch  state MiB  threads  median ms  min ms    GB/s  sweep GB/s (same threads)\n");
  std::mt19937 gen(1);
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  for (int b : batches) {
    std::vector<float> state((size_t)b * h * P * N), x((size_t)b * h * P), dt((size_t)b * h, 0.01f), A(h, -1.0f),
        B((size_t)b * N), C((size_t)b * N), y((size_t)b * h * P), z((size_t)b * h * P), D(h, 0.5f), dt_bias(h, 0.1f);
    for (auto* v : {&state, &x, &B, &C, &z})
      for (float& f : *v) f = u(gen);
    SsdStepParams p{};
    p.batch = b; p.nheads = h; p.headdim = P; p.ngroups = 1; p.dstate = N; p.state_rows = b;
    p.state = state.data(); p.state_type = SSD_FLOAT32;
    p.x = x.data(); p.x_type = SSD_FLOAT32; p.x_batch_stride = h * P; p.x_head_stride = P;
    p.dt = dt.data(); p.dt_type = SSD_FLOAT32; p.dt_batch_stride = h;
    p.A = A.data();
    p.B = B.data(); p.B_type = SSD_FLOAT32; p.B_batch_stride = N; p.B_group_stride = N;
    p.C = C.data(); p.C_type = SSD_FLOAT32; p.C_batch_stride = N; p.C_group_stride = N;
    p.dt_min = 0.0f; p.dt_max = 1e30f;
    p.y = y.data(); p.y_type = SSD_FLOAT32; p.y_batch_stride = h * P; p.y_head_stride = P;
    if (full) {
      p.D = D.data();
      p.z = z.data(); p.z_type = SSD_FLOAT32; p.z_batch_stride = h * P; p.z_head_stride = P;
      p.dt_bias = dt_bias.data();
      p.dt_softplus = 1;
    }
    const double bytes = 2.0 * state.size() * sizeof(float);
    for (int threads : thread_counts) {
      for (int i = 0; i < 5; ++i) run_step(p, threads);
      std::vector<double> ms;
      for (int i = 0; i < runs; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        run_step(p, threads);
        const auto t1 = std::chrono::steady_clock::now();
        ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        while (std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t1).count() < gap_us) {
        }
      }
      std::sort(ms.begin(), ms.end());
      const double med = ms[ms.size() / 2];
      const double sweep = ssd::cpu::rmw_bandwidth_gbps(threads, state.size() * sizeof(float), 0.2);
      std::printf("%-5d  %9.1f  %7d  %9.4f  %6.4f  %6.1f  %10.1f\n", b, bytes / 2 / (1 << 20), threads, med, ms[0],
                  bytes / med / 1e6, sweep);
    }
  }
  return 0;
}
