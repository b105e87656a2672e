// What the CUDA forward and backward harnesses (fwd_harness.cu, bwd_harness.cu) share: CUDA error
// checks, host-side element access of every dtype with NaN poison, a host + device tensor, the
// float64 softplus, the device fill of the benchmarks, and the benchmark configurations G1-G4 with
// their common parameter block. Everything is static or inline: each harness is one translation
// unit. The CPU emulation (emu/build.sh) transforms this header like the harnesses themselves.
#pragma once
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "ssd_kernels.h"
#include "core/dtype.h"
#include "core/params.h"
#include "cuda/backend.h"
#include "cuda/detail.h"

#include "ck.h"

using bf16 = __nv_bfloat16;
using f16 = __half;

static inline size_t dsz(SsdDtype t) { return (size_t)ssd::dtype_bytes(t); }
static inline const char* dname(SsdDtype t) { return ssd::dtype_ptx(t); }

// Round a float to dtype t; returns the rounded value and writes the bits into dst[i].
static inline float put(void* dst, SsdDtype t, size_t i, float v) {
  return ssd::visit_dtype(t, [&](auto d) {
    using D = decltype(d);
    const typename D::Device h = D::dev_from_float(v);
    static_cast<typename D::Device*>(dst)[i] = h;
    return D::dev_to_float(h);
  });
}
static inline float get(const void* src, SsdDtype t, size_t i) {
  return ssd::visit_dtype(t, [&](auto d) {
    using D = decltype(d);
    return D::dev_to_float(static_cast<const typename D::Device*>(src)[i]);
  });
}
// NaN poison for gaps and outputs: dtype t's quiet NaN with a payload that no kernel writes (0xdead
// in a 4-byte dtype, 5 in a smaller one), as its dsz(t) bytes in the low end of the word.
static inline uint32_t poison_bits(SsdDtype t) {
  return ssd::visit_dtype(t, [](auto d) {
    using D = decltype(d);
    const typename D::Bits nan = D::from_float(NAN);
    uint32_t u = 0;
    memcpy(&u, &nan, sizeof nan);
    return u | (sizeof nan == 4 ? 0xdeadu : 0x5u);
  });
}
static inline void poison(void* dst, SsdDtype t, size_t n) {
  const uint32_t v = poison_bits(t);
  for (size_t i = 0; i < n; ++i) memcpy(static_cast<char*>(dst) + dsz(t) * i, &v, dsz(t));
}
static inline bool is_poison(const void* src, SsdDtype t, size_t i) {
  const uint32_t v = poison_bits(t);
  return memcmp(static_cast<const char*>(src) + i * dsz(t), &v, dsz(t)) == 0;
}

// A tensor's host bytes (with the gaps of its strides) and its device copy.
struct Tensor {
  std::vector<char> h;
  void* d = nullptr;
  size_t bytes = 0;
  void alloc(size_t nbytes) {
    bytes = nbytes;
    h.assign(nbytes, 0);
    CK(cudaMalloc(&d, std::max<size_t>(nbytes, 16)));
  }
  // n elements of dtype t, the host copy poisoned with NaN.
  void alloc_poisoned(SsdDtype t, size_t n) {
    alloc(n * dsz(t));
    poison(h.data(), t, n);
  }
  void upload() {
    if (bytes) CK(cudaMemcpy(d, h.data(), bytes, cudaMemcpyHostToDevice));
  }
  void download(std::vector<char>& out) const {
    out.resize(bytes);
    if (bytes) CK(cudaMemcpy(out.data(), d, bytes, cudaMemcpyDeviceToHost));
  }
  ~Tensor() {
    if (d) cudaFree(d);
  }
};

static inline double softplus_d(double u) { return u <= 20.0 ? std::log1p(std::exp(u)) : u; }

