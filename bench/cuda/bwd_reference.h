// The backward harness's float64 reference (the exact reverse of the token recurrence, a port of
// lib/reference-backward.ts) and its model of the backward's workspace intermediates, with which a
// failing case is diagnosed launch by launch. Included by bwd_harness.cu after harness_common.h
// (the dtype helpers, softplus_d).
#pragma once

static double sigmoid_d(double u) { return 1.0 / (1.0 + std::exp(-u)); }

// =============================================================================================
// 1. The float64 reference backward: the exact reverse of the token recurrence (port of
//    lib/reference-backward.ts). All arrays are dense row-major in the logical shapes.
// =============================================================================================
struct RefIn {
  int b, L, H, P, G, N;
  const std::vector<double>*x, *dt, *A, *B, *C, *D, *z, *bias, *h0, *dy, *dfin;  // D/z/bias/h0/dfin may be null
  bool dch, softplus;
  double lo, hi;
  const std::vector<int>* seq;  // may be null
};
struct RefOut {
  std::vector<double> dx, ddt, dA, dB, dC, dD, dz, dbias, dinit;
  // Σ|term| per element, the scale a sum of terms of both signs carries its rounding at (see check):
  // dA, dDtBias and dD sum over positions; ddt, dB and dC over p (and n, and heads) at one position
  std::vector<double> dA_abs, dD_abs, dbias_abs, ddt_abs, dB_abs, dC_abs;
};

