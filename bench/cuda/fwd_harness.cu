// Standalone harness of the CUDA forward (no Node): `check` (self-tests of the mma tile helpers,
// then many small configurations against a float64 token recurrence on the CPU) and `bench`
// (G1-G4 timings, per-launch times, roofline floor).
//
//   fwd_harness check [filter]     exit status 1 on any failure
//   fwd_harness bench [runs]
//   fwd_harness all
#include <chrono>
#include <limits>

#include "cuda/common/mma.cuh"
#include "cuda/sm90/forward.h"
#include "bits.h"
#include "harness_common.h"

namespace M = ssd::cuda::mma;

// =============================================================================================
// 1. Self-test of the tile helpers: one warp computes a 32x32x32 product with ldA/ldB2/mma
//    (both smem layouts of each operand) or buildA, against the CPU.
// =============================================================================================
template <class T, int AL, int BL, bool BUILD>
__global__ void k_mma_selftest(const float* A, const float* B, float* C) {
  constexpr int LD = 40;  // 80 bytes (bf16) / 160 bytes (f32) per row: 16-byte aligned
  __shared__ __align__(16) T As[32 * LD];
  __shared__ __align__(16) T Bs[32 * LD];
  const int lane = threadIdx.x;
  for (int i = lane; i < 32 * 32; i += 32) {
    const int r = i / 32, c = i % 32;  // A[m=r][k=c], B[k=r][n=c]
    As[AL == M::kMK ? r * LD + c : c * LD + r] = M::from_float<T>(A[i]);
    Bs[BL == M::kKN ? r * LD + c : c * LD + r] = M::from_float<T>(B[i]);
  }
  __syncwarp();
  float acc[2][4][4] = {};
  for (int kk = 0; kk < 2; ++kk) {
    for (int mt = 0; mt < 2; ++mt) {
      M::FragA<T> a;
      if (BUILD) {
        M::buildA<T>(a, [&](int r, int c) {
          const int m = 16 * mt + r, k = 16 * kk + c;
          return make_float2(A[m * 32 + k], A[m * 32 + k + 1]);
        });
      } else {
        M::ldA<T, AL>(a, As, LD, 16 * mt, 16 * kk);
      }
      for (int np = 0; np < 2; ++np) {
        M::FragB<T> b0, b1;
        M::ldB2<T, BL>(b0, b1, Bs, LD, 16 * kk, 16 * np);
        M::mma(acc[mt][2 * np], a, b0);
        M::mma(acc[mt][2 * np + 1], a, b1);
      }
    }
  }
  const int g = lane >> 2, t = lane & 3;
  for (int mt = 0; mt < 2; ++mt)
    for (int nt = 0; nt < 4; ++nt)
      for (int q = 0; q < 4; ++q) C[(16 * mt + g + 8 * (q >> 1)) * 32 + 8 * nt + 2 * t + (q & 1)] = acc[mt][nt][q];
}

template <class T, int AL, int BL, bool BUILD>
static bool selftest_one(const char* name, SsdDtype dt, std::mt19937_64& rng) {
  std::normal_distribution<float> nd;
  std::vector<float> A(1024), B(1024), C(1024, NAN);
  std::vector<char> tmp(1024 * 4);
  for (int i = 0; i < 1024; ++i) {
    A[i] = put(tmp.data(), dt, 0, nd(rng));
    B[i] = put(tmp.data(), dt, 0, nd(rng));
  }
  float *dA, *dB, *dC;
  CK(cudaMalloc(&dA, 4096));
  CK(cudaMalloc(&dB, 4096));
  CK(cudaMalloc(&dC, 4096));
  CK(cudaMemcpy(dA, A.data(), 4096, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dB, B.data(), 4096, cudaMemcpyHostToDevice));
  CK(cudaMemset(dC, 0xff, 4096));
  k_mma_selftest<T, AL, BL, BUILD><<<1, 32>>>(dA, dB, dC);
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
  CK(cudaMemcpy(C.data(), dC, 4096, cudaMemcpyDeviceToHost));
  cudaFree(dA);
  cudaFree(dB);
  cudaFree(dC);
  double worst = 0;
  int wi = -1;
  for (int m = 0; m < 32; ++m)
    for (int n = 0; n < 32; ++n) {
      double ref = 0, mag = 0;
      for (int k = 0; k < 32; ++k) {
        ref += (double)A[m * 32 + k] * B[k * 32 + n];
        mag += std::fabs((double)A[m * 32 + k] * B[k * 32 + n]);
      }
      double e = std::fabs(ref - C[m * 32 + n]) / (mag + 1e-30);
      if (std::isnan(e)) e = INFINITY;
      if (e > worst) { worst = e; wi = m * 32 + n; }
    }
  const bool ok = worst < 1e-5;
  printf("selftest %-28s max err/sum|ab| = %.2e  %s", name, worst, ok ? "PASS" : "FAIL");
  if (!ok && wi >= 0) printf("  (first bad near m=%d n=%d: gpu %g)", wi / 32, wi % 32, C[wi]);
  printf("\n");
  return ok;
}

