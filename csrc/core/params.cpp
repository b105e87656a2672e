// The parameter contract: the one check of an SsdParams / SsdBackwardParams / SsdStepParams block.
// Every entry (the N-API binding, the C ABI, the bench harnesses) calls these before a backend runs;
// backends trust a block that passed them.
#include "core/params.h"

#include <algorithm>
#include <climits>
#include <initializer_list>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/dtype.h"

namespace ssd {

namespace {

bool fits_int32(int64_t v) { return v >= 1 && v <= INT32_MAX; }

SsdStatus invalid(std::string* error, std::string message) {
  *error = std::move(message);
  return SSD_ERR_INVALID_ARGUMENT;
}

struct NamedSize {
  const char* name;
  int64_t value;
};

// Each size in [1, 2^31-1], then ngroups dividing nheads.
SsdStatus check_sizes(std::initializer_list<NamedSize> sizes, int64_t nheads, int64_t ngroups, std::string* error) {
  for (const NamedSize& s : sizes) {
    if (!fits_int32(s.value)) return invalid(error, std::string(s.name) + " must be in [1, 2^31-1], got " + std::to_string(s.value));
  }
  if (nheads % ngroups != 0) {
    return invalid(error, "ngroups (" + std::to_string(ngroups) + ") must divide nheads (" + std::to_string(nheads) + ")");
  }
  return SSD_OK;
}

SsdStatus check_dtypes(std::initializer_list<SsdDtype> types, std::string* error) {
  for (SsdDtype t : types) {
    if (!is_float_dtype(t)) return invalid(error, "unknown dtype code " + std::to_string(int(t)));
  }
  return SSD_OK;
}

// The rule of each option (kOptions) that the block at `params` has.
SsdStatus check_options(const void* params, Option::Block block, std::string* error) {
  for (const Option& o : kOptions) {
    if (o.offset[block] < 0 || !o.ok) continue;
    const char* at = static_cast<const char*>(params) + o.offset[block];
    const int64_t i = o.kind == Option::kInt ? *reinterpret_cast<const int64_t*>(at)
                      : o.kind == Option::kBool ? *reinterpret_cast<const int32_t*>(at) : 0;
    const float f = o.kind == Option::kFloat ? *reinterpret_cast<const float*>(at) : 0.0f;
    if (!o.ok(o.kind == Option::kFloat ? double(f) : double(i))) {
      return invalid(error, std::string(o.field) + " " + o.rule + ", got " + (o.kind == Option::kFloat ? std::to_string(f) : std::to_string(i)));
    }
  }
  return SSD_OK;
}

SsdStatus check_dt_limits(float dt_min, float dt_max, std::string* error) {
  if (!(dt_min <= dt_max)) return invalid(error, "dt_min must not exceed dt_max (and neither may be NaN)");
  return SSD_OK;
}

// The forward's sizes, pointers and options; the outputs only when `outputs`.
SsdStatus check_forward(const SsdParams& p, bool outputs, std::string* error) {
  SsdStatus status = check_sizes({{"batch", p.batch},     {"seqlen", p.seqlen},   {"nheads", p.nheads},
                                  {"headdim", p.headdim}, {"ngroups", p.ngroups}, {"dstate", p.dstate}},
                                 p.nheads, p.ngroups, error);
  if (status != SSD_OK || (status = check_options(&p, Option::kForward, error)) != SSD_OK) return status;
  // Element counts of the largest tensors must fit in int64 with room to spare.
  const double x_elems = double(p.batch) * double(p.seqlen) * double(p.nheads) * double(p.headdim);
  const double state_elems = double(p.batch) * double(p.nheads) * double(p.headdim) * double(p.dstate);
  if (x_elems > 9.0e15 || state_elems > 9.0e15) {
    return invalid(error, "tensor sizes overflow 64-bit indexing");
  }
  if (!p.x || !p.dt || !p.A || !p.B || !p.C || (outputs && !p.y)) {
    return invalid(error, outputs ? "x, dt, A, B, C and y are required" : "x, dt, A, B and C are required");
  }
  if ((status = check_dtypes({p.x_type, p.dt_type, p.B_type, p.C_type, outputs ? p.y_type : SSD_FLOAT32, p.z_type}, error)) != SSD_OK) {
    return status;
  }
  if (p.y_ungated && (!p.z || !is_float_dtype(p.y_ungated_type))) {
    return invalid(error, p.z ? "unknown dtype code " + std::to_string(int(p.y_ungated_type)) + " for y_ungated"
                          : std::string("y_ungated needs z (without z it would equal y)"));
  }
  if ((status = check_dt_limits(p.dt_min, p.dt_max, error)) != SSD_OK) return status;
  if (p.varlen_states && !p.cu_seqlens) {
    return invalid(error, "varlen_states needs cu_seqlens");
  }
  if (p.cu_seqlens) {
    if (p.batch != 1 || p.seq_idx || p.initial_states) {
      return invalid(error, "cu_seqlens needs batch 1 and excludes seq_idx and initial_states");
    }
    if (p.num_seqs < 1 || p.num_seqs >= INT32_MAX) {
      return invalid(error, "num_seqs must be in [1, 2^31-2], got " + std::to_string(p.num_seqs));
    }
  }
  return SSD_OK;
}

struct Dim {
  const char* letter;
  int64_t extent, stride;
};

// A tensor view: `outer` strided dimensions over `inner` contiguous elements. Dimensions of extent 1
// are never stepped, so their strides are not looked at. Checks strides >= 0, the last element's
// offset within int64 (with room), and when `exclusive` that no two index tuples share an element.
template <int N>
bool check_view(const char* name, const Dim (&outer)[N], int64_t inner, bool exclusive, std::string* error) {
  Dim dims[N];
  int m = 0;
  int64_t last = inner - 1;  // offset of the last element
  for (int i = 0; i < N; i++) {
    if (outer[i].extent == 1) continue;
    if (outer[i].stride < 0) {
      *error = std::string(name) + ": expected a stride >= 0 for dimension " + outer[i].letter + " but received " +
               std::to_string(outer[i].stride);
      return false;
    }
    int64_t step = 0;
    if (__builtin_mul_overflow(outer[i].extent - 1, outer[i].stride, &step) ||
        __builtin_add_overflow(last, step, &last) || last > (int64_t(1) << 60)) {
      *error = std::string(name) + ": strides reach past 64-bit offsets";
      return false;
    }
    dims[m++] = outer[i];
  }
  if (!exclusive) return true;
  // Sorted by stride, each dimension must step over everything the smaller ones reach.
  for (int i = 1; i < m; i++) {
    for (int j = i; j > 0 && dims[j].stride < dims[j - 1].stride; j--) std::swap(dims[j], dims[j - 1]);
  }
  int64_t reach = inner;  // elements spanned by the contiguous dimension and the dims before
  for (int i = 0; i < m; i++) {
    if (dims[i].stride < reach) {
      *error = std::string(name) + ": strides overlap (dimension " + dims[i].letter + " has stride " +
               std::to_string(dims[i].stride) + ", below the " + std::to_string(reach) +
               " elements the smaller dimensions span); every output element needs its own memory";
      return false;
    }
    reach = dims[i].stride * (dims[i].extent - 1) + reach;
  }
  return true;
}

struct Aligned {
  const char* name;
  const void* ptr;
  int64_t bytes;  // of an element
};

// Each pointer present aligned to its elements.
SsdStatus check_aligned(std::initializer_list<Aligned> pointers, std::string* error) {
  for (const Aligned& a : pointers) {
    if (a.ptr && reinterpret_cast<uintptr_t>(a.ptr) % uintptr_t(a.bytes) != 0) {
      return invalid(error, std::string(a.name) + ": expected a pointer aligned to its " + std::to_string(a.bytes) + "-byte elements");
    }
  }
  return SSD_OK;
}

}  // namespace

SsdStatus check_cu_seqlens(const SsdParams& p, std::string* error) {
  if (!p.cu_seqlens) return SSD_OK;
  const int32_t* cu = p.cu_seqlens;
  if (cu[0] != 0 || cu[p.num_seqs] != p.seqlen) {
    return invalid(error, "cu_seqlens must start at 0 and end at seqlen (" + std::to_string(p.seqlen) + "), got " +
                          std::to_string(cu[0]) + " and " + std::to_string(cu[p.num_seqs]));
  }
  for (int64_t k = 0; k < p.num_seqs; ++k) {
    if (cu[k + 1] < cu[k]) {
      return invalid(error, "cu_seqlens must be non-decreasing, got " + std::to_string(cu[k + 1]) + " after " + std::to_string(cu[k]) +
                            " at index " + std::to_string(k + 1));
    }
  }
  return SSD_OK;
}


SsdStatus check_params(const SsdParams& p, std::string* error) { return check_forward(p, true, error); }

SsdStatus check_backward_params(const SsdBackwardParams& p, std::string* error) {
  SsdStatus status = check_forward(p.fwd, false, error);
  if (status != SSD_OK) return status;
  // cu_seqlens passed the forward's checks above (batch 1, no seq_idx, no initial_states, num_seqs);
  // its host values are checked where they are read on the host (the dispatcher's backward_cpu).
  // varlen_states is a forward output: there is no gradient of it to take.
  if (p.fwd.varlen_states) {
    return invalid(error, "the backward does not take varlen_states (a forward output, with no gradient input)");
  }
  if (p.fwd.cu_seqlens && p.d_initial_states) {
    return invalid(error, "d_initial_states needs no cu_seqlens (every packed sequence starts from a zero state)");
  }
  if (!p.dy || !p.dx || !p.ddt || !p.dA || !p.dB || !p.dC) {
    return invalid(error, "dy, dx, ddt, dA, dB and dC are required");
  }
  if ((p.dD && !p.fwd.D) || (p.dz && !p.fwd.z)) {
    return invalid(error, "dD needs D and dz needs z");
  }
  return check_dtypes({p.dy_type, p.dx_type, p.ddt_type, p.dB_type, p.dC_type, p.dz ? p.dz_type : SSD_FLOAT32}, error);
}

SsdStatus check_step_params(const SsdStepParams& p, std::string* error) {
  SsdStatus status = check_sizes({{"batch", p.batch},     {"nheads", p.nheads}, {"headdim", p.headdim},
                                  {"ngroups", p.ngroups}, {"dstate", p.dstate}, {"state_rows", p.state_rows}},
                                 p.nheads, p.ngroups, error);
  if (status != SSD_OK || (status = check_options(&p, Option::kStep, error)) != SSD_OK) return status;
  if (!p.state_indices && p.state_rows != p.batch) {
    return invalid(error, "without state_indices, state_rows (" + std::to_string(p.state_rows) + ") must equal batch (" +
                          std::to_string(p.batch) + ")");
  }
  const double state_elems = double(p.state_rows) * double(p.nheads) * double(p.headdim) * double(p.dstate);
  if (state_elems > 9.0e15) {
    return invalid(error, "tensor sizes overflow 64-bit indexing");
  }
  if (!p.state || !p.x || !p.dt || !p.A || !p.B || !p.C || !p.y) {
    return invalid(error, "state, x, dt, A, B, C and y are required");
  }
  if (!dtype_step(p.state_type)) {
    return invalid(error, "the state must be " + dtype_names(dtype_step) + ", got dtype code " + std::to_string(int(p.state_type)));
  }
  if ((status = check_dtypes({p.x_type, p.dt_type, p.B_type, p.C_type, p.y_type, p.z_type}, error)) != SSD_OK) return status;
  return check_dt_limits(p.dt_min, p.dt_max, error);
}

SsdStatus check_state_indices(const int32_t* indices, int64_t batch, int64_t state_rows, std::string* error) {
  if (!indices) return SSD_OK;
  std::vector<int32_t> used;
  used.reserve(size_t(batch));
  for (int64_t i = 0; i < batch; ++i) {
    if (indices[i] >= state_rows) {
      return invalid(error, "state_indices[" + std::to_string(i) + "] = " + std::to_string(indices[i]) +
                            " is past the last state row (" + std::to_string(state_rows - 1) + ")");
    }
    if (indices[i] >= 0) used.push_back(indices[i]);
  }
  std::sort(used.begin(), used.end());
  const auto twice = std::adjacent_find(used.begin(), used.end());
  if (twice != used.end()) {
    return invalid(error, "state_indices uses state row " + std::to_string(*twice) + " more than once");
  }
  return SSD_OK;
}

SsdStatus check_layout(const SsdParams& p, std::string* error) {
  const int64_t b = p.batch, L = p.seqlen, h = p.nheads, hd = p.headdim, g = p.ngroups, n = p.dstate;
  const Dim x[] = {{"b", b, p.x_batch_stride}, {"L", L, p.x_seq_stride}, {"h", h, p.x_head_stride}};
  const Dim y[] = {{"b", b, p.y_batch_stride}, {"L", L, p.y_seq_stride}, {"h", h, p.y_head_stride}};
  const Dim z[] = {{"b", b, p.z_batch_stride}, {"L", L, p.z_seq_stride}, {"h", h, p.z_head_stride}};
  const Dim dt[] = {{"b", b, p.dt_batch_stride}, {"L", L, p.dt_seq_stride}};
  const Dim B[] = {{"b", b, p.B_batch_stride}, {"L", L, p.B_seq_stride}, {"g", g, p.B_group_stride}};
  const Dim C[] = {{"b", b, p.C_batch_stride}, {"L", L, p.C_seq_stride}, {"g", g, p.C_group_stride}};
  const Dim seq[] = {{"b", b, p.seq_idx_batch_stride}};
  const Dim yu[] = {{"b", b, p.y_ungated_batch_stride}, {"L", L, p.y_ungated_seq_stride}, {"h", h, p.y_ungated_head_stride}};
  if (!check_view("x", x, hd, false, error) || !check_view("y", y, hd, true, error) ||
      (p.y_ungated && !check_view("y_ungated", yu, hd, true, error)) ||
      (p.z && !check_view("z", z, hd, false, error)) || !check_view("dt", dt, h, false, error) ||
      !check_view("B", B, n, false, error) || !check_view("C", C, n, false, error) ||
      (p.seq_idx && !check_view("seq_idx", seq, L, false, error))) {
    return SSD_ERR_INVALID_ARGUMENT;
  }
  if (p.D_per_channel != 0 && p.D_per_channel != 1) {
    return invalid(error, "D_per_channel: expected 0 (D is (h)) or 1 (D is (h, p)) but received " + std::to_string(p.D_per_channel));
  }
  return check_aligned({{"x", p.x, dtype_bytes(p.x_type)},   {"dt", p.dt, dtype_bytes(p.dt_type)},
                        {"B", p.B, dtype_bytes(p.B_type)},   {"C", p.C, dtype_bytes(p.C_type)},
                        {"z", p.z, dtype_bytes(p.z_type)},   {"y", p.y, dtype_bytes(p.y_type)},
                        {"A", p.A, 4},                        {"D", p.D, 4},
                        {"dt_bias", p.dt_bias, 4},            {"initial_states", p.initial_states, 4},
                        {"seq_idx", p.seq_idx, 4},            {"final_states", p.final_states, 4},
                        {"cu_seqlens", p.cu_seqlens, 4},      {"varlen_states", p.varlen_states, 4},
                        {"y_ungated", p.y_ungated, dtype_bytes(p.y_ungated_type)}},
                       error);
}

SsdStatus check_backward_layout(const SsdBackwardParams& p, std::string* error) {
  const SsdParams& f = p.fwd;
  SsdStatus status;
  // The forward's views with dx in y's place (an exclusive output view), then the other gradients.
  SsdParams q = f;
  q.y = p.dx; q.y_type = p.dx_type;
  q.y_batch_stride = p.dx_batch_stride; q.y_seq_stride = p.dx_seq_stride; q.y_head_stride = p.dx_head_stride;
  q.final_states = nullptr;
  if ((status = check_layout(q, error)) != SSD_OK) {
    *error = "dx/" + *error;
    return status;
  }
  const int64_t b = f.batch, L = f.seqlen, h = f.nheads, hd = f.headdim, g = f.ngroups, n = f.dstate;
  const Dim dy[] = {{"b", b, p.dy_batch_stride}, {"L", L, p.dy_seq_stride}, {"h", h, p.dy_head_stride}};
  const Dim dz[] = {{"b", b, p.dz_batch_stride}, {"L", L, p.dz_seq_stride}, {"h", h, p.dz_head_stride}};
  const Dim ddt[] = {{"b", b, p.ddt_batch_stride}, {"L", L, p.ddt_seq_stride}};
  const Dim dB[] = {{"b", b, p.dB_batch_stride}, {"L", L, p.dB_seq_stride}, {"g", g, p.dB_group_stride}};
  const Dim dC[] = {{"b", b, p.dC_batch_stride}, {"L", L, p.dC_seq_stride}, {"g", g, p.dC_group_stride}};
  if (!check_view("dy", dy, hd, false, error) || (p.dz && !check_view("dz", dz, hd, true, error)) ||
      !check_view("ddt", ddt, h, true, error) || !check_view("dB", dB, n, true, error) ||
      !check_view("dC", dC, n, true, error)) {
    return SSD_ERR_INVALID_ARGUMENT;
  }
  return check_aligned({{"dy", p.dy, dtype_bytes(p.dy_type)},   {"ddt", p.ddt, dtype_bytes(p.ddt_type)},
                        {"dB", p.dB, dtype_bytes(p.dB_type)},   {"dC", p.dC, dtype_bytes(p.dC_type)},
                        {"dz", p.dz, dtype_bytes(p.dz_type)},   {"dA", p.dA, 4},
                        {"dD", p.dD, 4},                         {"d_dt_bias", p.d_dt_bias, 4},
                        {"d_initial_states", p.d_initial_states, 4}, {"d_final_states", p.d_final_states, 4}},
                       error);
}

SsdStatus check_step_layout(const SsdStepParams& p, std::string* error) {
  const int64_t b = p.batch, h = p.nheads, hd = p.headdim, g = p.ngroups, n = p.dstate;
  const Dim x[] = {{"b", b, p.x_batch_stride}, {"h", h, p.x_head_stride}};
  const Dim y[] = {{"b", b, p.y_batch_stride}, {"h", h, p.y_head_stride}};
  const Dim z[] = {{"b", b, p.z_batch_stride}, {"h", h, p.z_head_stride}};
  const Dim dt[] = {{"b", b, p.dt_batch_stride}};
  const Dim B[] = {{"b", b, p.B_batch_stride}, {"g", g, p.B_group_stride}};
  const Dim C[] = {{"b", b, p.C_batch_stride}, {"g", g, p.C_group_stride}};
  if (!check_view("x", x, hd, false, error) || !check_view("y", y, hd, true, error) ||
      (p.z && !check_view("z", z, hd, false, error)) || !check_view("dt", dt, h, false, error) ||
      !check_view("B", B, n, false, error) || !check_view("C", C, n, false, error)) {
    return SSD_ERR_INVALID_ARGUMENT;
  }
  // As the forward's: any other value read D as (h, p), past the end of a D of (h).
  if (p.D_per_channel != 0 && p.D_per_channel != 1) {
    *error = "D_per_channel: expected 0 (D is (h)) or 1 (D is (h, p)) but received " + std::to_string(p.D_per_channel);
    return SSD_ERR_INVALID_ARGUMENT;
  }
  return check_aligned({{"state", p.state, dtype_bytes(p.state_type)}, {"x", p.x, dtype_bytes(p.x_type)},
                        {"dt", p.dt, dtype_bytes(p.dt_type)},          {"B", p.B, dtype_bytes(p.B_type)},
                        {"C", p.C, dtype_bytes(p.C_type)},             {"z", p.z, dtype_bytes(p.z_type)},
                        {"y", p.y, dtype_bytes(p.y_type)},             {"A", p.A, 4},
                        {"D", p.D, 4},                                  {"dt_bias", p.dt_bias, 4},
                        {"state_indices", p.state_indices, 4}},
                       error);
}

}  // namespace ssd