// =============================================================================================
// The checks' inputs.
// =============================================================================================
// What a check case sets in both harnesses (each harness's Case adds its outputs' dtypes and options).
struct CaseBase {
  std::string name;
  int b = 1, L = 64, h = 2, p = 64, g = 1, n = 64, Q = 64;
  SsdDtype xt = SSD_BFLOAT16, Bt = SSD_BFLOAT16, Ct = SSD_BFLOAT16, zt = SSD_BFLOAT16, dtt = SSD_FLOAT32;
  int Dmode = 1;  // 0 none, 1 per head, 2 per channel
  bool z = true, bias = true, softplus = true;
  float lo = 0.f, hi = INFINITY;
  bool init = false;  // initial states given
  bool fin = true;    // the forward: final states asked for; the backward: d_final_states given
  int seq = 0;    // 0 none, 1 boundaries inside chunks, 2 at chunk edges, 3 first != 0 + inside
  int pad = 0;    // extra elements in every stride (0: contiguous)
  float dtshift = -4.f;
  int yu = -1;    // dtype of y_ungated (the pre-gate output, with z), -1: none
  // packed sequences (cu_seqlens, batch 1; the forward also asks for varlen states): 0 none; k > 0: k
  // sequences of random lengths (some empty, some shorter than Q, some exact multiples of Q); -k: k
  // sequences of Q + 1. cu_lens, when not empty, gives the lengths instead (L must be their sum).
  int cu = 0;
  std::vector<int> cu_lens;
  bool packed() const { return cu != 0 || !cu_lens.empty(); }
};

// The cu_seqlens offsets of a packed case (L positions), drawn from their own seed.
static inline std::vector<int32_t> packed_offsets(const CaseBase& c, uint64_t seed) {
  if (!c.cu_lens.empty()) {
    std::vector<int32_t> cu(c.cu_lens.size() + 1, 0);
    for (size_t s = 0; s < c.cu_lens.size(); ++s) cu[s + 1] = cu[s] + c.cu_lens[s];
    return cu;
  }
  const int n = c.cu < 0 ? -c.cu : c.cu;
  std::vector<int32_t> cu(n + 1, 0);
  if (c.cu < 0) {
    for (int s = 0; s < n; ++s) cu[s + 1] = std::min(c.L, cu[s] + c.Q + 1);
    cu[n] = c.L;
    return cu;
  }
  std::mt19937_64 rng(seed * 7919 + 5);
  std::vector<int32_t> cuts(n - 1);
  for (int s = 0; s + 1 < n; ++s) {
    const uint64_t r = rng();
    switch (r % 4) {
      case 0: cuts[s] = (int32_t)((r >> 8) % (c.L + 1)); break;               // anywhere
      case 1: cuts[s] = (int32_t)(((r >> 8) % (c.L / c.Q + 1)) * c.Q); break;  // on a chunk edge
      default: cuts[s] = (int32_t)((r >> 8) % (c.L + 1)); break;
    }
  }
  std::sort(cuts.begin(), cuts.end());
  if (n > 2) cuts[1] = cuts[0];  // an empty sequence
  for (int s = 0; s + 1 < n; ++s) cu[s + 1] = cuts[s];
  cu[n] = c.L;
  return cu;
}

// v += a case of the default settings named `name`, then changed by f(case).
template <class C, class F>
static inline void add_case(std::vector<C>& v, const std::string& name, F f) {
  C c;
  c.name = name;
  f(c);
  v.push_back(c);
}

// The properties of the current device.
static inline cudaDeviceProp device_properties() {
  int dev;
  cudaDeviceProp prop;
  CK(cudaGetDevice(&dev));
  CK(cudaGetDeviceProperties(&prop, dev));
  return prop;
}

// A check case's inputs, drawn from its seed: on the host in their strided layouts (every gap
// poisoned with NaN, so that reading one shows up in the outputs) and uploaded, and as float64
// values in dense layouts for the reference. With `grads` (the backward harness) also dy, of dtype
// `dyt`, and d_final_states: each drawn right after x and z at its element, and after the initial
// state at its element.
struct CaseInputs {
  const int b, L, H, P, G, N, pad;
  const int64_t xhs, xss, xbs;  // strides (elements) of x, z, y, dy and their gradients
  const int64_t Bgs, Bss, Bbs;  // of B and C
  const int64_t dss, dbs;       // of dt
  const int64_t sbs;            // of seq_idx
  const size_t xel, Bel, del;   // elements, gaps included, of x, B and dt
  const size_t sel;             // of a state tensor (b, h, p, n)
  Tensor X, Z, DY, Bt, Ct, DT, Av, Dv, bias, init, dfin, seqi;
  std::vector<double> x, z, dy, Bv, Cv, dt, A, D, bs, h0, dfinal;
  std::vector<int> sq;