static bool run_selftests() {
  std::mt19937_64 rng(1234);
  bool ok = true;
  ok &= selftest_one<bf16, M::kMK, M::kNK, false>("bf16 A:MK B:NK", SSD_BFLOAT16, rng);
  ok &= selftest_one<bf16, M::kMK, M::kKN, false>("bf16 A:MK B:KN", SSD_BFLOAT16, rng);
  ok &= selftest_one<bf16, M::kKM, M::kNK, false>("bf16 A:KM B:NK", SSD_BFLOAT16, rng);
  ok &= selftest_one<bf16, M::kKM, M::kKN, false>("bf16 A:KM B:KN", SSD_BFLOAT16, rng);
  ok &= selftest_one<bf16, M::kMK, M::kKN, true>("bf16 A:build B:KN", SSD_BFLOAT16, rng);
  ok &= selftest_one<f16, M::kMK, M::kNK, false>("f16 A:MK B:NK", SSD_FLOAT16, rng);
  ok &= selftest_one<f16, M::kKM, M::kKN, false>("f16 A:KM B:KN", SSD_FLOAT16, rng);
  ok &= selftest_one<f16, M::kMK, M::kNK, true>("f16 A:build B:NK", SSD_FLOAT16, rng);
  ok &= selftest_one<float, M::kMK, M::kNK, false>("f32emu A:MK B:NK", SSD_FLOAT32, rng);
  ok &= selftest_one<float, M::kKM, M::kKN, false>("f32emu A:KM B:KN", SSD_FLOAT32, rng);
  ok &= selftest_one<float, M::kMK, M::kKN, true>("f32emu A:build B:KN", SSD_FLOAT32, rng);
  return ok;
}

// =============================================================================================
// 2. Forward checks against a float64 token recurrence.
// =============================================================================================
struct Case : CaseBase {
  SsdDtype yt = SSD_BFLOAT16;
};

// One case: its inputs, then in run() its outputs, two runs of the forward and the comparison with
// the float64 recurrence.
struct CaseRun : CaseInputs {
  const Case& c;
  CaseRun(const Case& c_, uint64_t seed) : CaseInputs(c_, seed, false, SSD_FLOAT32), c(c_) {}
  bool run();
};

static bool run_case(const Case& c, uint64_t seed) { return CaseRun(c, seed).run(); }

