// Check of the sm_90a backward (csrc/cuda/sm90/backward.h). "states" cases: the state walks
// (backward_states) against the float64 token recurrence: H entering every block of 64 positions, dL/dH
// leaving it (from later positions and d_final_states only), and the initial state's gradient. "bwd"
// cases: every gradient of the whole backward (backward) against the float64 reference of
// bwd_reference.h (the backward harness's port of lib/reference-backward.ts). One source for both: on an
// H100 or H200 (bench/cuda/sm90_bwd_states.sh) and in the CPU emulation (bench/cuda/emu/sm90_bwd.sh).
//   sm90_bwd_states [filter]     runs the cases whose name contains filter; PASS/FAIL per case, exit 1
//                                on any failure
//   sm90_bwd_states --time [name] times the walks and the whole backward on G1-G4 (a GPU only)
// Inputs: x, dy, z, B, C uniform in [-1, 1) rounded to the 16-bit dtype, dt = randn - 4 through softplus
// (d about 0.02 - 0.1), A = -exp(U(-1, 1.5)), a dt bias, initial states and d_final_states of unit scale.
// Every case runs twice and must give the same bits; every compared tensor must be finite and nonzero.
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "ssd_kernels.h"
#include "cuda/detail.h"
#include "cuda/sm90/backward.h"
#include "ck.h"
#include "harness_common.h"  // softplus_d (for bwd_reference.h), the benchmark configurations, time_ms, median
#include "bwd_reference.h"