  CaseInputs(const CaseBase& c, uint64_t seed, bool grads, SsdDtype dyt)
      : b(c.b), L(c.L), H(c.h), P(c.p), G(c.g), N(c.n), pad(c.pad),
        xhs(P), xss((int64_t)H * P + pad), xbs((int64_t)L * xss + pad),
        Bgs(N), Bss((int64_t)G * N + pad), Bbs((int64_t)L * Bss + pad),
        dss(H + pad), dbs((int64_t)L * dss + pad), sbs(L + pad),
        xel((size_t)b * xbs), Bel((size_t)b * Bbs), del((size_t)b * dbs), sel((size_t)b * H * P * N),
        x((size_t)b * L * H * P), z(x.size()), dy(grads ? x.size() : 0), Bv((size_t)b * L * G * N), Cv(Bv.size()),
        dt((size_t)b * L * H), A(H), D((size_t)H * P), bs(H), h0(sel), dfinal(grads ? sel : 0), sq((size_t)b * L, 0) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd;
    std::uniform_real_distribution<float> ud(0.f, 1.f);
    X.alloc_poisoned(c.xt, xel);
    Z.alloc_poisoned(c.zt, xel);
    if (grads) DY.alloc_poisoned(dyt, xel);
    Bt.alloc_poisoned(c.Bt, Bel);
    Ct.alloc_poisoned(c.Ct, Bel);
    DT.alloc_poisoned(c.dtt, del);
    Av.alloc(H * 4);
    Dv.alloc((size_t)H * P * 4);
    bias.alloc(H * 4);
    init.alloc(sel * 4);
    if (grads) dfin.alloc(sel * 4);
    seqi.alloc((size_t)b * sbs * 4);
    for (int bb = 0; bb < b; ++bb)
      for (int t = 0; t < L; ++t) {
        for (int hh = 0; hh < H; ++hh) {
          for (int pp = 0; pp < P; ++pp) {
            const size_t o = (size_t)bb * xbs + t * xss + hh * xhs + pp;
            const size_t li = (((size_t)bb * L + t) * H + hh) * P + pp;
            x[li] = put(X.h.data(), c.xt, o, nd(rng));
            z[li] = put(Z.h.data(), c.zt, o, nd(rng));
            if (grads) dy[li] = put(DY.h.data(), dyt, o, nd(rng));
          }
          float raw = nd(rng) + c.dtshift;
          if (!c.softplus) raw = (float)softplus_d(raw);
          dt[((size_t)bb * L + t) * H + hh] = put(DT.h.data(), c.dtt, (size_t)bb * dbs + t * dss + hh, raw);
        }
        for (int gg = 0; gg < G; ++gg)
          for (int nn = 0; nn < N; ++nn) {
            const size_t o = (size_t)bb * Bbs + t * Bss + gg * Bgs + nn;
            const size_t li = (((size_t)bb * L + t) * G + gg) * N + nn;
            Bv[li] = put(Bt.h.data(), c.Bt, o, nd(rng));
            Cv[li] = put(Ct.h.data(), c.Ct, o, nd(rng));
          }
      }
    for (int hh = 0; hh < H; ++hh) {
      A[hh] = put(Av.h.data(), SSD_FLOAT32, hh, -std::exp(ud(rng) * std::log(16.f)));
      bs[hh] = put(bias.h.data(), SSD_FLOAT32, hh, c.bias ? (ud(rng) - 0.5f) : 0.f);
    }
    for (size_t i = 0; i < D.size(); ++i) D[i] = put(Dv.h.data(), SSD_FLOAT32, i, nd(rng));
    for (size_t i = 0; i < sel; ++i) {
      h0[i] = put(init.h.data(), SSD_FLOAT32, i, c.init ? nd(rng) : 0.f);
      if (grads) dfinal[i] = put(dfin.h.data(), SSD_FLOAT32, i, c.fin ? nd(rng) : 0.f);
    }
    if (c.seq) {
      for (int bb = 0; bb < b; ++bb) {
        int cur = (c.seq == 3) ? 2 : 0;
        for (int t = 0; t < L; ++t) {
          bool brk = false;
          if (t > 0) {
            if (c.seq == 2) brk = (t % c.Q == 0) && (ud(rng) < 0.6f);
            else brk = ud(rng) < 3.0f / std::max(c.Q, 8) || (t % c.Q == 0 && ud(rng) < 0.3f);
          }
          if (brk) cur += (ud(rng) < 0.3f) ? 2 : 1;
          sq[(size_t)bb * L + t] = cur;
          static_cast<int32_t*>((void*)seqi.h.data())[(size_t)bb * sbs + t] = cur;
        }
      }
    }
    for (Tensor* t : {&X, &Z, &DY, &Bt, &Ct, &DT, &Av, &Dv, &bias, &init, &dfin, &seqi}) t->upload();
  }

  // The forward block's sizes, inputs and options (its outputs are the harness's).
  void set_inputs(const CaseBase& c, SsdParams* p) const {
    SsdParams& prm = *p;
    prm.batch = b; prm.seqlen = L; prm.nheads = H; prm.headdim = P; prm.ngroups = G; prm.dstate = N;
    prm.chunk_size = c.Q;
    prm.x = X.d; prm.x_type = c.xt; prm.x_batch_stride = xbs; prm.x_seq_stride = xss; prm.x_head_stride = xhs;
    prm.dt = DT.d; prm.dt_type = c.dtt; prm.dt_batch_stride = dbs; prm.dt_seq_stride = dss;
    prm.B = Bt.d; prm.B_type = c.Bt; prm.B_batch_stride = Bbs; prm.B_seq_stride = Bss; prm.B_group_stride = Bgs;
    prm.C = Ct.d; prm.C_type = c.Ct; prm.C_batch_stride = Bbs; prm.C_seq_stride = Bss; prm.C_group_stride = Bgs;
    prm.A = static_cast<const float*>(Av.d);
    prm.D = c.Dmode ? static_cast<const float*>(Dv.d) : nullptr;
    prm.D_per_channel = c.Dmode == 2;
    if (c.z) { prm.z = Z.d; prm.z_type = c.zt; prm.z_batch_stride = xbs; prm.z_seq_stride = xss; prm.z_head_stride = xhs; }
    prm.dt_bias = c.bias ? static_cast<const float*>(bias.d) : nullptr;
    prm.initial_states = c.init ? static_cast<const float*>(init.d) : nullptr;
    prm.seq_idx = c.seq ? static_cast<const int32_t*>(seqi.d) : nullptr;
    prm.seq_idx_batch_stride = sbs;
    prm.dt_softplus = c.softplus;
    prm.dt_min = c.lo; prm.dt_max = c.hi;
  }
};