static void ref_backward(const RefIn& r, RefOut& o) {
  const int b = r.b, L = r.L, H = r.H, P = r.P, G = r.G, N = r.N, hpg = H / G;
  const size_t pn = (size_t)P * N;
  o.dx.assign((size_t)b * L * H * P, 0.0);
  o.ddt.assign((size_t)b * L * H, 0.0);
  o.dA.assign(H, 0.0);
  o.dB.assign((size_t)b * L * G * N, 0.0);
  o.dC.assign((size_t)b * L * G * N, 0.0);
  o.dD.assign(r.D ? (r.dch ? (size_t)H * P : (size_t)H) : 0, 0.0);
  o.dz.assign(r.z ? (size_t)b * L * H * P : 0, 0.0);
  o.dbias.assign(r.bias ? H : 0, 0.0);
  o.dinit.assign(r.h0 ? (size_t)b * H * pn : 0, 0.0);
  o.dA_abs.assign(o.dA.size(), 0.0);
  o.dD_abs.assign(o.dD.size(), 0.0);
  o.dbias_abs.assign(o.dbias.size(), 0.0);
  o.ddt_abs.assign(o.ddt.size(), 0.0);
  o.dB_abs.assign(o.dB.size(), 0.0);
  o.dC_abs.assign(o.dC.size(), 0.0);
  std::vector<double> states((size_t)(L + 1) * pn), dstep(L), pre(L), decays(L), dH(pn), gv(P);
  const auto& x = *r.x;
  const auto& Bv = *r.B;
  const auto& Cv = *r.C;
  for (int bb = 0; bb < b; ++bb)
    for (int h = 0; h < H; ++h) {
      const int grp = h / hpg;
      const size_t sbase = ((size_t)bb * H + h) * pn;
      const double A = (*r.A)[h];
      const double bias = r.bias ? (*r.bias)[h] : 0.0;
      for (size_t i = 0; i < pn; ++i) states[i] = r.h0 ? (*r.h0)[sbase + i] : 0.0;
      int prev_seq = 0;
      for (int t = 0; t < L; ++t) {
        const double u = (*r.dt)[((size_t)bb * L + t) * H + h] + bias;
        const double v = r.softplus ? softplus_d(u) : u;
        const double d = std::min(std::max(v, r.lo), r.hi);
        double keep = 1.0;
        if (r.seq) {
          const int s = (*r.seq)[(size_t)bb * L + t];
          keep = s == prev_seq ? 1.0 : 0.0;
          prev_seq = s;
        }
        const double dec = keep * std::exp(d * A);
        pre[t] = v;
        dstep[t] = d;
        decays[t] = dec;
        const size_t xb = (((size_t)bb * L + t) * H + h) * P, bc = (((size_t)bb * L + t) * G + grp) * N;
        const double* Sp = &states[(size_t)t * pn];
        double* Sn = &states[(size_t)(t + 1) * pn];
        for (int i = 0; i < P; ++i) {
          const double dxv = d * x[xb + i];
          for (int j = 0; j < N; ++j) Sn[i * N + j] = dec * Sp[i * N + j] + dxv * Bv[bc + j];
        }
      }
      for (size_t i = 0; i < pn; ++i) dH[i] = r.dfin ? (*r.dfin)[sbase + i] : 0.0;
      for (int t = L - 1; t >= 0; --t) {
        const double d = dstep[t], dec = decays[t];
        const size_t xb = (((size_t)bb * L + t) * H + h) * P, bc = (((size_t)bb * L + t) * G + grp) * N;
        const double* Sp = &states[(size_t)t * pn];
        const double* Sc = &states[(size_t)(t + 1) * pn];
        for (int i = 0; i < P; ++i) {
          double gi = (*r.dy)[xb + i];
          const double xv = x[xb + i];
          if (r.z) {
            double yb = 0;
            for (int j = 0; j < N; ++j) yb += Sc[i * N + j] * Cv[bc + j];
            if (r.D) yb += (r.dch ? (*r.D)[(size_t)h * P + i] : (*r.D)[h]) * xv;
            const double zv = (*r.z)[xb + i];
            const double sz = sigmoid_d(zv);
            o.dz[xb + i] = gi * yb * sz * (1 + zv * (1 - sz));
            gi *= zv / (1 + std::exp(-zv));
          }
          gv[i] = gi;
          if (r.D) {
            const size_t kd = r.dch ? (size_t)h * P + i : (size_t)h;
            o.dD[kd] += gi * xv;
            o.dD_abs[kd] += std::fabs(gi * xv);
            o.dx[xb + i] += (*r.D)[kd] * gi;
          }
          for (int j = 0; j < N; ++j) dH[i * N + j] += gi * Cv[bc + j];
        }
        for (int j = 0; j < N; ++j) {
          double acc = 0, acc_abs = 0;
          for (int i = 0; i < P; ++i) {
            acc += gv[i] * Sc[i * N + j];
            acc_abs += std::fabs(gv[i] * Sc[i * N + j]);
          }
          o.dC[bc + j] += acc;
          o.dC_abs[bc + j] += acc_abs;
        }
        double ddec = 0, dd = 0, ddec_abs = 0, dd_abs = 0;
        for (int i = 0; i < P; ++i) {
          const double xv = x[xb + i];
          double rowB = 0, rowB_abs = 0;
          for (int j = 0; j < N; ++j) {
            const double gij = dH[i * N + j];
            ddec += gij * Sp[i * N + j];
            ddec_abs += std::fabs(gij * Sp[i * N + j]);
            rowB += gij * Bv[bc + j];
            rowB_abs += std::fabs(gij * Bv[bc + j]);
          }
          dd += rowB * xv;
          dd_abs += rowB_abs * std::fabs(xv);
          o.dx[xb + i] += d * rowB;
        }
        for (int j = 0; j < N; ++j) {
          double acc = 0, acc_abs = 0;
          for (int i = 0; i < P; ++i) {
            acc += dH[i * N + j] * x[xb + i];
            acc_abs += std::fabs(dH[i * N + j] * x[xb + i]);
          }
          o.dB[bc + j] += d * acc;
          o.dB_abs[bc + j] += std::fabs(d) * acc_abs;
        }
        for (size_t i = 0; i < pn; ++i) dH[i] *= dec;
        const double da = ddec * dec, da_abs = ddec_abs * dec;
        dd += A * da;
        dd_abs += std::fabs(A) * da_abs;
        o.dA[h] += d * da;
        o.dA_abs[h] += std::fabs(d) * da_abs;
        const double v = pre[t];
        double du = 0, du_abs = 0;
        if (v >= r.lo && v <= r.hi) {
          const double u = (*r.dt)[((size_t)bb * L + t) * H + h] + bias;
          const double sg = (r.softplus && u <= 20) ? sigmoid_d(u) : 1.0;
          du = dd * sg;
          du_abs = dd_abs * sg;
        }
        o.ddt[((size_t)bb * L + t) * H + h] = du;
        o.ddt_abs[((size_t)bb * L + t) * H + h] = du_abs;
        if (r.bias) {
          o.dbias[h] += du;
          o.dbias_abs[h] += du_abs;
        }
      }
      if (r.h0) std::copy(dH.begin(), dH.end(), o.dinit.begin() + sbase);
    }
}