namespace {

using bf16 = __nv_bfloat16;
using f16 = __half;

struct Case {
  std::string name;
  int b, L, H, G, N;
  bool f16, z, bias, h0, dfin;
  std::vector<int> lens;  // packed sequences (batch 1), or empty
  int D = 0;              // bwd cases: 0 none, 1 per head, 2 per channel
  bool limit = false;     // bwd cases: dt clamped to [0.02, 0.08]
  bool kept = false;      // bwd cases (with z): y_ungated given, as the forward keeps it
};

float round16(bool is_f16, float v) { return is_f16 ? __half2float(__float2half(v)) : __bfloat162float(__float2bfloat16(v)); }
uint16_t bits16(bool is_f16, float v) {
  uint16_t u;
  if (is_f16) {
    const f16 h = __float2half(v);
    std::memcpy(&u, &h, 2);
  } else {
    const bf16 h = __float2bfloat16(v);
    std::memcpy(&u, &h, 2);
  }
  return u;
}
float from16(bool is_f16, uint16_t u) {
  if (is_f16) {
    f16 h;
    std::memcpy(&h, &u, 2);
    return __half2float(h);
  }
  bf16 h;
  std::memcpy(&h, &u, 2);
  return __bfloat162float(h);
}

template <class V>
void* upload(const std::vector<V>& v) {
  if (v.empty()) return nullptr;
  void* d = nullptr;
  CK(cudaMalloc(&d, v.size() * sizeof(V)));
  CK(cudaMemcpy(d, v.data(), v.size() * sizeof(V), cudaMemcpyHostToDevice));
  return d;
}

struct Dist {
  double num = 0, den = 0;
  bool finite = true;
  void add(double got, double want) {
    if (!std::isfinite(got)) finite = false;
    num += (got - want) * (got - want);
    den += want * want;
  }
  double rel() const { return std::sqrt(num / den); }
};

// A case's inputs: host values (16-bit ones as their bits and as doubles) and the device parameter block.
struct Inputs {
  std::vector<uint16_t> xb, dyb, zb, Bb, Cb;
  std::vector<double> x, dy, z, Bv, Cv;
  std::vector<float> dt, A, bias, h0, dfin, D;
  std::vector<int32_t> cu;
  SsdBackwardParams bw;
  std::vector<void*> owned;  // device memory to free
  ~Inputs() {
    for (void* v : owned) cudaFree(v);
  }
  template <class V>
  void* up(const std::vector<V>& v) {
    void* d = upload(v);
    if (d) owned.push_back(d);
    return d;
  }
  void* zeros(size_t bytes) {
    void* d = nullptr;
    CK(cudaMalloc(&d, bytes));
    CK(cudaMemset(d, 0, bytes));
    owned.push_back(d);
    return d;
  }
};

void make_inputs(const Case& c, uint64_t seed, Inputs& in) {
  const int b = c.b, L = c.L, H = c.H, G = c.G, N = c.N, P = 64;
  const bool packed = !c.lens.empty();
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uni(-1.f, 1.f);
  std::normal_distribution<float> gauss(0.f, 1.f);
  auto fill16 = [&](size_t n, std::vector<uint16_t>& bits, std::vector<double>& val) {
    bits.resize(n);
    val.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const float v = round16(c.f16, uni(rng));
      bits[i] = bits16(c.f16, v);
      val[i] = v;
    }
  };
  fill16((size_t)b * L * H * P, in.xb, in.x);
  fill16((size_t)b * L * H * P, in.dyb, in.dy);
  if (c.z) fill16((size_t)b * L * H * P, in.zb, in.z);
  fill16((size_t)b * L * G * N, in.Bb, in.Bv);
  fill16((size_t)b * L * G * N, in.Cb, in.Cv);
  in.dt.resize((size_t)b * L * H);
  in.A.resize(H);
  in.bias.resize(c.bias ? H : 0);
  in.h0.resize(c.h0 && !packed ? (size_t)b * H * P * N : 0);
  in.dfin.resize(c.dfin ? (size_t)(packed ? 1 : b) * H * P * N : 0);
  in.D.resize(c.D == 1 ? H : c.D == 2 ? (size_t)H * P : 0);
  for (auto& v : in.dt) v = gauss(rng) - 4.f;
  for (auto& v : in.A) v = -std::exp(1.25f * uni(rng) + 0.25f);
  for (auto& v : in.bias) v = 0.5f * uni(rng);
  for (auto& v : in.h0) v = uni(rng);
  for (auto& v : in.dfin) v = uni(rng);
  for (auto& v : in.D) v = uni(rng);
  if (packed) {
    in.cu.push_back(0);
    for (int len : c.lens) in.cu.push_back(in.cu.back() + len);
  }
  SsdBackwardParams& bw = in.bw;
  std::memset(&bw, 0, sizeof bw);
  SsdParams& p = bw.fwd;
  const SsdDtype t16 = c.f16 ? SSD_FLOAT16 : SSD_BFLOAT16;
  const int64_t xs = (int64_t)L * H * P;
  p.batch = b; p.seqlen = L; p.nheads = H; p.headdim = P; p.ngroups = G; p.dstate = N; p.chunk_size = 256;
  p.x = in.up(in.xb); p.x_type = t16; p.x_batch_stride = xs; p.x_seq_stride = H * P; p.x_head_stride = P;
  p.dt = in.up(in.dt); p.dt_type = SSD_FLOAT32; p.dt_batch_stride = (int64_t)L * H; p.dt_seq_stride = H;
  p.B = in.up(in.Bb); p.B_type = t16; p.B_batch_stride = (int64_t)L * G * N; p.B_seq_stride = G * N; p.B_group_stride = N;
  p.C = in.up(in.Cb); p.C_type = t16; p.C_batch_stride = (int64_t)L * G * N; p.C_seq_stride = G * N; p.C_group_stride = N;
  p.A = static_cast<const float*>(in.up(in.A));
  if (c.z) { p.z = in.up(in.zb); p.z_type = t16; p.z_batch_stride = xs; p.z_seq_stride = H * P; p.z_head_stride = P; }
  p.dt_bias = static_cast<const float*>(in.up(in.bias));
  p.initial_states = static_cast<const float*>(in.up(in.h0));
  p.D = static_cast<const float*>(in.up(in.D));
  p.D_per_channel = c.D == 2;
  p.dt_softplus = 1;
  p.dt_min = c.limit ? 0.02f : 0.f;
  p.dt_max = c.limit ? 0.08f : INFINITY;
  p.y = in.zeros((size_t)b * L * H * P * 2); p.y_type = t16; p.y_batch_stride = xs; p.y_seq_stride = H * P; p.y_head_stride = P;
  if (packed) { p.cu_seqlens = static_cast<const int32_t*>(in.up(in.cu)); p.num_seqs = (int64_t)c.lens.size(); }
  bw.dy = in.up(in.dyb); bw.dy_type = t16; bw.dy_batch_stride = xs; bw.dy_seq_stride = H * P; bw.dy_head_stride = P;
  bw.d_final_states = static_cast<const float*>(in.up(in.dfin));
  if (p.initial_states) bw.d_initial_states = static_cast<float*>(in.zeros(in.h0.size() * 4));
}