bool CaseRun::run() {
  Tensor Y, YU, fin, CU, VS;
  const bool has_yu = c.z && c.yu >= 0;
  const SsdDtype yut = has_yu ? (SsdDtype)c.yu : SSD_FLOAT32;
  YU.alloc_poisoned(yut, has_yu ? xel : 0);
  Y.alloc_poisoned(c.yt, xel);
  fin.alloc_poisoned(SSD_FLOAT32, sel);
  const std::vector<int32_t> cuo = c.packed() ? packed_offsets(c, (uint64_t)c.L * 31 + c.Q) : std::vector<int32_t>{};
  const int nseq = c.packed() ? (int)cuo.size() - 1 : 0;
  CU.alloc(cuo.size() * 4);
  if (c.packed()) memcpy(CU.h.data(), cuo.data(), cuo.size() * 4);
  CU.upload();
  const size_t vsel = (size_t)nseq * H * P * N;
  VS.alloc_poisoned(SSD_FLOAT32, vsel);

  SsdParams prm;
  memset(&prm, 0, sizeof(prm));
  set_inputs(c, &prm);
  prm.y = Y.d; prm.y_type = c.yt; prm.y_batch_stride = xbs; prm.y_seq_stride = xss; prm.y_head_stride = xhs;
  prm.final_states = c.fin ? static_cast<float*>(fin.d) : nullptr;
  if (c.packed()) {
    prm.cu_seqlens = static_cast<const int32_t*>(CU.d);
    prm.num_seqs = nseq;
    prm.varlen_states = static_cast<float*>(VS.d);
  }
  if (has_yu) {
    prm.y_ungated = YU.d; prm.y_ungated_type = yut;
    prm.y_ungated_batch_stride = xbs; prm.y_ungated_seq_stride = xss; prm.y_ungated_head_stride = xhs;
  }

  std::string err;
  if (ssd::check_params(prm, &err) != SSD_OK || !ssd::cuda::supports(prm, &err)) {
    printf("FAIL %-34s parameters refused: %s\n", c.name.c_str(), err.c_str());
    return false;
  }
  // SSD_KERNELS_FORWARD_PATH=sm90 runs the cases the sm_90a forward takes and skips the others
  const char* forced = getenv("SSD_KERNELS_FORWARD_PATH");
  if (forced && strcmp(forced, "sm90") == 0 && !ssd::cuda::sm90::takes(prm, &err)) {
    printf("SKIP %-34s sm90 does not take it: %s\n", c.name.c_str(), err.c_str());
    return true;
  }
  const size_t wsb = ssd::cuda::forward_workspace_bytes(prm);
  void* ws = nullptr;
  CK(cudaMalloc(&ws, std::max<size_t>(wsb, 16)));
  std::vector<char> y1, y2, f1, f2, u1, u2, v1, v2;
  bool ok = true;
  for (int run = 0; run < 2; ++run) {
    Y.upload();
    if (has_yu) YU.upload();
    fin.upload();
    VS.upload();
    CK(cudaMemset(ws, 0xff, std::max<size_t>(wsb, 16)));  // garbage (NaN) workspace
    SsdStatus st = ssd::cuda::forward(prm, nullptr, ws, &err);
    if (st != SSD_OK) {
      printf("FAIL %-34s forward returned %d: %s\n", c.name.c_str(), (int)st, err.c_str());
      cudaFree(ws);
      return false;
    }
    cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) {
      printf("FAIL %-34s CUDA error %s: %s\n", c.name.c_str(), cudaGetErrorName(e), cudaGetErrorString(e));
      exit(3);  // sticky error: nothing after this can be trusted
    }
    Y.download(run ? y2 : y1);
    if (has_yu) YU.download(run ? u2 : u1);
    fin.download(run ? f2 : f1);
    VS.download(run ? v2 : v1);
  }
  cudaFree(ws);
  const bool det = (y1 == y2) && (f1 == f2) && (u1 == u2) && (v1 == v2);

  // float64 token recurrence
  std::vector<double> yref(x.size()), uref(x.size()), fref(h0.size()), vref(vsel, 0.0);
  std::vector<double> Hs((size_t)P * N);
  // the sequence of each position: seq_idx, or with cu_seqlens the packed sequence that holds it
  std::vector<int> sid_of((size_t)b * L, 0);
  for (size_t i = 0; i < sid_of.size(); ++i) sid_of[i] = c.seq ? sq[i] : 0;
  for (int s = 0; s < nseq; ++s)
    for (int t = cuo[s]; t < cuo[s + 1]; ++t) sid_of[t] = s;
  for (int bb = 0; bb < b; ++bb)
    for (int hh = 0; hh < H; ++hh) {
      const int gg = hh / (H / G);
      for (size_t i = 0; i < Hs.size(); ++i) Hs[i] = c.init ? h0[((size_t)bb * H + hh) * P * N + i] : 0.0;
      int prev = 0;
      for (int t = 0; t < L; ++t) {
        double u = dt[((size_t)bb * L + t) * H + hh] + bs[hh];
        if (c.softplus) u = softplus_d(u);
        const double d = std::min(std::max(u, (double)c.lo), (double)c.hi);
        const int sid = sid_of[(size_t)bb * L + t];
        const bool keep = sid == prev;
        prev = sid;
        const double dec = keep ? std::exp(d * A[hh]) : 0.0;
        const double* xr = &x[(((size_t)bb * L + t) * H + hh) * P];
        const double* Br = &Bv[(((size_t)bb * L + t) * G + gg) * N];
        const double* Cr = &Cv[(((size_t)bb * L + t) * G + gg) * N];
        for (int pp = 0; pp < P; ++pp) {
          double* Hp = &Hs[(size_t)pp * N];
          const double dx = d * xr[pp];
          double acc = 0;
          for (int nn = 0; nn < N; ++nn) {
            Hp[nn] = dec * Hp[nn] + dx * Br[nn];
            acc += Hp[nn] * Cr[nn];
          }
          if (c.Dmode) acc += D[c.Dmode == 2 ? (size_t)hh * P + pp : hh] * xr[pp];
          uref[(((size_t)bb * L + t) * H + hh) * P + pp] = acc;
          if (c.z) {
            const double zz = z[(((size_t)bb * L + t) * H + hh) * P + pp];
            acc *= zz / (1.0 + std::exp(-zz));
          }
          yref[(((size_t)bb * L + t) * H + hh) * P + pp] = acc;
        }
        if (c.packed() && t + 1 == cuo[sid + 1])  // the sequence's last position: its varlen state
          for (size_t i = 0; i < Hs.size(); ++i) vref[((size_t)sid * H + hh) * P * N + i] = Hs[i];
      }
      for (size_t i = 0; i < Hs.size(); ++i) fref[((size_t)bb * H + hh) * P * N + i] = Hs[i];
    }

  // compare y (and y_ungated); every element outside the valid set must still hold the poison bytes
  struct Cmp {
    double err = 0, maxabs = 0;
    size_t nonfinite = 0, clobbered = 0;
  };
  auto compare = [&](const std::vector<char>& got, SsdDtype t, const std::vector<double>& ref) {
    Cmp r;
    std::vector<char> valid(xel, 0);
    double se = 0, sr = 0;
    for (int bb = 0; bb < b; ++bb)
      for (int tt = 0; tt < L; ++tt)
        for (int hh = 0; hh < H; ++hh)
          for (int pp = 0; pp < P; ++pp) {
            const size_t o = (size_t)bb * xbs + tt * xss + hh * xhs + pp;
            valid[o] = 1;
            const double v = get(got.data(), t, o);
            const double rv = ref[(((size_t)bb * L + tt) * H + hh) * P + pp];
            if (!std::isfinite(v)) { ++r.nonfinite; continue; }
            se += (v - rv) * (v - rv);
            sr += rv * rv;
            r.maxabs = std::max(r.maxabs, std::fabs(v - rv));
          }
    std::vector<char> pz(dsz(t));
    poison(pz.data(), t, 1);
    for (size_t o = 0; o < xel; ++o)
      if (!valid[o] && memcmp(&got[o * dsz(t)], pz.data(), dsz(t)) != 0) ++r.clobbered;
    r.err = std::sqrt(se / std::max(sr, 1e-300));
    return r;
  };
  const Cmp cy = compare(y1, c.yt, yref);
  const Cmp cu = has_yu ? compare(u1, yut, uref) : Cmp{};
  const double yerr = cy.err, maxabs = cy.maxabs;
  const size_t nonfinite = cy.nonfinite + cu.nonfinite, clobbered = cy.clobbered + cu.clobbered;
  // an fp32 state output against its reference: relative L2 error, non-finite values counted apart
  size_t fnonfinite = 0;
  auto state_err = [&](const std::vector<char>& got, const std::vector<double>& ref) {
    double se = 0, sr = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      const double v = get(got.data(), SSD_FLOAT32, i);
      if (!std::isfinite(v)) { ++fnonfinite; continue; }
      se += (v - ref[i]) * (v - ref[i]);
      sr += ref[i] * ref[i];
    }
    return std::sqrt(se / std::max(sr, 1e-300));
  };
  const double ferr = c.fin ? state_err(f1, fref) : 0.0;
  const double verr = c.packed() ? state_err(v1, vref) : 0.0;
  const char* path = ssd::cuda::detail::compute_path(prm);
  const bool p16 = path[0] != 'f' || path[1] != '3';  // bf16-mma or f16-mma
  const double ybound = (p16 || c.yt != SSD_FLOAT32) ? 5e-3 : 1e-5;
  const double fbound = p16 ? 5e-3 : 1e-5;
  const double ubound = (p16 || yut != SSD_FLOAT32) ? 5e-3 : 1e-5;
  ok = det && nonfinite == 0 && clobbered == 0 && fnonfinite == 0 && yerr <= ybound && (!c.fin || ferr <= fbound) &&
       (!has_yu || cu.err <= ubound) && (!c.packed() || verr <= fbound);
  printf("%s %-34s %-8s %-7s y_relL2=%.2e (<=%.0e) maxabs=%.2e fin_relL2=%s%s nonfinite=%zu/%zu clobbered=%zu det=%s ws=%.2fMiB\n",
         ok ? "PASS" : "FAIL", c.name.c_str(), path, ssd::cuda::detail::scan_kernel(prm), yerr, ybound, maxabs,
         c.fin ? (std::to_string(ferr).substr(0, 10)).c_str() : "-",
         (has_yu ? " yu_relL2=" + std::to_string(cu.err).substr(0, 10) : std::string()).append(
             c.packed() ? " varlen_relL2=" + std::to_string(verr).substr(0, 10) : std::string()).c_str(),
         nonfinite, fnonfinite, clobbered, det ? "bitwise" : "DIFFERS", wsb / 1048576.0);
  if (c.packed()) printf("     bits %08x (y, y_ungated, final states, varlen states)\n", fnv1a({&y1, &u1, &f1, &v1}));
  else printf("     bits %08x (y, y_ungated, final states)\n", fnv1a({&y1, &u1, &f1}));
  fflush(stdout);
  return ok;
}