// =============================================================================================
// The benchmarks' inputs.
// =============================================================================================
__device__ __forceinline__ uint32_t hash32(uint64_t x) {
  x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL; x ^= x >> 33;
  return (uint32_t)x;
}
__device__ __forceinline__ void store_as(void* dst, SsdDtype t, size_t i, float v) {
  ssd::visit_dtype(t, [&](auto d) {
    using D = decltype(d);
    static_cast<typename D::Device*>(dst)[i] = D::dev_from_float(v);
  });
}
__global__ void k_fill_normal(void* dst, SsdDtype t, size_t n, uint64_t seed, float shift) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    const float u1 = (hash32(seed * 0x9E3779B97F4A7C15ULL + 2 * i) + 1.f) * 2.3283064e-10f;
    const float u2 = hash32(seed * 0x9E3779B97F4A7C15ULL + 2 * i + 1) * 2.3283064e-10f;
    const float v = sqrtf(-2.f * logf(u1)) * cospif(2.f * u2) + shift;
    store_as(dst, t, i, v);
  }
}
// n normal values (+ shift) of dtype t, from a seed.
static inline void fill(void* d, SsdDtype t, size_t n, uint64_t seed, float shift = 0.f) {
  k_fill_normal<<<1024, 256>>>(d, t, n, seed, shift);
  CK(cudaGetLastError());
}