// The gradients of c's backward, zeroed, each in its input's dtype and layout (the CUDA backward's contract).
void alloc_grads(const Case& c, Inputs& in) {
  const int b = c.b, L = c.L, H = c.H, G = c.G, N = c.N, P = 64;
  SsdBackwardParams& bw = in.bw;
  const SsdParams& p = bw.fwd;
  const size_t nx = (size_t)b * L * H * P, nbc = (size_t)b * L * G * N, nt = (size_t)b * L * H;
  bw.dx = in.zeros(nx * 2); bw.dx_type = p.x_type; bw.dx_batch_stride = p.x_batch_stride; bw.dx_seq_stride = p.x_seq_stride; bw.dx_head_stride = P;
  bw.ddt = in.zeros(nt * 4); bw.ddt_type = SSD_FLOAT32; bw.ddt_batch_stride = (int64_t)L * H; bw.ddt_seq_stride = H;
  bw.dA = static_cast<float*>(in.zeros(H * 4));
  bw.dB = in.zeros(nbc * 2); bw.dB_type = p.x_type; bw.dB_batch_stride = p.B_batch_stride; bw.dB_seq_stride = p.B_seq_stride; bw.dB_group_stride = N;
  bw.dC = in.zeros(nbc * 2); bw.dC_type = p.x_type; bw.dC_batch_stride = p.C_batch_stride; bw.dC_seq_stride = p.C_seq_stride; bw.dC_group_stride = N;
  if (p.D) bw.dD = static_cast<float*>(in.zeros(in.D.size() * 4));
  if (p.z) { bw.dz = in.zeros(nx * 2); bw.dz_type = p.x_type; bw.dz_batch_stride = p.x_batch_stride; bw.dz_seq_stride = p.x_seq_stride; bw.dz_head_stride = P; }
  if (p.dt_bias) bw.d_dt_bias = static_cast<float*>(in.zeros(H * 4));
}