static std::vector<Case> make_cases() {
  std::vector<Case> v;
  auto add = [&](const std::string& name, auto f) { add_case(v, name, f); };
  // seqlen edge cases around the chunk (Q = 64)
  for (int L : {1, 2, 63, 64, 65, 3 * 64 + 5})
    add("L=" + std::to_string(L) + " Q=64", [&](Case& c) { c.L = L; });
  // chunk sizes
  add("Q=16 L=53", [](Case& c) { c.Q = 16; c.L = 3 * 16 + 5; });
  add("Q=32 L=101 p=32 n=32", [](Case& c) { c.Q = 32; c.L = 101; c.p = 32; c.n = 32; });
  add("Q=128 L=261", [](Case& c) { c.Q = 128; c.L = 261; });
  add("Q=256 L=773 p=64 n=128", [](Case& c) { c.Q = 256; c.L = 3 * 256 + 5; c.n = 128; });
  add("Q=256 L=255 init", [](Case& c) { c.Q = 256; c.L = 255; c.init = true; });
  // headdim / dstate
  add("p=1 n=1", [](Case& c) { c.p = 1; c.n = 1; c.L = 133; });
  add("p=17 n=5", [](Case& c) { c.p = 17; c.n = 5; c.L = 133; c.Dmode = 2; });
  add("p=33 n=17 init", [](Case& c) { c.p = 33; c.n = 17; c.L = 150; c.init = true; });
  add("p=5 n=33 Q=16", [](Case& c) { c.p = 5; c.n = 33; c.L = 77; c.Q = 16; });
  add("p=128 n=16", [](Case& c) { c.p = 128; c.n = 16; c.L = 200; });
  add("p=128 n=128 Q=256", [](Case& c) { c.p = 128; c.n = 128; c.L = 520; c.Q = 256; c.init = true; });
  add("p=200 n=72", [](Case& c) { c.p = 200; c.n = 72; c.L = 140; c.h = 1; });
  add("p=64 n=256 Q=256", [](Case& c) { c.n = 256; c.L = 600; c.Q = 256; c.h = 2; c.init = true; });
  add("p=256 n=256 Q=64", [](Case& c) { c.p = 256; c.n = 256; c.L = 140; c.h = 1; });
  // groups, batch
  add("h=4 g=4", [](Case& c) { c.h = 4; c.g = 4; c.L = 150; });
  add("h=6 g=2 b=3", [](Case& c) { c.h = 6; c.g = 2; c.b = 3; c.L = 150; });
  add("h=8 g=2 b=3 Q=256 n=128", [](Case& c) { c.h = 8; c.g = 2; c.b = 3; c.L = 3 * 256 + 5; c.Q = 256; c.n = 128; c.init = true; });
  // options
  add("noD noz nobias", [](Case& c) { c.Dmode = 0; c.z = false; c.bias = false; c.L = 150; });
  add("D per channel", [](Case& c) { c.Dmode = 2; c.L = 150; });
  add("softplus off", [](Case& c) { c.softplus = false; c.L = 150; });
  add("dt clamp [0.01,0.05]", [](Case& c) { c.lo = 0.01f; c.hi = 0.05f; c.L = 150; });
  add("dt clamp softplus off", [](Case& c) { c.softplus = false; c.lo = 0.02f; c.hi = 0.03f; c.L = 150; });
  add("init + final", [](Case& c) { c.init = true; c.L = 150; });
  add("init, no final", [](Case& c) { c.init = true; c.fin = false; c.L = 150; });
  add("huge dt (exp underflow)", [](Case& c) { c.dtshift = 12.f; c.L = 150; c.init = true; });
  add("tiny dt", [](Case& c) { c.dtshift = -12.f; c.L = 150; c.init = true; });
  // seq_idx
  add("seq inside Q=64", [](Case& c) { c.seq = 1; c.L = 3 * 64 + 5; c.init = true; });
  add("seq edges Q=64", [](Case& c) { c.seq = 2; c.L = 5 * 64 + 1; c.init = true; });
  add("seq first!=0 init", [](Case& c) { c.seq = 3; c.L = 150; c.init = true; });
  add("seq inside Q=16 b=3", [](Case& c) { c.seq = 1; c.Q = 16; c.L = 90; c.b = 3; c.init = true; });
  add("seq inside Q=256 g=2", [](Case& c) { c.seq = 1; c.Q = 256; c.L = 700; c.h = 4; c.g = 2; c.n = 128; c.init = true; });
  // strides
  add("strides pad 8", [](Case& c) { c.pad = 8; c.L = 150; c.init = true; c.seq = 1; });
  add("strides pad 3 (scalar)", [](Case& c) { c.pad = 3; c.L = 150; c.init = true; c.Dmode = 2; });
  // dtypes
  add("f16", [](Case& c) { c.xt = c.Bt = c.Ct = c.zt = c.yt = SSD_FLOAT16; c.L = 150; c.init = true; });
  add("f16 Q=256 n=128 seq", [](Case& c) { c.xt = c.Bt = c.Ct = c.zt = c.yt = SSD_FLOAT16; c.L = 600; c.Q = 256; c.n = 128; c.seq = 1; });
  add("f16 p=128 n=256", [](Case& c) { c.xt = c.Bt = c.Ct = c.zt = c.yt = SSD_FLOAT16; c.L = 200; c.p = 128; c.n = 256; c.h = 1; });
  add("bf16 in, f32 out", [](Case& c) { c.yt = SSD_FLOAT32; c.L = 150; });
  add("bf16 dt", [](Case& c) { c.dtt = SSD_BFLOAT16; c.L = 150; });
  add("f16 dt, f32 z", [](Case& c) { c.dtt = SSD_FLOAT16; c.zt = SSD_FLOAT32; c.L = 150; });
  add("f32", [](Case& c) { c.xt = c.Bt = c.Ct = c.zt = c.yt = SSD_FLOAT32; c.L = 150; c.init = true; });
  add("f32 Q=256 n=128 seq", [](Case& c) { c.xt = c.Bt = c.Ct = c.zt = c.yt = SSD_FLOAT32; c.L = 600; c.Q = 256; c.n = 128; c.seq = 1; c.init = true; });
  add("f32 p=17 n=5 Q=16 D/ch", [](Case& c) { c.xt = c.Bt = c.Ct = c.zt = c.yt = SSD_FLOAT32; c.p = 17; c.n = 5; c.Q = 16; c.L = 77; c.Dmode = 2; });
  add("f32 h=6 g=3 b=3 pad3", [](Case& c) { c.xt = c.Bt = c.Ct = c.zt = c.yt = SSD_FLOAT32; c.h = 6; c.g = 3; c.b = 3; c.pad = 3; c.L = 100; c.init = true; });
  add("mixed x bf16 B/C f16 (f32 path)", [](Case& c) { c.Bt = c.Ct = SSD_FLOAT16; c.yt = SSD_FLOAT32; c.L = 150; });
  add("f32 in, bf16 out", [](Case& c) { c.xt = c.Bt = c.Ct = c.zt = SSD_FLOAT32; c.L = 150; });
  // Fixed chunk-scan path (16-bit, Q >= 64, p in {64,128}, n in {64,128,256}, no seq_idx, 16-byte
  // vectors): every shape of the path, with the options cycled over the cases. Each case has a
  // partial last chunk (and, for Q >= 128, a partial last 64-row block).
  {
    int i = 0;
    for (int Q : {64, 128, 256})
      for (int P : {64, 128})
        for (int N : {64, 128, 256}) {
          const int k = i++;
          const bool f16 = (k % 5) == 3;
          std::string nm = "fixed Q=" + std::to_string(Q) + " p=" + std::to_string(P) + " n=" + std::to_string(N);
          add(nm, [&](Case& c) {
            c.Q = Q; c.p = P; c.n = N;
            c.L = 2 * Q + 37 + (k % 3) * 17;
            c.h = 4; c.g = (k % 4 == 1) ? 2 : ((k % 4 == 3) ? 4 : 1);
            c.b = (k % 2) ? 2 : 1;
            c.Dmode = k % 3;
            c.z = (k % 4) != 2;
            c.bias = (k % 3) != 1;
            c.softplus = (k % 5) != 4;
            if (k % 6 == 5) { c.lo = 0.005f; c.hi = 0.08f; }
            c.init = (k % 2) == 0;
            c.fin = (k % 7) != 6;
            c.pad = (k % 4 == 0) ? 8 : 0;
            if (f16) c.xt = c.Bt = c.Ct = c.zt = c.yt = SSD_FLOAT16;
          });
          v.back().name += std::string(" D") + std::to_string(v.back().Dmode) + (v.back().z ? " z" : "") +
                           (v.back().init ? " init" : "") + (v.back().pad ? " pad8" : "") +
                           " g" + std::to_string(v.back().g) + (f16 ? " f16" : "");
        }
  }
  add("fixed Q=256 L=100 (one partial chunk)", [](Case& c) { c.Q = 256; c.L = 100; c.n = 128; c.init = true; });
  add("fixed Q=128 L=64 noD noz", [](Case& c) { c.Q = 128; c.L = 64; c.Dmode = 0; c.z = false; });
  add("fixed Q=256 L=1", [](Case& c) { c.Q = 256; c.L = 1; c.n = 128; });
  add("fixed huge dt Q=256 p=128", [](Case& c) { c.Q = 256; c.L = 600; c.p = 128; c.n = 128; c.dtshift = 12.f; c.init = true; });
  add("fixed tiny dt Q=128 n=256", [](Case& c) { c.Q = 128; c.L = 300; c.n = 256; c.dtshift = -12.f; });
  add("fixed b=3 h=8 g=2 Q=256 full chunks", [](Case& c) { c.Q = 256; c.L = 512; c.b = 3; c.h = 8; c.g = 2; c.n = 128; c.init = true; });
  // enough (b, head, p-tile) chains (>= 64) for the sequential state pass (k_seq_state) by default
  add("fixed seq pass b=2 h=32 Q=64 n=128 init", [](Case& c) { c.Q = 64; c.L = 300; c.b = 2; c.h = 32; c.g = 2; c.n = 128; c.init = true; c.Dmode = 2; });
  add("fixed seq pass h=32 p=128 Q=256 n=64 f16", [](Case& c) { c.xt = c.Bt = c.Ct = c.zt = c.yt = SSD_FLOAT16; c.Q = 256; c.L = 600; c.h = 32; c.p = 128; c.n = 64; c.z = false; });
  add("fixed seq pass b=4 h=16 Q=128 n=256 L=1", [](Case& c) { c.Q = 128; c.L = 1; c.b = 4; c.h = 16; c.n = 256; c.init = true; });
  // few (chain, head) pairs on long chains: the sm_90a forward cuts them into 4 segments, and its first
  // launch each of the first three into 2 pieces (csrc/cuda/sm90/chain_host.h)
  add("fixed pieces h=32 g=4 Q=256 n=64 L=2040 init", [](Case& c) { c.Q = 256; c.L = 2040; c.h = 32; c.g = 4; c.n = 64; c.init = true; c.Dmode = 1; });
  add("fixed f16 clamp softplus off Q=64 p=128", [](Case& c) { c.xt = c.Bt = c.Ct = c.zt = c.yt = SSD_FLOAT16; c.Q = 64; c.p = 128; c.n = 64; c.L = 333; c.softplus = false; c.lo = 0.02f; c.hi = 0.05f; c.Dmode = 2; });
  add("generic: z f32 (fixed shape)", [](Case& c) { c.zt = SSD_FLOAT32; c.Q = 256; c.n = 128; c.L = 300; });
  add("generic: y f32 (fixed shape)", [](Case& c) { c.yt = SSD_FLOAT32; c.Q = 256; c.n = 128; c.L = 300; });
  add("generic: seq (fixed shape)", [](Case& c) { c.seq = 1; c.Q = 256; c.n = 128; c.L = 300; c.init = true; });
  // y_ungated (the pre-gate output) beside y: copies of every third case with z, in the output's dtype,
  // and a few with another dtype or without z (then y_ungated is not set: it needs z)
  {
    const size_t n0 = v.size();
    for (size_t i = 0; i < n0; i += 3) {
      if (!v[i].z) continue;
      Case c = v[i];
      c.name += " yu";
      c.yu = c.yt;
      v.push_back(c);
    }
  }
  add("yu f32, y bf16 (fixed shape)", [](Case& c) { c.yu = SSD_FLOAT32; c.Q = 256; c.n = 128; c.L = 300; });
  add("yu f16 Dch pad8", [](Case& c) { c.yu = SSD_FLOAT16; c.Dmode = 2; c.pad = 8; c.L = 150; c.init = true; });
  // packed sequences (cu_seqlens): each sequence chunked from its own start, on every path
  add("cu 7 seqs Q=64 (fixed)", [](Case& c) { c.cu = 7; c.L = 400; c.h = 4; c.g = 2; });
  add("cu 5 seqs Q=256 n=128 (fixed)", [](Case& c) { c.cu = 5; c.Q = 256; c.L = 900; c.n = 128; c.Dmode = 2; });
  add("cu 3 seqs of Q+1 Q=128 p=128 yu", [](Case& c) { c.cu = -3; c.Q = 128; c.L = 3 * 129; c.p = 128; c.n = 128; c.yu = c.yt; });
  add("cu 1 seq Q=64", [](Case& c) { c.cu = 1; c.L = 150; });
  add("cu 9 seqs L=20 Q=64", [](Case& c) { c.cu = 9; c.L = 20; });
  add("cu seq pass h=32 Q=64 n=128 6 seqs", [](Case& c) { c.cu = 6; c.h = 32; c.g = 2; c.Q = 64; c.L = 333; c.n = 128; });
  add("cu seq pass h=16 p=128 Q=256 n=64 f16 4 seqs", [](Case& c) { c.xt = c.Bt = c.Ct = c.zt = c.yt = SSD_FLOAT16; c.cu = 4; c.h = 16; c.p = 128; c.Q = 256; c.n = 64; c.L = 700; c.z = false; });
  add("cu no final p=17 n=5 Q=16 (generic)", [](Case& c) { c.cu = 6; c.p = 17; c.n = 5; c.Q = 16; c.L = 77; c.fin = false; });
  add("cu f32 Q=32 (generic) yu", [](Case& c) { c.xt = c.Bt = c.Ct = c.zt = c.yt = SSD_FLOAT32; c.cu = 5; c.Q = 32; c.L = 150; c.Dmode = 2; c.yu = c.yt; });
  add("cu pad 8 Q=64 clamp", [](Case& c) { c.cu = 4; c.pad = 8; c.L = 200; c.lo = 0.01f; c.hi = 0.05f; });
  return v;
}

