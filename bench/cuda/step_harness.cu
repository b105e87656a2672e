// The CUDA decode step alone (csrc/cuda/step/step.cu): a check against a float64 host recurrence,
// then CUDA-event timings at batch 1, 16, 64, 256 (h 32, p 64, n 128, fp32 state and inputs, D, z,
// dtBias, softplus), next to an in-place read-modify-write of the same bytes (the ceiling).
// Build and run: bash bench/cuda/run_step.sh
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/params.h"
#include "cuda/backend.h"
#include "ck.h"


namespace {

constexpr int H = 32, P = 64, N = 128;

__global__ void k_rmw(float4* s, int64_t n4, float c) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n4) {
    float4 v = s[i];
    v.x *= c; v.y *= c; v.z *= c; v.w *= c;
    s[i] = v;
  }
}

struct Case {
  int batch, rows;
  std::vector<float> state, x, dt, B, C, A, D, z, bias;
  std::vector<int> idx;  // empty: no stateIndices
};

Case make_case(int batch, bool indices, std::mt19937& rng) {
  std::normal_distribution<float> nd;
  Case c;
  c.batch = batch;
  c.rows = indices ? batch + 3 : batch;
  auto fill = [&](std::vector<float>& v, size_t n, float scale) {
    v.resize(n);
    for (auto& e : v) e = scale * nd(rng);
  };
  fill(c.state, (size_t)c.rows * H * P * N, 1.f);
  fill(c.x, (size_t)batch * H * P, 1.f);
  fill(c.dt, (size_t)batch * H, 1.f);
  for (auto& e : c.dt) e -= 4.f;
  fill(c.B, (size_t)batch * N, 1.f);
  fill(c.C, (size_t)batch * N, 1.f);
  fill(c.A, H, 1.f);
  for (auto& e : c.A) e = -std::exp(e);
  fill(c.D, H, 1.f);
  fill(c.z, (size_t)batch * H * P, 1.f);
  fill(c.bias, H, 0.5f);
  if (indices) {
    for (int i = 0; i < batch; ++i) c.idx.push_back(c.rows - 1 - i);
    if (batch > 1) c.idx[1] = -1;  // padding
  }
  return c;
}

struct Dev {
  std::vector<void*> ptrs;
  template <class T>
  T* up(const std::vector<T>& v) {
    void* p = nullptr;
    CK(cudaMalloc(&p, std::max<size_t>(v.size(), 1) * sizeof(T)));
    if (!v.empty()) CK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    ptrs.push_back(p);
    return static_cast<T*>(p);
  }
  ~Dev() {
    for (void* p : ptrs) cudaFree(p);
  }
};

SsdStepParams params(const Case& c, Dev& d, float** state, float** y) {
  SsdStepParams p{};
  p.batch = c.batch; p.nheads = H; p.headdim = P; p.ngroups = 1; p.dstate = N; p.state_rows = c.rows;
  *state = d.up(c.state);
  p.state = *state; p.state_type = SSD_FLOAT32;
  p.state_indices = c.idx.empty() ? nullptr : d.up(c.idx);
  p.x = d.up(c.x); p.x_type = SSD_FLOAT32; p.x_batch_stride = H * P; p.x_head_stride = P;
  p.dt = d.up(c.dt); p.dt_type = SSD_FLOAT32; p.dt_batch_stride = H;
  p.B = d.up(c.B); p.B_type = SSD_FLOAT32; p.B_batch_stride = N; p.B_group_stride = N;
  p.C = d.up(c.C); p.C_type = SSD_FLOAT32; p.C_batch_stride = N; p.C_group_stride = N;
  p.A = d.up(c.A); p.D = d.up(c.D); p.D_per_channel = 0;
  p.z = d.up(c.z); p.z_type = SSD_FLOAT32; p.z_batch_stride = H * P; p.z_head_stride = P;
  p.dt_bias = d.up(c.bias); p.dt_softplus = 1; p.dt_min = 0.f; p.dt_max = INFINITY;
  std::vector<float> yz((size_t)c.batch * H * P, 0.f);
  *y = d.up(yz);
  p.y = *y; p.y_type = SSD_FLOAT32; p.y_batch_stride = H * P; p.y_head_stride = P;
  return p;
}

// One case on the device: its inputs uploaded, its parameters, and 64 bytes of workspace.
struct Setup {
  Case c;
  Dev d;
  float *ds = nullptr, *dy = nullptr;  // the state and y
  SsdStepParams p;
  void* ws = nullptr;
  Setup(int batch, bool indices, std::mt19937& rng) : c(make_case(batch, indices, rng)) {
    p = params(c, d, &ds, &dy);
    CK(cudaMalloc(&ws, 64));
    d.ptrs.push_back(ws);
  }
};