bool run_case(const Case& c, uint64_t seed) {
  const int b = c.b, L = c.L, H = c.H, G = c.G, N = c.N, P = 64, hpg = H / G;
  const bool packed = !c.lens.empty();
  Inputs in;
  make_inputs(c, seed, in);
  const std::vector<double>&x = in.x, &dy = in.dy, &z = in.z, &Bv = in.Bv, &Cv = in.Cv;
  const std::vector<float>&dt = in.dt, &A = in.A, &bias = in.bias, &h0 = in.h0, &dfin = in.dfin;
  const std::vector<int32_t>& cu = in.cu;
  // float64 recurrences per chain (batch row, or packed sequence) and head
  const int nchain = packed ? (int)c.lens.size() : b;
  auto chain_start = [&](int ch) { return packed ? cu[ch] : 0; };
  auto chain_len = [&](int ch) { return packed ? c.lens[ch] : L; };
  auto chain_row = [&](int ch) { return packed ? 0 : ch; };
  auto slot_of = [&](int ch, int kb) -> int64_t {
    return packed ? (int64_t)cu[ch] / 64 + ch + kb : (int64_t)ch * ((L + 63) / 64) + kb;
  };
  const int64_t slots = packed ? (L + 63) / 64 + (int64_t)c.lens.size() : (int64_t)b * ((L + 63) / 64);
  const size_t PN = (size_t)P * N;
  std::vector<double> refH(slots * H * PN, 0.0), refdH(slots * H * PN, 0.0), refdinit(h0.size(), 0.0);
  std::vector<char> used(slots, 0);
  const int last_chain = [&] {
    int last = -1;
    for (int ch = 0; ch < nchain; ++ch) if (chain_len(ch) > 0) last = ch;
    return last;
  }();
  for (int ch = 0; ch < nchain; ++ch) {
    const int t0 = chain_start(ch), len = chain_len(ch), row = chain_row(ch);
    for (int kb = 0; kb < (len + 63) / 64; ++kb) used[slot_of(ch, kb)] = 1;
    for (int h = 0; h < H; ++h) {
      const int g = h / hpg;
      auto step = [&](int t) {
        double u = (double)dt[((size_t)row * L + t) * H + h] + (c.bias ? bias[h] : 0.0);
        u = u <= 20.0 ? std::log1p(std::exp(u)) : u;
        return u;
      };
      auto at = [&](size_t t, int p) { return (((size_t)row * L + t) * H + h) * P + p; };
      auto bc = [&](size_t t, int n) { return (((size_t)row * L + t) * G + g) * N + n; };
      std::vector<double> S(PN, 0.0);
      if (!h0.empty()) for (size_t e = 0; e < PN; ++e) S[e] = h0[((size_t)row * H + h) * PN + e];
      for (int j = 0; j < len; ++j) {
        const int t = t0 + j;
        if (j % 64 == 0) std::copy(S.begin(), S.end(), refH.begin() + (slot_of(ch, j / 64) * H + h) * PN);
        const double d = step(t), a = std::exp(d * A[h]);
        for (int p = 0; p < P; ++p)
          for (int n = 0; n < N; ++n) S[p * N + n] = a * S[p * N + n] + d * x[at(t, p)] * Bv[bc(t, n)];
      }
      std::vector<double> gf(PN, 0.0);  // the gradient reaching the state after position t from later ones
      if (c.dfin && (!packed || ch == last_chain)) for (size_t e = 0; e < PN; ++e) gf[e] = dfin[((packed ? 0 : (size_t)row) * H + h) * PN + e];
      for (int j = len - 1; j >= 0; --j) {
        const int t = t0 + j;
        if (j % 64 == 63 || j == len - 1) std::copy(gf.begin(), gf.end(), refdH.begin() + (slot_of(ch, j / 64) * H + h) * PN);
        const double a = std::exp(step(t) * A[h]);
        for (int p = 0; p < P; ++p) {
          double dyv = dy[at(t, p)];
          if (c.z) dyv *= z[at(t, p)] / (1.0 + std::exp(-z[at(t, p)]));
          for (int n = 0; n < N; ++n) gf[p * N + n] = a * (gf[p * N + n] + dyv * Cv[bc(t, n)]);
        }
      }
      if (!h0.empty()) std::copy(gf.begin(), gf.end(), refdinit.begin() + ((size_t)row * H + h) * PN);
    }
  }

  SsdBackwardParams& bw = in.bw;
  const SsdParams& p = bw.fwd;
  float* dinit = bw.d_initial_states;
  if (ssd::cuda::sm90::block_slots(p) != slots) {
    printf("FAIL %-34s block_slots %lld, expected %lld\n", c.name.c_str(), (long long)ssd::cuda::sm90::block_slots(p), (long long)slots);
    return false;
  }
  const size_t nblk_vals = (size_t)slots * H * PN;
  void *hb = nullptr, *dhb = nullptr, *ws = nullptr;
  CK(cudaMalloc(&hb, nblk_vals * 2));
  CK(cudaMalloc(&dhb, nblk_vals * 2));
  const size_t wsb = ssd::cuda::sm90::states_workspace_bytes(p);
  if (wsb) CK(cudaMalloc(&ws, wsb));
  std::vector<uint16_t> gotH[2], gotdH[2];
  std::vector<float> gotdinit[2];
  for (int run = 0; run < 2; ++run) {
    CK(cudaMemset(hb, 0xff, nblk_vals * 2));  // NaN in both 16-bit dtypes: a slot left unwritten shows
    CK(cudaMemset(dhb, 0xff, nblk_vals * 2));
    std::string err;
    const SsdStatus st = ssd::cuda::sm90::backward_states(bw, nullptr, hb, dhb, ws, &err);
    if (st != SSD_OK) {
      printf("FAIL %-34s backward_states: %s\n", c.name.c_str(), err.c_str());
      return false;
    }
    CK(cudaDeviceSynchronize());
    gotH[run].resize(nblk_vals);
    gotdH[run].resize(nblk_vals);
    CK(cudaMemcpy(gotH[run].data(), hb, nblk_vals * 2, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(gotdH[run].data(), dhb, nblk_vals * 2, cudaMemcpyDeviceToHost));
    if (dinit) {
      gotdinit[run].resize(refdinit.size());
      CK(cudaMemcpy(gotdinit[run].data(), dinit, refdinit.size() * sizeof(float), cudaMemcpyDeviceToHost));
    }
  }
  const bool same = gotH[0] == gotH[1] && gotdH[0] == gotdH[1] && gotdinit[0] == gotdinit[1];
  Dist dH, ddH, ddi;
  for (int64_t s = 0; s < slots; ++s) {
    if (!used[s]) continue;
    for (size_t e = 0; e < (size_t)H * PN; ++e) {
      const size_t i = (size_t)s * H * PN + e;
      dH.add(from16(c.f16, gotH[0][i]), refH[i]);
      ddH.add(from16(c.f16, gotdH[0][i]), refdH[i]);
    }
  }
  for (size_t i = 0; i < refdinit.size(); ++i) ddi.add(gotdinit[0][i], refdinit[i]);
  // 16-bit values of fp32 sums whose terms were rounded to 16 bits (x w, dY 2^s): bf16 is good to
  // about 4e-3 relative per value
  const double bound = c.f16 ? 4e-3 : 1e-2;
  // H entering a chain's first block is zero without initial states: a case with no other block
  // compares zeros, which must come back exact
  const bool h_ok = dH.finite && (dH.den > 0 ? dH.rel() <= bound : dH.num == 0);
  const bool dh_ok = ddH.finite && ddH.den > 0 && ddH.rel() <= bound;
  const bool di_ok = refdinit.empty() || (ddi.finite && ddi.den > 0 && ddi.rel() <= bound);
  const bool ok = h_ok && dh_ok && di_ok && same;
  printf("%s %-34s H %.2e  dH %.2e  dinit %s  (bound %.0e) %s, ws %.2f MiB\n", ok ? "PASS" : "FAIL", c.name.c_str(),
         dH.den > 0 ? dH.rel() : 0.0, ddH.rel(), refdinit.empty() ? "-" : std::to_string(ddi.rel()).c_str(), bound,
         same ? "bitwise repeatable" : "NOT REPEATABLE", wsb / 1048576.0);
  for (void* v : {hb, dhb, ws})
    if (v) CK(cudaFree(v));
  return ok;
}


// The whole backward against ref_backward (bwd_reference.h): dx, dz, ddt, dB, dC relative to the
// reference's norm; dA, dDtBias, dD (sums over positions) against the norm of their terms' magnitudes,
// as the package's tests measure them.
bool run_bwd_case(const Case& c, uint64_t seed) {
  const int b = c.b, L = c.L, H = c.H, G = c.G, N = c.N, P = 64;
  const bool packed = !c.lens.empty();
  Inputs in;
  make_inputs(c, seed, in);
  SsdBackwardParams& bw = in.bw;
  const SsdParams& p = bw.fwd;
  const size_t nx = (size_t)b * L * H * P, nbc = (size_t)b * L * G * N, nt = (size_t)b * L * H;
  alloc_grads(c, in);

  // the reference: packed sequences as seq_idx
  std::vector<double> dtd(in.dt.begin(), in.dt.end()), Ad(in.A.begin(), in.A.end()), biasd(in.bias.begin(), in.bias.end()),
      h0d(in.h0.begin(), in.h0.end()), dfind, Dd(in.D.begin(), in.D.end());
  std::vector<int> seq;
  if (packed) {
    for (int k = 0; k < (int)c.lens.size(); ++k)
      for (int j = 0; j < c.lens[k]; ++j) seq.push_back(k);
  }
  if (!in.dfin.empty()) {
    dfind.assign(in.dfin.begin(), in.dfin.end());
  }
  RefIn r{b, L, H, P, G, N, &in.x, &dtd, &Ad, &in.Bv, &in.Cv, p.D ? &Dd : nullptr, p.z ? &in.z : nullptr,
          p.dt_bias ? &biasd : nullptr, in.h0.empty() ? nullptr : &h0d, &in.dy, dfind.empty() ? nullptr : &dfind,
          c.D == 2, true, (double)p.dt_min, (double)p.dt_max, packed ? &seq : nullptr};
  RefOut o;
  ref_backward(r, o);
  std::vector<uint16_t> yub;
  if (c.kept && p.z) {
    // y_ungated = C . h + D x by the token recurrence, rounded once to the 16-bit dtype (what the forward
    // keeps); the reference's dz uses the exact value, so dz differs by that rounding only
    yub.assign(nx, 0);
    const int hpg = H / G;
    const size_t PN = (size_t)P * N;
    for (int bb = 0; bb < b; ++bb)
      for (int h = 0; h < H; ++h) {
        const int g = h / hpg;
        std::vector<double> S(PN, 0.0);
        if (!in.h0.empty()) for (size_t e = 0; e < PN; ++e) S[e] = in.h0[((size_t)bb * H + h) * PN + e];
        for (int t = 0; t < L; ++t) {
          if (packed && t > 0 && seq[t] != seq[t - 1]) std::fill(S.begin(), S.end(), 0.0);
          double u = (double)in.dt[((size_t)bb * L + t) * H + h] + (p.dt_bias ? in.bias[h] : 0.0);
          u = softplus_d(u);
          const double d = std::min(std::max(u, (double)p.dt_min), (double)p.dt_max), a = std::exp(d * in.A[h]);
          for (int q = 0; q < P; ++q) {
            const size_t xi = (((size_t)bb * L + t) * H + h) * P + q;
            double y = 0;
            for (int n = 0; n < N; ++n) {
              const size_t bi = (((size_t)bb * L + t) * G + g) * N + n;
              S[q * N + n] = a * S[q * N + n] + d * in.x[xi] * in.Bv[bi];
              y += in.Cv[bi] * S[q * N + n];
            }
            if (p.D) y += (c.D == 2 ? in.D[(size_t)h * P + q] : in.D[h]) * in.x[xi];
            yub[xi] = bits16(c.f16, (float)y);
          }
        }
      }
    SsdParams& pm = bw.fwd;
    pm.y_ungated = in.up(yub);
    pm.y_ungated_type = p.x_type;
    pm.y_ungated_batch_stride = p.x_batch_stride;
    pm.y_ungated_seq_stride = p.x_seq_stride;
    pm.y_ungated_head_stride = P;
  }

  const size_t wsb = ssd::cuda::sm90::backward_workspace_bytes(p);
  void* ws = in.zeros(wsb);
  struct Got { std::vector<uint16_t> dx, dz, dB, dC; std::vector<float> ddt, dA, dD, dbias, dinit; };
  Got got[2];
  for (int run = 0; run < 2; ++run) {
    std::string err;
    // garbage (NaN) workspace before every run, as the caching allocator may hand it over: a value the
    // launches read without writing it first (a packed call's unused block slots) then shows
    CK(cudaMemset(ws, 0xff, wsb));
    if (ssd::cuda::sm90::backward(bw, nullptr, ws, &err) != SSD_OK) {
      printf("FAIL %-34s backward: %s\n", c.name.c_str(), err.c_str());
      return false;
    }
    CK(cudaDeviceSynchronize());
    auto down16 = [&](const void* d, size_t n, std::vector<uint16_t>& v) { v.resize(n); if (n) CK(cudaMemcpy(v.data(), d, n * 2, cudaMemcpyDeviceToHost)); };
    auto down32 = [&](const void* d, size_t n, std::vector<float>& v) { v.resize(d ? n : 0); if (d && n) CK(cudaMemcpy(v.data(), d, n * 4, cudaMemcpyDeviceToHost)); };
    down16(bw.dx, nx, got[run].dx);
    down16(bw.dz, p.z ? nx : 0, got[run].dz);
    down16(bw.dB, nbc, got[run].dB);
    down16(bw.dC, nbc, got[run].dC);
    down32(bw.ddt, nt, got[run].ddt);
    down32(bw.dA, H, got[run].dA);
    down32(bw.dD, in.D.size(), got[run].dD);
    down32(bw.d_dt_bias, H, got[run].dbias);
    down32(bw.d_initial_states, in.h0.size(), got[run].dinit);
  }
  const bool same = got[0].dx == got[1].dx && got[0].dz == got[1].dz && got[0].dB == got[1].dB && got[0].dC == got[1].dC &&
                    got[0].ddt == got[1].ddt && got[0].dA == got[1].dA && got[0].dD == got[1].dD &&
                    got[0].dbias == got[1].dbias && got[0].dinit == got[1].dinit;
  const double bound = 1e-2;
  bool ok = same;
  std::string line;
  // e = ||got - ref|| / ||scale||, scale the reference itself or its terms' magnitudes
  auto measure = [&](const char* name, size_t n, auto get, const std::vector<double>& ref, const std::vector<double>* scale) {
    double num = 0, den = 0, rn = 0;
    bool finite = true;
    for (size_t i = 0; i < n; ++i) {
      const double v = get(i);
      if (!std::isfinite(v)) finite = false;
      num += (v - ref[i]) * (v - ref[i]);
      den += scale ? (*scale)[i] * (*scale)[i] : ref[i] * ref[i];
      rn += ref[i] * ref[i];
    }
    const double e = std::sqrt(num / den);
    const bool good = finite && den > 0 && rn > 0 && e <= bound;
    ok = ok && good;
    char buf[64];
    snprintf(buf, sizeof buf, " %s %.1e%s", name, e, good ? "" : "(!)");
    line += buf;
  };
  const Got& g0 = got[0];
  measure("dx", nx, [&](size_t i) { return (double)from16(c.f16, g0.dx[i]); }, o.dx, nullptr);
  if (p.z) measure("dz", nx, [&](size_t i) { return (double)from16(c.f16, g0.dz[i]); }, o.dz, nullptr);
  measure("ddt", nt, [&](size_t i) { return (double)g0.ddt[i]; }, o.ddt, L == 1 ? &o.ddt_abs : nullptr);
  measure("dB", nbc, [&](size_t i) { return (double)from16(c.f16, g0.dB[i]); }, o.dB, L == 1 ? &o.dB_abs : nullptr);
  measure("dC", nbc, [&](size_t i) { return (double)from16(c.f16, g0.dC[i]); }, o.dC, L == 1 ? &o.dC_abs : nullptr);
  measure("dA", H, [&](size_t i) { return (double)g0.dA[i]; }, o.dA, &o.dA_abs);
  if (p.D) measure("dD", in.D.size(), [&](size_t i) { return (double)g0.dD[i]; }, o.dD, &o.dD_abs);
  if (p.dt_bias) measure("dbias", H, [&](size_t i) { return (double)g0.dbias[i]; }, o.dbias, &o.dbias_abs);
  if (!in.h0.empty()) measure("dinit", in.h0.size(), [&](size_t i) { return (double)g0.dinit[i]; }, o.dinit, nullptr);
  printf("%s %-34s%s (bound %.0e) %s, ws %.2f MiB\n", ok ? "PASS" : "FAIL", c.name.c_str(), line.c_str(), bound,
         same ? "bitwise repeatable" : "NOT REPEATABLE", wsb / 1048576.0);
  return ok;
}


// --time: the sm_90a backward on the benchmark shapes (kBenchCfgs: G1-G4, bf16, z, D per head,
// dtSoftplus), each state walk alone and both (backward_states) and the whole backward, CUDA events around
// `reps` back-to-back runs after a warm-up, median of `rounds`; the block launch and the finish take the
// difference. Inputs as the checks draw them (no reference is computed).
void time_case(const Case& c, int rounds, int reps) {
  Inputs in;
  make_inputs(c, 15, in);
  alloc_grads(c, in);
  SsdBackwardParams& bw = in.bw;
  const SsdParams& p = bw.fwd;
  const int64_t slots = ssd::cuda::sm90::block_slots(p);
  const size_t vals = (size_t)slots * c.H * 64 * c.N;
  void* hb = in.zeros(vals * 2);
  void* dhb = in.zeros(vals * 2);
  void* sws = in.zeros(std::max<size_t>(ssd::cuda::sm90::states_workspace_bytes(p), 16));
  const size_t wsb = ssd::cuda::sm90::backward_workspace_bytes(p);
  void* ws = in.zeros(wsb);
  std::string err;
  using ssd::cuda::sm90::Walks;
  auto walk = [&](Walks which) { return [&, which] { return ssd::cuda::sm90::backward_states(bw, nullptr, hb, dhb, sws, &err, which); }; };
  auto whole = [&] { return ssd::cuda::sm90::backward(bw, nullptr, ws, &err); };
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  auto median_ms = [&](auto f) {
    for (int i = 0; i < 3; ++i)
      if (f() != SSD_OK) { printf("FAIL %s: %s\n", c.name.c_str(), err.c_str()); std::exit(1); }
    std::vector<float> ms;
    for (int r = 0; r < rounds; ++r) ms.push_back(time_ms(e0, e1, [&] { for (int i = 0; i < reps; ++i) f(); }) / reps);
    return (float)median(ms);
  };
  const float tf = median_ms(walk(ssd::cuda::sm90::kForwardWalk)), tr = median_ms(walk(ssd::cuda::sm90::kReverseWalk));
  const float tw = median_ms(walk(ssd::cuda::sm90::kBothWalks)), tb = median_ms(whole);
  printf("TIME %-28s walks %.4f ms (H %.4f, dH %.4f)  whole %.4f ms  block+finish %.4f ms  (segments %d, slots %lld, ws %.1f MiB)\n",
         c.name.c_str(), tw, tf, tr, tb, tb - tw, ssd::cuda::sm90::segments(p), (long long)slots, wsb / 1048576.0);
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--time") == 0) {
    const char* only = argc > 2 ? argv[2] : "";
    for (const BenchCfg& g : kBenchCfgs) {
      // bf16, z, D per head, no dt bias, initial states or d_final_states
      Case c{g.name, g.b, g.L, g.h, g.g, g.n, false, true, false, false, false, {}};
      c.D = 1;
      if (std::strstr(c.name.c_str(), only)) time_case(c, 15, 10);
    }
    return 0;
  }
  const char* filter = argc > 1 ? argv[1] : "";
  // name, b, L, H, G, N, f16, z, bias, h0, dfin, packed lengths
  const std::vector<Case> cases = {
      {"b2 L1 n128 bf16 z h0 dfin", 2, 1, 4, 1, 128, false, true, true, true, true, {}},
      {"b2 L63 n128 bf16 z", 2, 63, 4, 1, 128, false, true, false, false, true, {}},
      {"b2 L64 n64 f16 h0", 2, 64, 4, 2, 64, true, false, true, true, true, {}},
      {"b2 L65 n128 bf16 z h0 dfin", 2, 65, 4, 2, 128, false, true, true, true, true, {}},
      {"b1 L200 n128 bf16 (4 segments)", 1, 200, 2, 1, 128, false, true, true, true, true, {}},
      {"b2 L333 n64 f16 g2 (segments)", 2, 333, 4, 2, 64, true, true, false, true, true, {}},
      {"b1 L700 n128 bf16 no dfin", 1, 700, 2, 1, 128, false, false, true, true, false, {}},
      {"packed 0,1,63,64,65,130,0 bf16 z", 1, 323, 2, 1, 128, false, true, true, false, true, {0, 1, 63, 64, 65, 130, 0}},
      {"packed 200,7 f16 n64", 1, 207, 2, 2, 64, true, false, false, false, true, {200, 7}},
      {"b1 L2040 h32 n64 bf16 (4 segments, 2 pieces each)", 1, 2040, 32, 4, 64, false, true, true, true, true, {}},
  };
  auto bwd = [](Case c, int D, bool limit, bool kept = false) {
    c.name = "bwd " + c.name + (D == 1 ? " D" : D == 2 ? " Dch" : "") + (limit ? " limit" : "") + (kept ? " kept" : "");
    c.D = D;
    c.limit = limit;
    c.kept = kept;
    return c;
  };
  const std::vector<Case> bwd_cases = {
      bwd(cases[0], 1, false), bwd(cases[1], 2, false), bwd(cases[2], 0, true), bwd(cases[3], 2, false),
      bwd(cases[4], 1, false), bwd(cases[5], 2, true), bwd(cases[7], 1, false), bwd(cases[8], 0, false),
      bwd({"b1 L130 h8 g2 n128 bf16 z", 1, 130, 8, 2, 128, false, true, true, true, true, {}}, 2, false),
      bwd(cases[3], 2, false, true), bwd(cases[5], 1, true, true), bwd(cases[7], 1, false, true),
      bwd(cases[9], 1, false),
  };
  int failed = 0, ran = 0;
  uint64_t seed = 1400;
  for (const Case& c : cases) {
    ++seed;
    if (!strstr(c.name.c_str(), filter)) continue;
    ++ran;
    if (!run_case(c, seed)) ++failed;
  }
  for (const Case& c : bwd_cases) {
    ++seed;
    if (!strstr(c.name.c_str(), filter)) continue;
    ++ran;
    if (!run_bwd_case(c, seed)) ++failed;
  }
  printf("== %d of %d cases passed ==\n", ran - failed, ran);
  return failed ? 1 : 0;
}
