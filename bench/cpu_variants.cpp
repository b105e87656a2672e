// bench/cpu_variants.cpp: CPU SSD forward, the shipped token recurrence (csrc/cpu) against a
// straightforward chunked (SSD §2) implementation, both checked against a float64 token recurrence.
//
//   ./cpu_variants            benchmark table for C1 and C2 (median of --runs, default 9)
//   ./cpu_variants --check    correctness suite for ssd::cpu::forward (every option, dtype, ISA,
//                             threads 1 vs 2 vs 3 bitwise equal); exits non-zero on failure
//
// Built by bench/cpu_variants.sh.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/params.h"
#include "../csrc/cpu/cpu_backend.h"

using ssd::cpu::Isa;

// ------------------------------------------------------------------------------------------------
// dtype helpers (independent of the library's)

static float bf16_to_f32(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }
static uint16_t f32_to_bf16(float f) {
  uint32_t u; memcpy(&u, &f, 4);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x40);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
static float f16_to_f32(uint16_t h) {
  const int ex = (h >> 10) & 0x1F, man = h & 0x3FF;
  double v;
  if (ex == 0) v = std::ldexp((double)man, -24);
  else if (ex == 31) v = man ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  else v = std::ldexp((double)(man | 0x400), ex - 25);
  return (float)((h & 0x8000) ? -v : v);
}
static uint16_t f32_to_f16(float f) {  // via exhaustive-free search: round to nearest even using double math
  if (std::isnan(f)) return 0x7E00;
  const uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  double a = std::fabs((double)f);
  if (a >= 65520.0) return sign | 0x7C00;
  // candidate: scale so the half ulp is 1
  int e;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  int ulp_exp = std::max(e - 11, -24);
  double q = std::ldexp(a, -ulp_exp);
  double r = std::nearbyint(q);  // ties to even (default rounding mode)
  double v = std::ldexp(r, ulp_exp);
  // encode v
  if (v == 0) return sign;
  int e2;
  std::frexp(v, &e2);
  if (e2 - 1 < -14) return sign | (uint16_t)std::ldexp(v, 24);
  const int be = e2 - 1 + 15;
  const int man = (int)(std::ldexp(v, -(e2 - 1) + 10)) - 1024;
  return sign | (uint16_t)(be << 10) | (uint16_t)man;
}

static const char* dtname(SsdDtype t) { return t == SSD_FLOAT32 ? "f32" : t == SSD_BFLOAT16 ? "bf16" : "f16"; }

// A tensor stored with a dtype, with the (rounded) values also kept as doubles for the reference.
struct Tensor {
  SsdDtype type = SSD_FLOAT32;
  std::vector<float> f;
  std::vector<uint16_t> h;
  const void* ptr() const { return type == SSD_FLOAT32 ? (const void*)f.data() : (const void*)h.data(); }
  void* ptr() { return type == SSD_FLOAT32 ? (void*)f.data() : (void*)h.data(); }
  void alloc(SsdDtype t, size_t n, float fill) {
    type = t;
    if (t == SSD_FLOAT32) f.assign(n, fill);
    else h.assign(n, t == SSD_BFLOAT16 ? f32_to_bf16(fill) : f32_to_f16(fill));
  }
  void set(size_t i, float v) {
    if (type == SSD_FLOAT32) f[i] = v;
    else if (type == SSD_BFLOAT16) h[i] = f32_to_bf16(v);
    else h[i] = f32_to_f16(v);
  }
  double get(size_t i) const {
    if (type == SSD_FLOAT32) return f[i];
    if (type == SSD_BFLOAT16) return bf16_to_f32(h[i]);
    return f16_to_f32(h[i]);
  }
  size_t size() const { return type == SSD_FLOAT32 ? f.size() : h.size(); }
  bool same_bits(const Tensor& o) const {
    if (type != o.type || size() != o.size()) return false;
    if (type == SSD_FLOAT32) return memcmp(f.data(), o.f.data(), f.size() * 4) == 0;
    return memcmp(h.data(), o.h.data(), h.size() * 2) == 0;
  }
};

// ------------------------------------------------------------------------------------------------
// Problem description and inputs

struct Cfg {
  std::string name;
  int64_t b = 1, L = 64, h = 4, p = 16, g = 1, n = 16;
  SsdDtype xt = SSD_FLOAT32, bct = SSD_FLOAT32, dtt = SSD_FLOAT32, zt = SSD_FLOAT32, yt = SSD_FLOAT32;
  int dmode = 1;  // 0 none, 1 per head, 2 per channel
  bool z = false, bias = false, softplus = true, init = false, fin = true, seq = false, strided = false;
  float dtmin = 0.0f, dtmax = INFINITY;
  int seq_first = 0;   // value of seq_idx at t = 0
  double dt_shift = -4.0;
  bool wide_x = false;  // x magnitudes spread over 10^-9 .. 10^6 (output rounding test)  // raw dt = randn + shift (softplus) or softplus(randn + shift) (no softplus)
  uint64_t seed = 1;
};

struct Problem {
  Cfg c;
  Tensor x, z, dt, B, C, y;
  std::vector<float> A, D, bias, init, fin;
  std::vector<int32_t> seq;
  int64_t xs[3], zs[3], ys[3], dts[2], bs[3], cs[3];  // batch, seq, head/group strides
  size_t ysize = 0;
};