// Float64 recurrence on the host; prints the relative L2 errors of y and of the state.
bool check(int batch, bool indices, std::mt19937& rng) {
  Setup su(batch, indices, rng);
  const Case& c = su.c;
  const SsdStepParams& p = su.p;
  float *ds = su.ds, *dy = su.dy;
  void* ws = su.ws;
  int verdict[2] = {-7, -7};
  std::string err;
  if (ssd::check_step_params(p, &err) != SSD_OK || !ssd::cuda::supports_step(p, &err)) {
    std::printf("check batch %d: parameters refused: %s\n", batch, err.c_str());
    return false;
  }
  SsdStatus st = ssd::cuda::step(p, nullptr, ws, indices ? verdict : nullptr, &err);
  CK(cudaDeviceSynchronize());
  if (st != SSD_OK || (indices && verdict[0] != 0)) {
    std::printf("check batch %d: status %d verdict %d %s\n", batch, (int)st, verdict[0], err.c_str());
    return false;
  }
  std::vector<float> y((size_t)batch * H * P), s(c.state.size());
  CK(cudaMemcpy(y.data(), dy, y.size() * 4, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(s.data(), ds, s.size() * 4, cudaMemcpyDeviceToHost));
  std::vector<double> want_s(c.state.begin(), c.state.end());
  double ey = 0, ny = 0, es = 0, ns = 0;
  for (int b = 0; b < batch; ++b) {
    const int row = indices ? c.idx[b] : b;
    for (int h = 0; h < H; ++h) {
      double dd = (double)c.dt[b * H + h] + c.bias[h];
      dd = dd > 20 ? dd : std::log1p(std::exp(dd));
      const double decay = std::exp(dd * c.A[h]);
      for (int i = 0; i < P; ++i) {
        const size_t yi = ((size_t)b * H + h) * P + i;
        double acc = 0;
        if (row >= 0) {
          for (int j = 0; j < N; ++j) {
            double& v = want_s[(((size_t)row * H + h) * P + i) * N + j];
            v = decay * v + dd * c.x[yi] * c.B[b * N + j];
            acc += v * c.C[b * N + j];
          }
          acc += (double)c.D[h] * c.x[yi];
          acc *= c.z[yi] / (1 + std::exp(-(double)c.z[yi]));
        }
        ey += (y[yi] - acc) * (y[yi] - acc);
        ny += acc * acc;
      }
    }
  }
  for (size_t i = 0; i < s.size(); ++i) {
    es += (s[i] - want_s[i]) * (s[i] - want_s[i]);
    ns += want_s[i] * want_s[i];
  }
  const double ry = std::sqrt(ey / ny), rs = std::sqrt(es / ns);
  const bool ok = std::isfinite(ry) && std::isfinite(rs) && ny > 0 && ns > 0 && ry < 1e-5 && rs < 1e-6;
  std::printf("check batch %3d %-12s rel L2 y %.2e state %.2e  %s\n", batch, indices ? "stateIndices" : "", ry, rs,
              ok ? "ok" : "FAIL");
  return ok;
}

float median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void bench(int batch, bool indices, int runs) {
  std::mt19937 rng(batch);
  Setup su(batch, indices, rng);
  const SsdStepParams& p = su.p;
  float* ds = su.ds;
  void* ws = su.ws;
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  std::vector<float> ms, rmw;
  std::string err;
  const int64_t n4 = (int64_t)batch * H * P * N / 4;
  for (int k = 0; k < runs + 20; ++k) {
    CK(cudaEventRecord(e0));
    if (ssd::cuda::step(p, nullptr, ws, nullptr, &err) != SSD_OK) {
      std::printf("step failed: %s\n", err.c_str());
      std::exit(1);
    }
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float t;
    CK(cudaEventElapsedTime(&t, e0, e1));
    if (k >= 20) ms.push_back(t);
    CK(cudaEventRecord(e0));
    k_rmw<<<(unsigned)((n4 + 255) / 256), 256>>>(reinterpret_cast<float4*>(ds), n4, 0.999f);
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    CK(cudaEventElapsedTime(&t, e0, e1));
    if (k >= 20) rmw.push_back(t);
  }
  const double bytes = 2.0 * batch * H * P * N * 4;
  const double t = median(ms), tr = median(rmw);
  std::printf("bench batch %3d %-12s step %.4f ms %7.1f GB/s (%.0f%% of 4.3 TB/s)   in-place rmw %.4f ms %7.1f GB/s\n",
              batch, indices ? "stateIndices" : "", t, bytes / t / 1e6, 100 * bytes / t / 1e6 / 4300, tr,
              bytes / tr / 1e6);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 200;
  std::mt19937 rng(7);
  bool ok = true;
  for (int b : {1, 3, 17}) {
    ok = check(b, false, rng) && ok;
    ok = check(b, true, rng) && ok;
  }
  for (int b : {1, 16, 64, 256}) bench(b, false, runs);
  for (int b : {64}) bench(b, true, runs);
  std::printf(ok ? "ALL CHECKS PASSED\n" : "CHECKS FAILED\n");
  return ok ? 0 : 1;
}