// =============================================================================================
// 1b. Diagnosis: a float64 model of the chunked algorithm's intermediates (the algebra of
//     csrc/cuda/bwd/, checked against ref_backward on the CPU), compared with what the
//     backward left in its workspace. Printed for failing cases (and with DIAG=1), to tell which
//     launch or role went wrong.
// =============================================================================================
struct Inter {
  int nc = 0;
  std::vector<double> d, decay, Hprev, Gk, cb, dg, rowP, colP, pass, off, q, xdx;
  std::vector<int> len;  // per chunk
};

static void model_intermediates(const RefIn& r, int Q, Inter& m) {
  const int b = r.b, L = r.L, H = r.H, P = r.P, G = r.G, N = r.N, hpg = H / G;
  const int nc = (L + Q - 1) / Q;
  m.nc = nc;
  const size_t PN = (size_t)P * N, nbhc = (size_t)b * H * nc;
  m.len.resize(nc);
  for (int k = 0; k < nc; ++k) m.len[k] = std::min(Q, L - k * Q);
  m.d.assign(nbhc * Q, 0);
  m.decay.assign(nbhc, 0);
  m.Hprev.assign(nbhc * PN, 0);
  m.Gk.assign(nbhc * PN, 0);
  m.cb.assign((size_t)b * nc * G * Q * Q, 0);
  m.dg.assign(m.cb.size(), 0);
  m.rowP.assign(nbhc * Q, 0);
  m.colP.assign(nbhc * Q, 0);
  m.pass.assign(nbhc, 0);
  m.off.assign(nbhc * Q, 0);
  m.q.assign(nbhc * Q, 0);
  m.xdx.assign(nbhc * Q, 0);
  std::vector<double> s(nbhc * Q);
  std::vector<int> sq(nbhc * Q);
  auto BHC = [&](int bb, int h, int k) { return ((size_t)bb * H + h) * nc + k; };
  auto X = [&](int bb, int t, int h, int p) { return (*r.x)[(((size_t)bb * L + t) * H + h) * P + p]; };
  auto DY = [&](int bb, int t, int h, int p) {
    const size_t i = (((size_t)bb * L + t) * H + h) * P + p;
    double v = (*r.dy)[i];
    if (r.z) v *= (*r.z)[i] / (1 + std::exp(-(*r.z)[i]));
    return v;
  };
  auto Bm = [&](int bb, int t, int g, int n) { return (*r.B)[(((size_t)bb * L + t) * G + g) * N + n]; };
  auto Cm = [&](int bb, int t, int g, int n) { return (*r.C)[(((size_t)bb * L + t) * G + g) * N + n]; };
  auto SEQ = [&](int bb, int t) { return r.seq ? (*r.seq)[(size_t)bb * L + t] : 0; };
  for (int bb = 0; bb < b; ++bb)
    for (int h = 0; h < H; ++h)
      for (int k = 0; k < nc; ++k) {
        const int t0 = k * Q, len = m.len[k];
        const size_t ri = BHC(bb, h, k) * Q;
        double acc = 0;
        for (int j = 0; j < Q; ++j) {
          double d = 0;
          if (j < len) {
            double u = (*r.dt)[((size_t)bb * L + t0 + j) * H + h] + (r.bias ? (*r.bias)[h] : 0);
            if (r.softplus) u = softplus_d(u);
            d = std::min(std::max(u, r.lo), r.hi);
          }
          acc += d * (*r.A)[h];
          s[ri + j] = acc;
          m.d[ri + j] = d;
          sq[ri + j] = SEQ(bb, t0 + std::min(j, len - 1));
        }
        const int prev = k > 0 ? SEQ(bb, t0 - 1) : 0;
        m.decay[BHC(bb, h, k)] = sq[ri + len - 1] == prev ? std::exp(s[ri + len - 1]) : 0;
      }
  // chunk states S_k into Hprev, dHoff_k into Gk, then the passes
  for (int bb = 0; bb < b; ++bb)
    for (int h = 0; h < H; ++h) {
      const int grp = h / hpg;
      for (int k = 0; k < nc; ++k) {
        const int t0 = k * Q, len = m.len[k];
        const size_t ri = BHC(bb, h, k) * Q, si = BHC(bb, h, k) * PN;
        const int prev = k > 0 ? SEQ(bb, t0 - 1) : 0;
        for (int j = 0; j < len; ++j) {
          const double w = sq[ri + j] == sq[ri + len - 1] ? std::exp(s[ri + len - 1] - s[ri + j]) * m.d[ri + j] : 0;
          const double e = sq[ri + j] == prev ? std::exp(s[ri + j]) : 0;
          for (int p = 0; p < P; ++p)
            for (int n = 0; n < N; ++n) {
              m.Hprev[si + p * N + n] += w * X(bb, t0 + j, h, p) * Bm(bb, t0 + j, grp, n);
              if (k > 0 || r.h0) m.Gk[si + p * N + n] += e * DY(bb, t0 + j, h, p) * Cm(bb, t0 + j, grp, n);
            }
        }
      }
      std::vector<double> Hc(PN, 0), g(PN, 0);
      if (r.h0) for (size_t e = 0; e < PN; ++e) Hc[e] = (*r.h0)[((size_t)bb * H + h) * PN + e];
      for (int k = 0; k < nc; ++k) {
        const double a = m.decay[BHC(bb, h, k)];
        double* S = &m.Hprev[BHC(bb, h, k) * PN];
        for (size_t e = 0; e < PN; ++e) {
          const double cur = S[e];
          S[e] = Hc[e];
          Hc[e] = a * Hc[e] + cur;
        }
      }
      if (r.dfin) for (size_t e = 0; e < PN; ++e) g[e] = (*r.dfin)[((size_t)bb * H + h) * PN + e];
      for (int k = nc - 1; k >= 0; --k) {
        const double a = m.decay[BHC(bb, h, k)];
        double* D = &m.Gk[BHC(bb, h, k) * PN];
        const double* S = &m.Hprev[BHC(bb, h, k) * PN];
        double dot = 0;
        for (size_t e = 0; e < PN; ++e) {
          dot += g[e] * S[e];
          const double dh = D[e];
          D[e] = g[e];
          g[e] = dh + a * g[e];
        }
        m.pass[BHC(bb, h, k)] = a * dot;
      }
    }
  // per chunk and group: C·Bᵀ, dG, P sums; per head the main-role partials
  for (int bb = 0; bb < b; ++bb)
    for (int k = 0; k < nc; ++k)
      for (int grp = 0; grp < G; ++grp) {
        const int t0 = k * Q, len = m.len[k];
        double* cbm = &m.cb[(((size_t)bb * nc + k) * G + grp) * Q * Q];
        double* dgm = &m.dg[(((size_t)bb * nc + k) * G + grp) * Q * Q];
        for (int i = 0; i < len; ++i)
          for (int j = 0; j < len; ++j) {
            double v = 0;
            for (int n = 0; n < N; ++n) v += Cm(bb, t0 + i, grp, n) * Bm(bb, t0 + j, grp, n);
            cbm[i * Q + j] = v;
          }
        for (int hh = 0; hh < hpg; ++hh) {
          const int h = grp * hpg + hh;
          const size_t ri = BHC(bb, h, k) * Q, si = BHC(bb, h, k) * PN;
          const int prev = k > 0 ? SEQ(bb, t0 - 1) : 0;
          const bool has_prev = k > 0 || r.h0;
          auto Lm = [&](int i, int j) {
            return (j <= i && i < len && sq[ri + i] == sq[ri + j]) ? std::exp(s[ri + i] - s[ri + j]) : 0.0;
          };
          for (int i = 0; i < len; ++i)
            for (int j = 0; j <= i; ++j) {
              double R = 0;
              for (int p = 0; p < P; ++p) R += DY(bb, t0 + i, h, p) * X(bb, t0 + j, h, p);
              const double ldm = Lm(i, j) * R * m.d[ri + j];
              dgm[i * Q + j] += ldm;
              if (j < i) {
                m.rowP[ri + i] += ldm * cbm[i * Q + j];
                m.colP[ri + j] += ldm * cbm[i * Q + j];
              }
            }
          for (int j = 0; j < len; ++j) {
            const double e = (has_prev && sq[ri + j] == prev) ? std::exp(s[ri + j]) : 0;
            const double w = sq[ri + j] == sq[ri + len - 1] ? std::exp(s[ri + len - 1] - s[ri + j]) : 0;
            double off = 0, q = 0, xd = 0;
            for (int p = 0; p < P; ++p) {
              double yoff = 0, U = 0;
              for (int n = 0; n < N; ++n) {
                yoff += m.Hprev[si + p * N + n] * Cm(bb, t0 + j, grp, n);
                U += m.Gk[si + p * N + n] * Bm(bb, t0 + j, grp, n);
              }
              off += DY(bb, t0 + j, h, p) * e * yoff;
              double dxb = w * U;
              q += m.d[ri + j] * X(bb, t0 + j, h, p) * dxb;
              for (int i = j; i < len; ++i) dxb += Lm(i, j) * cbm[i * Q + j] * DY(bb, t0 + i, h, p);
              xd += X(bb, t0 + j, h, p) * dxb;
            }
            m.off[ri + j] = off;
            m.q[ri + j] = q;
            m.xdx[ri + j] = xd;
          }
        }
      }
}