static void make_problem(const Cfg& c, Problem* pr) {
  pr->c = c;
  std::mt19937_64 rng(c.seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  std::uniform_real_distribution<double> ud(0.0, 1.0);
  const int64_t hp = c.strided ? c.p + 3 : c.p, sq = c.strided ? c.h * hp + 5 : c.h * hp, bt = c.L * sq + (c.strided ? 7 : 0);
  pr->xs[0] = bt; pr->xs[1] = sq; pr->xs[2] = hp;
  pr->zs[0] = bt; pr->zs[1] = sq; pr->zs[2] = hp;
  const int64_t yhp = c.strided ? c.p + 1 : c.p, ysq = c.strided ? c.h * yhp + 2 : c.h * yhp;
  pr->ys[0] = c.L * ysq + (c.strided ? 3 : 0); pr->ys[1] = ysq; pr->ys[2] = yhp;
  const int64_t gn = c.strided ? c.n + 1 : c.n, gsq = c.strided ? c.g * gn + 2 : c.g * gn;
  pr->bs[0] = c.L * gsq; pr->bs[1] = gsq; pr->bs[2] = gn;
  pr->cs[0] = c.L * gsq + (c.strided ? 1 : 0); pr->cs[1] = gsq; pr->cs[2] = gn;
  const int64_t dsq = c.strided ? c.h + 2 : c.h;
  pr->dts[0] = c.L * dsq; pr->dts[1] = dsq;

  auto fill = [&](Tensor& t, SsdDtype ty, const int64_t* s, int64_t inner_groups, int64_t inner) {
    t.alloc(ty, (size_t)(c.b * s[0] + 64), 0.0f);
    for (int64_t b = 0; b < c.b; ++b)
      for (int64_t l = 0; l < c.L; ++l)
        for (int64_t k = 0; k < inner_groups; ++k)
          for (int64_t i = 0; i < inner; ++i) t.set((size_t)(b * s[0] + l * s[1] + k * s[2] + i), (float)nd(rng));
  };
  fill(pr->x, c.xt, pr->xs, c.h, c.p);
  if (c.wide_x)
    for (size_t i = 0; i < pr->x.size(); ++i) pr->x.set(i, (float)(pr->x.get(i) * std::pow(10.0, -9.0 + 15.0 * ud(rng))));
  if (c.z) fill(pr->z, c.zt, pr->zs, c.h, c.p);
  fill(pr->B, c.bct, pr->bs, c.g, c.n);
  fill(pr->C, c.bct, pr->cs, c.g, c.n);
  pr->dt.alloc(c.dtt, (size_t)(c.b * pr->dts[0] + 8), 0.0f);
  for (int64_t b = 0; b < c.b; ++b)
    for (int64_t l = 0; l < c.L; ++l)
      for (int64_t k = 0; k < c.h; ++k) {
        double u = nd(rng) + c.dt_shift;
        double v = c.softplus ? u : (u > 20 ? u : std::log1p(std::exp(u)));
        pr->dt.set((size_t)(b * pr->dts[0] + l * pr->dts[1] + k), (float)v);
      }
  pr->A.resize(c.h);
  for (auto& a : pr->A) a = (float)-std::exp(ud(rng) * std::log(16.0));
  if (c.dmode == 1) { pr->D.resize(c.h); for (auto& d : pr->D) d = (float)nd(rng); }
  if (c.dmode == 2) { pr->D.resize(c.h * c.p); for (auto& d : pr->D) d = (float)nd(rng); }
  if (c.bias) { pr->bias.resize(c.h); for (auto& v : pr->bias) v = (float)(0.5 * (ud(rng) - 0.5)); }
  if (c.init) { pr->init.resize(c.b * c.h * c.p * c.n); for (auto& v : pr->init) v = (float)(0.5 * nd(rng)); }
  if (c.fin) pr->fin.assign(c.b * c.h * c.p * c.n, NAN);
  if (c.seq) {
    pr->seq.resize(c.b * c.L);
    // changes inside a 32-token block, at block edges (31|32, 63|64) and a first value != 0
    const int64_t cuts[] = {3, 17, 31, 32, 33, 45, 63, 64, 90, 96, 97, 127, 128, 129, 200};
    for (int64_t b = 0; b < c.b; ++b) {
      int32_t s = b == 0 ? c.seq_first : 0;
      for (int64_t l = 0; l < c.L; ++l) {
        for (int64_t cut : cuts)
          if (l == cut + b) s += (cut % 2 == 0) ? 1 : 2;
        pr->seq[b * c.L + l] = s;
      }
    }
  }
  pr->ysize = (size_t)(c.b * pr->ys[0] + 64);
  pr->y.alloc(c.yt, pr->ysize, NAN);  // sentinel: untouched elements stay NaN
}

static SsdParams params_of(Problem& pr) {
  const Cfg& c = pr.c;
  SsdParams p;
  memset(&p, 0, sizeof p);
  p.batch = c.b; p.seqlen = c.L; p.nheads = c.h; p.headdim = c.p; p.ngroups = c.g; p.dstate = c.n;
  p.chunk_size = 256;
  p.x = pr.x.ptr(); p.x_type = c.xt; p.x_batch_stride = pr.xs[0]; p.x_seq_stride = pr.xs[1]; p.x_head_stride = pr.xs[2];
  p.dt = pr.dt.ptr(); p.dt_type = c.dtt; p.dt_batch_stride = pr.dts[0]; p.dt_seq_stride = pr.dts[1];
  p.B = pr.B.ptr(); p.B_type = c.bct; p.B_batch_stride = pr.bs[0]; p.B_seq_stride = pr.bs[1]; p.B_group_stride = pr.bs[2];
  p.C = pr.C.ptr(); p.C_type = c.bct; p.C_batch_stride = pr.cs[0]; p.C_seq_stride = pr.cs[1]; p.C_group_stride = pr.cs[2];
  p.A = pr.A.data();
  p.D = pr.D.empty() ? nullptr : pr.D.data();
  p.D_per_channel = c.dmode == 2;
  if (c.z) { p.z = pr.z.ptr(); p.z_type = c.zt; p.z_batch_stride = pr.zs[0]; p.z_seq_stride = pr.zs[1]; p.z_head_stride = pr.zs[2]; }
  p.dt_bias = pr.bias.empty() ? nullptr : pr.bias.data();
  p.initial_states = pr.init.empty() ? nullptr : pr.init.data();
  p.seq_idx = pr.seq.empty() ? nullptr : pr.seq.data();
  p.seq_idx_batch_stride = c.L;
  p.dt_softplus = c.softplus;
  p.dt_min = c.dtmin; p.dt_max = c.dtmax;
  p.y = pr.y.ptr(); p.y_type = c.yt; p.y_batch_stride = pr.ys[0]; p.y_seq_stride = pr.ys[1]; p.y_head_stride = pr.ys[2];
  p.final_states = pr.fin.empty() ? nullptr : pr.fin.data();
  return p;
}

// float64 token recurrence (design §1), on the stored (rounded) inputs
static void reference(const Problem& pr, std::vector<double>* y, std::vector<double>* fin) {
  const Cfg& c = pr.c;
  y->assign(c.b * c.L * c.h * c.p, 0.0);
  fin->assign(c.b * c.h * c.p * c.n, 0.0);
  const int64_t hpg = c.h / c.g;
  std::vector<double> H(c.p * c.n), xb(c.p);
  for (int64_t b = 0; b < c.b; ++b)
    for (int64_t hh = 0; hh < c.h; ++hh) {
      const int64_t g = hh / hpg;
      for (int64_t i = 0; i < c.p * c.n; ++i) H[i] = pr.init.empty() ? 0.0 : pr.init[(b * c.h + hh) * c.p * c.n + i];
      int32_t prev = 0;
      for (int64_t t = 0; t < c.L; ++t) {
        double u = pr.dt.get(b * pr.dts[0] + t * pr.dts[1] + hh) + (pr.bias.empty() ? 0.0 : (double)pr.bias[hh]);
        if (c.softplus) u = u > 20 ? u : std::log1p(std::exp(u));
        const double d = std::min(std::max(u, (double)c.dtmin), (double)c.dtmax);
        double e = std::exp(d * (double)pr.A[hh]);
        if (!pr.seq.empty()) {
          const int32_t s = pr.seq[b * c.L + t];
          if (s != prev) e = 0.0;
          prev = s;
        }
        const int64_t xo = b * pr.xs[0] + t * pr.xs[1] + hh * pr.xs[2];
        const int64_t bo = b * pr.bs[0] + t * pr.bs[1] + g * pr.bs[2];
        const int64_t co = b * pr.cs[0] + t * pr.cs[1] + g * pr.cs[2];
        for (int64_t q = 0; q < c.p; ++q) xb[q] = pr.x.get(xo + q);
        for (int64_t q = 0; q < c.p; ++q) {
          double acc = 0.0;
          for (int64_t k = 0; k < c.n; ++k) {
            double& hv = H[q * c.n + k];
            hv = e * hv + d * xb[q] * pr.B.get(bo + k);
            acc += hv * pr.C.get(co + k);
          }
          if (c.dmode == 1) acc += pr.D[hh] * xb[q];
          if (c.dmode == 2) acc += pr.D[hh * c.p + q] * xb[q];
          if (c.z) {
            const double zv = pr.z.get(b * pr.zs[0] + t * pr.zs[1] + hh * pr.zs[2] + q);
            acc *= zv / (1.0 + std::exp(-zv));
          }
          (*y)[((b * c.L + t) * c.h + hh) * c.p + q] = acc;
        }
      }
      for (int64_t i = 0; i < c.p * c.n; ++i) (*fin)[(b * c.h + hh) * c.p * c.n + i] = H[i];
    }
}

struct Err { double rel = 0; bool finite = true; bool sentinel_ok = true; };

static Err compare_y(const Problem& pr, const std::vector<double>& ref) {
  const Cfg& c = pr.c;
  double num = 0, den = 0;
  Err e;
  std::vector<char> written(pr.ysize, 0);
  for (int64_t b = 0; b < c.b; ++b)
    for (int64_t t = 0; t < c.L; ++t)
      for (int64_t hh = 0; hh < c.h; ++hh)
        for (int64_t q = 0; q < c.p; ++q) {
          const size_t i = (size_t)(b * pr.ys[0] + t * pr.ys[1] + hh * pr.ys[2] + q);
          written[i] = 1;
          const double v = pr.y.get(i), r = ref[((b * c.L + t) * c.h + hh) * c.p + q];
          if (!std::isfinite(v)) e.finite = false;
          num += (v - r) * (v - r);
          den += r * r;
        }
  for (size_t i = 0; i < pr.ysize; ++i)
    if (!written[i] && !std::isnan(pr.y.get(i))) e.sentinel_ok = false;
  e.rel = std::sqrt(num / std::max(den, 1e-300));
  return e;
}

static double rel_l2(const std::vector<float>& a, const std::vector<double>& r) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (a[i] - r[i]) * (a[i] - r[i]);
    den += r[i] * r[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

// ------------------------------------------------------------------------------------------------
// --check

static std::vector<Isa> isas_to_test() {
  std::vector<Isa> v;
  const Isa best = ssd::cpu::best_isa();
  for (int i = 0; i <= (int)best; ++i) v.push_back((Isa)i);
  return v;
}

static int run_check(bool verbose) {
  std::vector<Cfg> cases;
  auto add = [&](Cfg c, const std::string& name) { c.name = name; c.seed = cases.size() + 11; cases.push_back(c); };
  Cfg base;
  // options one at a time and all together
  add(base, "base (D per head, softplus, final)");
  { Cfg c = base; c.dmode = 0; add(c, "no D"); }
  { Cfg c = base; c.dmode = 2; add(c, "D per channel"); }
  { Cfg c = base; c.z = true; add(c, "z gate"); }
  { Cfg c = base; c.bias = true; add(c, "dt_bias"); }
  { Cfg c = base; c.softplus = false; add(c, "no softplus"); }
  { Cfg c = base; c.softplus = true; c.dt_shift = 0.0; c.dtmin = 0.3f; c.dtmax = 1.2f; add(c, "dt limits clamp both sides"); }
  { Cfg c = base; c.dtmin = 0.02f; c.dtmax = 0.05f; add(c, "dt limits tight"); }
  { Cfg c = base; c.init = true; add(c, "initial_states"); }
  { Cfg c = base; c.fin = false; add(c, "no final_states"); }
  { Cfg c = base; c.init = true; c.seq = true; c.L = 230; c.b = 2; add(c, "seq_idx (inside/edge changes) + init"); }
  { Cfg c = base; c.init = true; c.seq = true; c.seq_first = 3; c.L = 100; add(c, "seq_idx first value != 0 drops init"); }
  { Cfg c = base; c.dt_shift = 60.0; c.bias = true; add(c, "huge dt: exp underflow"); }
  { Cfg c = base; c.softplus = false; c.dt_shift = 3.0; c.init = true; add(c, "large dt, no softplus, init"); }
  { Cfg c = base; c.dt_shift = -30.0; add(c, "tiny dt (softplus underflow)"); }
  { Cfg c = base; c.z = true; c.bias = true; c.dmode = 2; c.init = true; c.seq = true; c.L = 150; c.b = 2; c.g = 2;
    c.h = 4; c.strided = true; c.dtmin = 0.001f; c.dtmax = 0.1f; add(c, "everything, strided"); }
  // sizes
  for (int64_t L : {1, 2, 31, 32, 33, 63, 64, 65, 97, 130}) { Cfg c = base; c.L = L; c.init = true; add(c, "seqlen " + std::to_string(L)); }
  for (int64_t p : {1, 5, 17, 64, 80}) { Cfg c = base; c.p = p; c.z = true; c.dmode = 2; c.strided = true; add(c, "headdim " + std::to_string(p)); }
  for (int64_t n : {1, 7, 16, 128, 130}) { Cfg c = base; c.n = n; c.init = true; add(c, "dstate " + std::to_string(n)); }
  { Cfg c = base; c.g = 4; c.h = 4; add(c, "ngroups = nheads"); }
  { Cfg c = base; c.h = 40; c.g = 4; c.p = 64; c.n = 128; c.L = 70; c.seq = true; c.init = true; add(c, "40 heads x (64,128): several head runs"); }
  { Cfg c = base; c.g = 2; c.h = 6; c.b = 2; add(c, "ngroups 2, batch 2"); }
  { Cfg c = base; c.p = 64; c.n = 128; c.L = 300; c.h = 3; c.init = true; c.z = true; c.bias = true; add(c, "C1-like 300 tokens"); }
  // dtypes (inputs rounded, reference on the rounded values)
  const SsdDtype dts[] = {SSD_FLOAT32, SSD_BFLOAT16, SSD_FLOAT16};
  for (SsdDtype in : dts)
    for (SsdDtype out : dts) {
      Cfg c = base; c.xt = c.bct = c.dtt = c.zt = in; c.yt = out; c.z = true; c.p = 20; c.n = 24; c.L = 70; c.init = true;
      c.strided = true;
      add(c, std::string("dtypes in ") + dtname(in) + " out " + dtname(out));
    }
  { Cfg c = base; c.xt = SSD_BFLOAT16; c.bct = SSD_FLOAT16; c.dtt = SSD_FLOAT32; c.zt = SSD_BFLOAT16; c.yt = SSD_FLOAT16; c.z = true; add(c, "mixed dtypes"); }

  int failures = 0, runs = 0;
  for (const Cfg& c : cases) {
    Problem pr;
    make_problem(c, &pr);
    std::vector<double> ry, rfin;
    reference(pr, &ry, &rfin);
    const double tol = c.yt == SSD_FLOAT32 ? 1e-5 : c.yt == SSD_BFLOAT16 ? 6e-3 : 1.5e-3;
    std::string line;
    bool ok = true;
    for (Isa isa : isas_to_test()) {
      setenv("SSD_KERNELS_CPU_ISA", ssd::cpu::isa_name(isa), 1);
      Tensor y1;
      std::vector<float> f1;
      for (int threads : {1, 2, 3}) {
        pr.y.alloc(c.yt, pr.ysize, NAN);
        if (!pr.fin.empty()) pr.fin.assign(pr.fin.size(), NAN);
        SsdParams p = params_of(pr);
        std::string err;
        const SsdStatus st = ssd::cpu::forward(p, threads, &err);
        ++runs;
        if (st != SSD_OK) { ok = false; line += " status " + std::to_string(st) + " " + err; continue; }
        if (threads == 1) {
          y1 = pr.y; f1 = pr.fin;
          const Err e = compare_y(pr, ry);
          const double ef = pr.fin.empty() ? 0.0 : rel_l2(pr.fin, rfin);
          char buf[160];
          snprintf(buf, sizeof buf, " %s y %.1e fs %.1e", ssd::cpu::isa_name(isa), e.rel, ef);
          line += buf;
          if (!(e.rel <= tol) || !(ef <= 1e-5) || !e.finite || !e.sentinel_ok) {
            ok = false;
            if (!e.finite) line += " NONFINITE";
            if (!e.sentinel_ok) line += " WROTE-OUTSIDE-Y";
            line += " FAIL";
          }
        } else {
          const bool same = pr.y.same_bits(y1) &&
                            (pr.fin.empty() || memcmp(pr.fin.data(), f1.data(), f1.size() * 4) == 0);
          if (!same) { ok = false; line += " threads" + std::to_string(threads) + "!=threads1"; }
        }
      }
    }
    if (!ok) ++failures;
    if (verbose || !ok) printf("%-5s %-42s%s\n", ok ? "ok" : "FAIL", c.name.c_str(), line.c_str());
  }
  unsetenv("SSD_KERNELS_CPU_ISA");

  // bf16 / f16 outputs are the fp32 result rounded to nearest even (incl. f16 subnormals, overflow)
  for (Isa isa : isas_to_test()) {
    setenv("SSD_KERNELS_CPU_ISA", ssd::cpu::isa_name(isa), 1);
    Cfg c = base; c.wide_x = true; c.dmode = 2; c.z = true; c.p = 37; c.L = 80; c.strided = true; c.seed = 99;
    Problem pr; make_problem(c, &pr);
    SsdParams p = params_of(pr);
    ssd::cpu::forward(p, 2, nullptr);
    const Tensor y32 = pr.y;
    bool ok = true;
    long n16sub = 0, n16inf = 0;
    for (SsdDtype yt : {SSD_BFLOAT16, SSD_FLOAT16}) {
      Problem q; Cfg c2 = c; c2.yt = yt; make_problem(c2, &q);
      SsdParams p2 = params_of(q);
      ssd::cpu::forward(p2, 2, nullptr);
      for (int64_t b = 0; b < c.b; ++b)
        for (int64_t t = 0; t < c.L; ++t)
          for (int64_t hh = 0; hh < c.h; ++hh)
            for (int64_t k = 0; k < c.p; ++k) {
              const size_t i = (size_t)(b * q.ys[0] + t * q.ys[1] + hh * q.ys[2] + k);
              const float v = y32.f[i];
              const uint16_t want = yt == SSD_BFLOAT16 ? f32_to_bf16(v) : f32_to_f16(v);
              if (q.y.h[i] != want) ok = false;
              if (yt == SSD_FLOAT16 && (want & 0x7C00) == 0 && (want & 0x3FF)) ++n16sub;
              if (yt == SSD_FLOAT16 && (want & 0x7FFF) == 0x7C00) ++n16inf;
            }
    }
    if (!ok || n16sub == 0 || n16inf == 0) ++failures;
    printf("%-5s %-42s %s (%ld f16 subnormals, %ld f16 overflows)\n", ok ? "ok" : "FAIL",
           (std::string("bf16/f16 y == RNE(f32 y), ") + ssd::cpu::isa_name(isa)).c_str(), ok ? "bit exact" : "MISMATCH",
           n16sub, n16inf);
  }
  unsetenv("SSD_KERNELS_CPU_ISA");

  // argument errors are caught by the parameter contract (core/params.h), which every entry calls
  {
    Cfg c = base; Problem pr; make_problem(c, &pr);
    SsdParams p = params_of(pr);
    p.ngroups = 3;
    std::string err;
    const SsdStatus st = ssd::check_params(p, &err);
    const bool ok = st == SSD_ERR_INVALID_ARGUMENT && !err.empty();
    if (!ok) ++failures;
    printf("%-5s %-42s status %d \"%s\"\n", ok ? "ok" : "FAIL", "invalid ngroups rejected", (int)st, err.c_str());
    p = params_of(pr); p.x = nullptr;
    const SsdStatus st2 = ssd::check_params(p, &err);
    if (st2 != SSD_ERR_INVALID_ARGUMENT) ++failures;
    printf("%-5s %-42s status %d\n", st2 == SSD_ERR_INVALID_ARGUMENT ? "ok" : "FAIL", "null x rejected", (int)st2);
  }
  // concurrent calls from several threads share the pool safely and give the same bits
  {
    Cfg c = base; c.L = 500; c.h = 8; c.p = 64; c.n = 64; Problem pr0; make_problem(c, &pr0);
    SsdParams p0 = params_of(pr0);
    ssd::cpu::forward(p0, 1, nullptr);
    std::vector<Problem> prs(4);
    std::vector<std::thread> th;
    std::vector<int> good(4, 0);
    for (int i = 0; i < 4; ++i) {
      make_problem(c, &prs[i]);
      th.emplace_back([&, i] {
        bool g = true;
        for (int r = 0; r < 5; ++r) {
          SsdParams p = params_of(prs[i]);
          if (ssd::cpu::forward(p, 2, nullptr) != SSD_OK) g = false;
          if (!prs[i].y.same_bits(pr0.y)) g = false;
        }
        good[i] = g;
      });
    }
    for (auto& t : th) t.join();
    const bool ok = good[0] && good[1] && good[2] && good[3];
    if (!ok) ++failures;
    printf("%-5s %-42s\n", ok ? "ok" : "FAIL", "4 concurrent callers x 5 calls, threads=2");
  }
  printf("%zu cases, %d forward calls, %d failures (ISAs tested up to %s)\n", cases.size(), runs, failures,
         ssd::cpu::isa_name(ssd::cpu::best_isa()));
  return failures ? 1 : 0;
}

// ------------------------------------------------------------------------------------------------
// Chunked (SSD §2) fp32 implementation for the benchmark: fp32 contiguous inputs, dt_softplus,
// dt_bias, D per head, initial/final states; no z, no seq_idx. Matmul-shaped loops over a
// compile-time headdim so that the accumulators stay in vector registers.

static inline float cephes_expf(float x) {  // vectorisable exp, ~1 ulp, 0 below -87.3
  const float xc = std::min(std::max(x, -87.33654475f), 88.0f);
  const float fx = std::nearbyint(xc * 1.44269504088896341f);
  float r = xc - fx * 0.693359375f;
  r = r + fx * 2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r * r + r + 1.0f;
  int32_t e = ((int32_t)fx + 127) << 23;
  float s; memcpy(&s, &e, 4);
  return x < -87.33654475f ? 0.0f : y * s;
}

// out[r][0..P) (+)= sum_{k < kend(r)} coef[r * ldr + k * ldk] * V[k][0..P), rows in blocks of RB
template <int P, int RB>
static void gemm_rows(float* __restrict out, int nrows, const float* __restrict coef, int ldr, int ldk,
                      const float* __restrict V, int K, bool causal, bool accumulate) {
  for (int r0 = 0; r0 < nrows; r0 += RB) {
    const int rb = std::min(RB, nrows - r0);
    alignas(64) float acc[RB][P];
    for (int r = 0; r < RB; ++r)
      for (int q = 0; q < P; ++q) acc[r][q] = (accumulate && r < rb) ? out[(r0 + r) * P + q] : 0.0f;
    const int kend = causal ? std::min(K, r0 + rb) : K;
    for (int k = 0; k < kend; ++k) {
      float cf[RB];
      for (int r = 0; r < RB; ++r) cf[r] = r < rb ? coef[(r0 + r) * ldr + k * ldk] : 0.0f;
      const float* v = V + k * P;
      for (int r = 0; r < RB; ++r)
        for (int q = 0; q < P; ++q) acc[r][q] += cf[r] * v[q];
    }
    for (int r = 0; r < rb; ++r)
      for (int q = 0; q < P; ++q) out[(r0 + r) * P + q] = acc[r][q];
  }
}

template <int P>
static void chunked_forward(const SsdParams& p, int Q, int threads) {
  const int64_t Bn = p.batch, L = p.seqlen, H = p.nheads, G = p.ngroups, N = p.dstate, hpg = H / G;
  const int64_t nc = (L + Q - 1) / Q;
  const float* x = (const float*)p.x;
  const float* dt = (const float*)p.dt;
  const float* Bm = (const float*)p.B;
  const float* Cm = (const float*)p.C;
  float* y = (float*)p.y;
  // phase 1: G = C B^T per (batch, group, chunk), lower triangle
  std::vector<float> CB((size_t)(Bn * G * nc) * Q * Q);
  auto phase1 = [&](int64_t task) {
    const int64_t k = task % nc, bg = task / nc, g = bg % G, b = bg / G;
    float* out = CB.data() + (size_t)task * Q * Q;
    const int64_t len = std::min<int64_t>(Q, L - k * Q);
    std::vector<float> Bt((size_t)N * Q);  // B of the chunk, transposed (n x Q)
    for (int64_t j = 0; j < len; ++j) {
      const float* bj = Bm + b * p.B_batch_stride + (k * Q + j) * p.B_seq_stride + g * p.B_group_stride;
      for (int64_t n = 0; n < N; ++n) Bt[n * Q + j] = bj[n];
    }
    for (int64_t i = 0; i < len; ++i) {
      const float* ci = Cm + b * p.C_batch_stride + (k * Q + i) * p.C_seq_stride + g * p.C_group_stride;
      float* o = out + i * Q;
      for (int64_t j = 0; j <= i; ++j) o[j] = 0.0f;
      for (int64_t n = 0; n < N; ++n) {
        const float c = ci[n];
        const float* bt = Bt.data() + n * Q;
        for (int64_t j = 0; j <= i; ++j) o[j] += c * bt[j];
      }
    }
  };
  // phase 2: per (batch, head), sequential over chunks
  auto phase2 = [&](int64_t task) {
    const int64_t hh = task % H, b = task / H, g = hh / hpg;
    const float A = p.A[hh], bias = p.dt_bias ? p.dt_bias[hh] : 0.0f, Dh = p.D ? p.D[hh] : 0.0f;
    std::vector<float> d(Q), s(Q), xb((size_t)Q * P), Mm((size_t)Q * Q), Y((size_t)Q * P), Hn((size_t)N * P),
        Cs((size_t)Q * N), Bs((size_t)Q * N);
    for (int64_t n = 0; n < N; ++n)
      for (int q = 0; q < P; ++q)
        Hn[n * P + q] = p.initial_states ? p.initial_states[((b * H + hh) * P + q) * N + n] : 0.0f;
    for (int64_t k = 0; k < nc; ++k) {
      const int len = (int)std::min<int64_t>(Q, L - k * Q);
      float run = 0.0f;
      for (int i = 0; i < len; ++i) {
        float u = dt[b * p.dt_batch_stride + (k * Q + i) * p.dt_seq_stride + hh] + bias;
        if (p.dt_softplus) u = u > 20.0f ? u : std::log1p(std::exp(u));
        u = std::min(std::max(u, p.dt_min), p.dt_max);
        d[i] = u;
        run += u * A;
        s[i] = run;
      }
      const float slast = s[len - 1];
      for (int i = 0; i < len; ++i) {
        const float* xi = x + b * p.x_batch_stride + (k * Q + i) * p.x_seq_stride + hh * p.x_head_stride;
        for (int q = 0; q < P; ++q) xb[i * P + q] = d[i] * xi[q];
      }
      // M = L o CB (lower triangle)
      const float* cb = CB.data() + (size_t)((b * G + g) * nc + k) * Q * Q;
      for (int i = 0; i < len; ++i) {
        float* mi = Mm.data() + (size_t)i * Q;
        const float si = s[i];
        for (int j = 0; j <= i; ++j) mi[j] = cephes_expf(si - s[j]) * cb[i * Q + j];
      }
      // Y = M xbar (causal), then + exp(s_i) C_i H
      gemm_rows<P, 4>(Y.data(), len, Mm.data(), Q, 1, xb.data(), len, true, false);
      for (int i = 0; i < len; ++i) {
        const float* ci = Cm + b * p.C_batch_stride + (k * Q + i) * p.C_seq_stride + g * p.C_group_stride;
        const float w = cephes_expf(s[i]);
        for (int64_t n = 0; n < N; ++n) Cs[i * N + n] = w * ci[n];
      }
      gemm_rows<P, 4>(Y.data(), len, Cs.data(), (int)N, 1, Hn.data(), (int)N, false, true);
      // H = exp(slast) H + sum_j exp(slast - s_j) B_j x_j
      for (int j = 0; j < len; ++j) {
        const float* bj = Bm + b * p.B_batch_stride + (k * Q + j) * p.B_seq_stride + g * p.B_group_stride;
        const float w = cephes_expf(slast - s[j]);
        for (int64_t n = 0; n < N; ++n) Bs[j * N + n] = w * bj[n];
      }
      const float dec = cephes_expf(slast);
      for (auto& v : Hn) v *= dec;
      gemm_rows<P, 4>(Hn.data(), (int)N, Bs.data(), 1, (int)N, xb.data(), len, false, true);
      // y = Y + D x
      for (int i = 0; i < len; ++i) {
        const float* xi = x + b * p.x_batch_stride + (k * Q + i) * p.x_seq_stride + hh * p.x_head_stride;
        float* yi = y + b * p.y_batch_stride + (k * Q + i) * p.y_seq_stride + hh * p.y_head_stride;
        for (int q = 0; q < P; ++q) yi[q] = Y[i * P + q] + Dh * xi[q];
      }
    }
    if (p.final_states)
      for (int64_t n = 0; n < N; ++n)
        for (int q = 0; q < P; ++q) p.final_states[((b * H + hh) * P + q) * N + n] = Hn[n * P + q];
  };
  auto parallel = [&](int64_t ntasks, const std::function<void(int64_t)>& fn) {
    std::vector<std::thread> th;
    const int nt = (int)std::min<int64_t>(threads, ntasks);
    for (int w = 0; w < nt; ++w)
      th.emplace_back([&, w] { for (int64_t t = w; t < ntasks; t += nt) fn(t); });
    for (auto& t : th) t.join();
  };
  parallel(Bn * G * nc, phase1);
  parallel(Bn * H, phase2);
}

// ------------------------------------------------------------------------------------------------
// benchmark

using clk = std::chrono::steady_clock;

static double median_ms(int runs, const std::function<void()>& fn, double* min_ms) {
  fn();  // warm-up
  std::vector<double> t;
  for (int r = 0; r < runs; ++r) {
    const auto t0 = clk::now();
    fn();
    t.push_back(std::chrono::duration<double, std::milli>(clk::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  *min_ms = t[0];
  return t[t.size() / 2];
}

static int run_bench(int runs, bool skip_ref, int algos, const char* only_case, bool peak) {
  const Isa isa = ssd::cpu::active_isa();
  printf("CPU SSD forward, fp32, dt_softplus, dt_bias, D per head, initial+final states, chunk 256; ISA %s, %d CPUs\n",
         ssd::cpu::isa_name(isa), ssd::cpu::default_threads());
  const double peak1 = peak ? ssd::cpu::fma_peak_gflops(1, 0.5) : 1.0;
  const double peak2 = peak ? ssd::cpu::fma_peak_gflops(2, 0.5) : 1.0;
  printf("measured fp32 FMA peak (%s): 1 thread %.1f GFLOP/s, 2 threads %.1f GFLOP/s\n", ssd::cpu::isa_name(isa),
         peak1, peak2);
  printf("runs per timing: %d (median, after 1 warm-up)\n\n", runs);
  printf("%-4s %-26s %-26s %7s %10s %8s %9s %7s %9s\n", "case", "shape (b,L,h,p,g,n)", "algorithm", "threads",
         "median ms", "min ms", "GFLOP/s", "% peak", "rel L2 y");
  struct Shape { const char* name; int64_t b, L, h, p, g, n; };
  const Shape shapes[] = {{"C1", 1, 4096, 32, 64, 1, 128}, {"C2", 1, 2048, 8, 64, 1, 64}};
  for (const Shape& s : shapes) {
    if (only_case && strcmp(only_case, s.name) != 0) continue;
    Cfg c;
    c.b = s.b; c.L = s.L; c.h = s.h; c.p = s.p; c.g = s.g; c.n = s.n;
    c.bias = true; c.init = true; c.fin = true; c.dmode = 1; c.softplus = true; c.dt_shift = -4.0; c.seed = 7;
    Problem pr;
    make_problem(c, &pr);
    std::vector<double> ry, rfin;
    if (!skip_ref) reference(pr, &ry, &rfin);
    // recurrence flops: 2 FMAs per state element and token
    const double flops = 4.0 * s.b * s.L * s.h * s.p * s.n;
    char shape[64];
    snprintf(shape, sizeof shape, "(%lld,%lld,%lld,%lld,%lld,%lld)", (long long)s.b, (long long)s.L, (long long)s.h,
             (long long)s.p, (long long)s.g, (long long)s.n);
    for (int alg = 0; alg < 2; ++alg)
      for (int threads : {1, 2}) {
        if (!(algos & (1 << alg))) continue;
        SsdParams p = params_of(pr);
        std::function<void()> fn;
        if (alg == 0) fn = [&] { ssd::cpu::forward(p, threads, nullptr); };
        else fn = [&] { chunked_forward<64>(p, 256, threads); };
        double mn = 0;
        const double ms = median_ms(runs, fn, &mn);
        double err = NAN, errf = NAN;
        if (!skip_ref) {
          pr.y.alloc(c.yt, pr.ysize, NAN);
          p = params_of(pr);
          fn();
          err = compare_y(pr, ry).rel;
          errf = rel_l2(pr.fin, rfin);
        }
        const double gf = flops / (ms * 1e-3) * 1e-9;
        const double peak = threads == 1 ? peak1 : peak2;
        printf("%-4s %-26s %-26s %7d %10.2f %8.2f %9.1f %6.1f%% %9.2e  (final states %.2e)\n", s.name, shape,
               alg == 0 ? "token recurrence (shipped)" : "chunked SSD Q=256 (bench)", threads, ms, mn, gf,
               100.0 * gf / peak, err, errf);
        fflush(stdout);
      }
  }
  printf("\nGFLOP/s counts 4*b*L*h*p*n (the recurrence's two FMAs per state element and token) for both algorithms.\n");
  return 0;
}

int main(int argc, char** argv) {
  bool check = false, verbose = true, skip_ref = false;
  int runs = 9, algos = 3;
  const char* only_case = nullptr;
  bool peak = true;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--check")) check = true;
    else if (!strcmp(argv[i], "--quiet")) verbose = false;
    else if (!strcmp(argv[i], "--no-ref")) skip_ref = true;
    else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = std::max(1, atoi(argv[++i]));
    else if (!strcmp(argv[i], "--shipped-only")) algos = 1;
    else if (!strcmp(argv[i], "--case") && i + 1 < argc) only_case = argv[++i];
    else if (!strcmp(argv[i], "--no-peak")) peak = false;
    else if (!strcmp(argv[i], "--chunked-only")) algos = 2;
    else { fprintf(stderr, "usage: %s [--check [--quiet]] [--runs N] [--no-ref] [--shipped-only|--chunked-only] [--case C1|C2] [--no-peak]\n", argv[0]); return 2; }
  }
  return check ? run_check(verbose) : run_bench(runs, skip_ref, algos, only_case, peak);
}