static int check_mode(const char* filter) {
  const cudaDeviceProp prop = device_properties();
  printf("device: %s (sm_%d%d, %d SMs, L2 %d MiB)\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount,
         prop.l2CacheSize >> 20);
  printf("== self-tests of the mma/ldmatrix tile helpers (32x32x32, one warp) ==\n");
  bool ok = run_selftests();
  printf("== forward vs float64 token recurrence (y and final_states relative L2; outputs and input gaps poisoned with NaN; each case run twice, bitwise compare) ==\n");
  int fails = 0, n = 0;
  uint64_t seed = 42;
  for (const Case& c : make_cases()) {
    ++seed;
    if (filter && !strstr(c.name.c_str(), filter)) continue;
    ++n;
    if (!run_case(c, seed)) ++fails;
  }
  printf("== check: %d/%d cases passed, self-tests %s ==\n", n - fails, n, ok ? "passed" : "FAILED");
  return (fails == 0 && ok) ? 0 : 1;
}

// =============================================================================================
// 3. Benchmarks.
// =============================================================================================
static int bench_mode(int runs, const char* only = nullptr) {
  const int Q = kBenchChunk;
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  printf("device: %s, %d SMs, L2 %d MiB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  printf("bench: bf16 x/B/C/z/y, fp32 dt/A/D(per head)/dt_bias, dt_softplus, chunk 256, no initial/final states;\n"
         "       %d timed runs after 10 warm-ups, median; each run timed alone with CUDA events\n", runs);
  printf("flops = per (b,chunk,head) 2Q^2p [intra, dense square] + 2Qpn [chunk state] + 2Qpn [from state]"
         " + per (b,chunk,group) 2Q^2n [C B^T]; bytes = x,z,B,C,dt read once + y written once;"
         " floor = max(bytes/4.3e12, flops/790e12)\n");
  for (const BenchCfg& c : kBenchCfgs) {
    if (only && strcmp(only, c.name) != 0) continue;
    const size_t nx = (size_t)c.b * c.L * c.h * c.p, nB = (size_t)c.b * c.L * c.g * c.n, ndt = (size_t)c.b * c.L * c.h;
    const double in_bytes = nx * 2.0 * 2 + nB * 2.0 * 2 + ndt * 4.0;
    const int nsets = in_bytes < 2.0 * prop.l2CacheSize ? 3 : 1;
    struct Set { void *x, *z, *B, *C, *dt; } sets[3];
    for (int s = 0; s < nsets; ++s) {
      CK(cudaMalloc(&sets[s].x, nx * 2)); CK(cudaMalloc(&sets[s].z, nx * 2));
      CK(cudaMalloc(&sets[s].B, nB * 2)); CK(cudaMalloc(&sets[s].C, nB * 2));
      CK(cudaMalloc(&sets[s].dt, ndt * 4));
      fill(sets[s].x, SSD_BFLOAT16, nx, 11 + s); fill(sets[s].z, SSD_BFLOAT16, nx, 21 + s);
      fill(sets[s].B, SSD_BFLOAT16, nB, 31 + s); fill(sets[s].C, SSD_BFLOAT16, nB, 41 + s);
      fill(sets[s].dt, SSD_FLOAT32, ndt, 51 + s, -4.f);
    }
    const HeadParams hp = head_params(c.h);
    void* y;
    CK(cudaMalloc(&y, nx * 2));
    SsdParams p = bench_params(c, y, hp);
    auto use = [&](int s) { p.x = sets[s].x; p.z = sets[s].z; p.B = sets[s].B; p.C = sets[s].C; p.dt = sets[s].dt; };
    use(0);
    const size_t wsb = ssd::cuda::forward_workspace_bytes(p);
    void* ws;
    CK(cudaMalloc(&ws, wsb));
    std::string err;
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0)); CK(cudaEventCreate(&e1));
    for (int i = 0; i < (runs == 1 ? 1 : 10); ++i) {
      use(i % nsets);
      if (ssd::cuda::forward(p, nullptr, ws, &err) != SSD_OK) { printf("%s: forward failed: %s\n", c.name, err.c_str()); return 1; }
    }
    CK(cudaDeviceSynchronize());
    std::vector<float> ms;
    for (int i = 0; i < runs; ++i) {
      use(i % nsets);
      ms.push_back(time_ms(e0, e1, [&] { ssd::cuda::forward(p, nullptr, ws, &err); }));
    }
    std::sort(ms.begin(), ms.end());
    const double med = ms[ms.size() / 2];
    // per-launch times (separate pass)
    std::vector<std::vector<float>> st(ssd::cuda::detail::kMaxStages);
    ssd::cuda::detail::StageTimes times;
    for (int i = 0; i < (runs == 1 ? 1 : std::max(20, runs / 2)); ++i) {
      use(i % nsets);
      if (ssd::cuda::detail::forward_timed(p, nullptr, ws, &err, &times) != SSD_OK) { printf("timed failed: %s\n", err.c_str()); return 1; }
      for (int s = 0; s < times.n; ++s) st[s].push_back(times.ms[s]);
    }
    // sanity: output finite
    size_t bad = 0;
    const double y_rms = bf16_stats(y, nx, &bad);
    const double nc = std::ceil((double)c.L / Q);
    const double flops = c.b * nc * c.h * (2.0 * Q * Q * c.p + 4.0 * Q * c.p * c.n) + c.b * nc * c.g * 2.0 * Q * Q * c.n;
    const double bytes = in_bytes + nx * 2.0;
    const double floor_ms = std::max(bytes / 4.3e12, flops / 790e12) * 1e3;
    printf("%s b=%d L=%d h=%d p=%d g=%d n=%d: %.4f ms (min %.4f, max %.4f)  %.1f TFLOP/s  %.0f GB/s  floor %.4f ms"
           "  x%.2f of floor  Triton %.3f ms (x%.2f)  workspace %.1f MiB  input sets %d  y rms %.3f nonfinite %zu\n",
           c.name, c.b, c.L, c.h, c.p, c.g, c.n, med, ms.front(), ms.back(), flops / med / 1e9, bytes / med / 1e6,
           floor_ms, med / floor_ms, c.triton_ms, med / c.triton_ms, wsb / 1048576.0, nsets, y_rms, bad);
    printf("   per launch (median of %zu):", st[0].size());
    for (int s = 0; s < times.n; ++s) printf("  %s %.4f ms", times.name[s], median(st[s]));
    printf("\n");
    fflush(stdout);
    cudaEventDestroy(e0); cudaEventDestroy(e1);
    cudaFree(ws); cudaFree(y);
    hp.free();
    for (int s = 0; s < nsets; ++s) { cudaFree(sets[s].x); cudaFree(sets[s].z); cudaFree(sets[s].B); cudaFree(sets[s].C); cudaFree(sets[s].dt); }
  }
  return 0;
}

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "all";
  int rc = 0;
  if (mode == "check" || mode == "all") rc |= check_mode(argc > 2 && mode == "check" ? argv[2] : nullptr);
  if (mode == "bench" || mode == "all") rc |= bench_mode(argc > 2 && mode == "bench" ? std::max(50, atoi(argv[2])) : 100);
  if (mode == "profile") rc |= bench_mode(1, argc > 2 ? argv[2] : "G1");  // for ncu: few launches
  if (mode != "check" && mode != "bench" && mode != "all" && mode != "profile") {
    fprintf(stderr, "usage: %s check [name-filter] | bench [runs] | profile [G1..G4] | all\n", argv[0]);
    return 2;
  }
  return rc;
}