// Count non-finite bf16 values and return the rms of the finite ones.
static inline double bf16_stats(const void* d, size_t n, size_t* bad) {
  std::vector<uint16_t> hy(n);
  CK(cudaMemcpy(hy.data(), d, n * 2, cudaMemcpyDeviceToHost));
  double s = 0;
  *bad = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t bits = (uint32_t)hy[i] << 16;
    float f;
    memcpy(&f, &bits, 4);
    if (!std::isfinite(f)) ++*bad;
    else s += (double)f * f;
  }
  return std::sqrt(s / std::max<size_t>(n, 1));
}

// The milliseconds of run() on the default stream, between events e0 and e1.
template <class Run>
static inline float time_ms(cudaEvent_t e0, cudaEvent_t e1, Run run) {
  CK(cudaEventRecord(e0));
  run();
  CK(cudaEventRecord(e1));
  CK(cudaEventSynchronize(e1));
  float ms;
  CK(cudaEventElapsedTime(&ms, e0, e1));
  return ms;
}

static inline double median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The benchmark configurations (lib/configs.ts: G1-G4), with the Triton forward's time on an H200.
struct BenchCfg { const char* name; int b, L, h, p, g, n; double triton_ms; };
static const BenchCfg kBenchCfgs[] = {
    {"G1", 4, 4096, 32, 64, 1, 128, 0.294},
    {"G2", 1, 16384, 32, 64, 1, 128, 0.309},
    {"G3", 8, 2048, 80, 64, 1, 128, 0.692},
    {"G4", 2, 8192, 24, 64, 8, 64, 0.230},
};
constexpr int kBenchChunk = 256;

// A, D (per head) and dt_bias of a configuration with h heads, on the device (seeded).
struct HeadParams {
  float *A, *D, *bias;
  void free() const {
    for (float* q : {A, D, bias}) cudaFree(q);
  }
};
static inline HeadParams head_params(int h) {
  std::vector<float> hA(h), hD(h), hb(h);
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<float> ud(0.f, 1.f);
  for (int i = 0; i < h; ++i) { hA[i] = -std::exp(ud(rng) * std::log(16.f)); hD[i] = ud(rng) * 2 - 1; hb[i] = ud(rng) - 0.5f; }
  HeadParams hp;
  CK(cudaMalloc(&hp.A, h * 4)); CK(cudaMalloc(&hp.D, h * 4)); CK(cudaMalloc(&hp.bias, h * 4));
  CK(cudaMemcpy(hp.A, hA.data(), h * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(hp.D, hD.data(), h * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(hp.bias, hb.data(), h * 4, cudaMemcpyHostToDevice));
  return hp;
}

// The benchmarks' forward block: bf16 x/z/y/B/C, fp32 dt, D per head, dt_bias, dt_softplus, chunk
// kBenchChunk, dense strides, no initial/final states. The x, z, B, C and dt pointers are the caller's.
static inline SsdParams bench_params(const BenchCfg& c, void* y, const HeadParams& hp) {
  SsdParams p;
  memset(&p, 0, sizeof(p));
  p.batch = c.b; p.seqlen = c.L; p.nheads = c.h; p.headdim = c.p; p.ngroups = c.g; p.dstate = c.n; p.chunk_size = kBenchChunk;
  const int64_t xs = (int64_t)c.h * c.p, Bs = (int64_t)c.g * c.n;
  p.x_type = SSD_BFLOAT16; p.x_batch_stride = c.L * xs; p.x_seq_stride = xs; p.x_head_stride = c.p;
  p.z_type = SSD_BFLOAT16; p.z_batch_stride = c.L * xs; p.z_seq_stride = xs; p.z_head_stride = c.p;
  p.y = y; p.y_type = SSD_BFLOAT16; p.y_batch_stride = c.L * xs; p.y_seq_stride = xs; p.y_head_stride = c.p;
  p.B_type = p.C_type = SSD_BFLOAT16;
  p.B_batch_stride = p.C_batch_stride = c.L * Bs; p.B_seq_stride = p.C_seq_stride = Bs; p.B_group_stride = p.C_group_stride = c.n;
  p.dt_type = SSD_FLOAT32; p.dt_batch_stride = (int64_t)c.L * c.h; p.dt_seq_stride = c.h;
  p.A = hp.A; p.D = hp.D; p.D_per_channel = 0; p.dt_bias = hp.bias; p.dt_softplus = 1; p.dt_min = 0.f; p.dt_max = INFINITY;
  return p;
}