static void diagnose(const RefIn& r, int Q, const std::vector<char>& wsh,
                     const ssd::cuda::detail::BackwardWorkspaceLayout& l) {
  Inter m;
  model_intermediates(r, Q, m);
  const int b = r.b, H = r.H, P = r.P, G = r.G, nc = m.nc;
  const int BB = (int)l.BB, nbb = (int)l.nbb, ntri = (int)l.ntri, npt = (int)l.npt, npp = (int)l.npp;
  const size_t PN = (size_t)P * r.N, nbhc = (size_t)b * H * nc;
  auto F = [&](size_t off) { return reinterpret_cast<const float*>(wsh.data() + off); };
  auto tri = [](int ib, int jb) { return ib * (ib + 1) / 2 + jb; };
  struct Acc {
    double se = 0, sr = 0, worst = -1;
    size_t nonfinite = 0;
    std::string where;
    void add(double v, double ref, const std::string& w) {
      if (!std::isfinite(v)) {
        if (nonfinite++ == 0) where = "non-finite at " + w;
        return;
      }
      se += (v - ref) * (v - ref);
      sr += ref * ref;
      if (std::fabs(v - ref) > worst && nonfinite == 0) {
        worst = std::fabs(v - ref);
        char buf[200];
        snprintf(buf, sizeof buf, "max |err| %.2e at %s (ws %.5g, model %.5g)", worst, w.c_str(), v, ref);
        where = buf;
      }
    }
    void print(const char* name) const {
      const double e = sr > 0 ? std::sqrt(se / sr) : std::sqrt(se);
      printf("       %-7s relL2 %.2e%s nonfinite %zu  %s\n", name, e, (e > 5e-2 || nonfinite) ? " (!)" : "    ",
             nonfinite, where.c_str());
    }
  };
  auto bhc_s = [&](size_t bhc) {
    const size_t k = bhc % nc, h = bhc / nc % H, bb = bhc / nc / H;
    return "(b " + std::to_string(bb) + ", h " + std::to_string(h) + ", chunk " + std::to_string(k) + ")";
  };
  printf("     diagnosis: workspace intermediates vs a float64 model of the chunked algorithm\n");
  Acc d_, dec, Hs, Gs, cbA, dgA, rowA, colA, passA, offA, qA, xdxA;
  const float* rec = F(l.rec);
  for (size_t bhc = 0; bhc < nbhc; ++bhc) {
    const int k = (int)(bhc % nc), len = m.len[k];
    for (int j = 0; j < Q; ++j) d_.add(rec[(bhc * Q + j) * 4 + 2], m.d[bhc * Q + j], bhc_s(bhc) + " pos " + std::to_string(j));
    dec.add(F(l.decay)[bhc], m.decay[bhc], bhc_s(bhc));
    for (size_t e = 0; e < PN; ++e) {
      const std::string w = bhc_s(bhc) + " p " + std::to_string(e / r.N) + " n " + std::to_string(e % r.N);
      Hs.add(F(l.states)[bhc * PN + e], m.Hprev[bhc * PN + e], w);
      Gs.add(F(l.dstates)[bhc * PN + e], m.Gk[bhc * PN + e], w);
    }
    double ps = 0;
    for (int u = 0; u < npp; ++u) ps += F(l.ppass)[bhc * npp + u];
    passA.add(ps, m.pass[bhc], bhc_s(bhc));
    for (int t = 0; t < len; ++t) {
      const int ib = t / BB, tl = t % BB;
      double rs = 0, cs = 0, o = 0, q = 0, x = 0;
      for (int jb = 0; jb <= ib; ++jb) rs += F(l.prow)[(bhc * ntri + tri(ib, jb)) * BB + tl];
      for (int i2 = ib; i2 < nbb; ++i2) cs += F(l.pcol)[(bhc * ntri + tri(i2, ib)) * BB + tl];
      for (int pt = 0; pt < npt; ++pt) {
        const size_t oi = (bhc * npt + pt) * Q + t;
        o += F(l.poff)[oi];
        q += F(l.pq)[oi];
        x += F(l.pxdx)[oi];
      }
      const std::string w = bhc_s(bhc) + " pos " + std::to_string(t);
      rowA.add(rs, m.rowP[bhc * Q + t], w);
      colA.add(cs, m.colP[bhc * Q + t], w);
      offA.add(o, m.off[bhc * Q + t], w);
      qA.add(q, m.q[bhc * Q + t], w);
      xdxA.add(x, m.xdx[bhc * Q + t], w);
    }
  }
  // dG is stored as head-slice partials (slices back to back, summed in slice order by the kernels)
  const size_t dg_slice = (size_t)b * nc * G * ntri * BB * BB;
  const size_t dg_nsl = std::max<size_t>((l.prow - l.dg) / (dg_slice * 4), 1);
  for (int bb = 0; bb < b; ++bb)
    for (int k = 0; k < nc; ++k)
      for (int g = 0; g < G; ++g) {
        const size_t base = (((size_t)bb * nc + k) * G + g);
        for (int ib = 0; ib < nbb; ++ib)
          for (int jb = 0; jb <= ib; ++jb)
            for (int il = 0; il < BB; ++il)
              for (int jl = 0; jl < BB; ++jl) {
                const int i = ib * BB + il, j = jb * BB + jl;
                const size_t o = ((base * ntri + tri(ib, jb)) * BB + il) * BB + jl;
                const std::string w = "(b " + std::to_string(bb) + ", chunk " + std::to_string(k) + ", g " +
                                      std::to_string(g) + ", i " + std::to_string(i) + ", j " + std::to_string(j) + ")";
                cbA.add(F(l.cb)[o], m.cb[base * Q * Q + (size_t)i * Q + j], w);
                float dgv = F(l.dg)[o];
                for (size_t sl = 1; sl < dg_nsl; ++sl) dgv += F(l.dg)[sl * dg_slice + o];
                dgA.add(dgv, m.dg[base * Q * Q + (size_t)i * Q + j], w);
              }
      }
  printf("       (launch 1: d, decay, C·Bᵀ; launch 2: H_{k-1}, dL/dH_k, state-pass sum, dG, P sums;"
         " launch 3: off, q, x·dX̄)\n");
  printf("       (on the fixed-shape path H_{k-1} and dL/dH_k are left as 16-bit values inside their slabs,"
         " and the row-major C·Bᵀ is not written: those three rows do not apply there)\n");
  d_.print("d");
  dec.print("decay");
  cbA.print("C·Bᵀ");
  Hs.print("H_{k-1}");
  Gs.print("dL/dH_k");
  passA.print("pass");
  dgA.print("dG");
  rowA.print("rowP");
  colA.print("colP");
  offA.print("off");
  qA.print("q");
  xdxA.print("x·dX̄");
}
