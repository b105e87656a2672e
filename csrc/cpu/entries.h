// entries.h: how the baseline fronts (cpu_backend.cpp, step_backend.cpp) reach the per-ISA code: a
// function's entry per instruction set, the active one, and the runner of a kernel. Templates and
// inline functions: include it from baseline files only (see cpu_internal.h).
#pragma once
#include <new>
#include <string>

#include "cpu_backend.h"
#include "cpu_internal.h"

namespace ssd { namespace cpu { namespace detail {

// The per-ISA definitions of one function (cpu_internal.h); the AVX ones exist only on x86-64.
template <class Fn>
struct Entries {
  Fn scalar, avx2, avx512;

  // The entry of active_isa().
  Fn active() const {
    const Isa isa = active_isa();
    if (isa == Isa::Avx512 && avx512) return avx512;
    if (isa == Isa::Avx2 && avx2) return avx2;
    return scalar;
  }
};

// {&detail::f_scalar, &detail::f_avx2, &detail::f_avx512}, without the AVX ones off x86-64.
#if defined(__x86_64__)
#define SSD_CPU_ENTRIES(f) {&detail::f##_scalar, &detail::f##_avx2, &detail::f##_avx512}
#else
#define SSD_CPU_ENTRIES(f) {&detail::f##_scalar, nullptr, nullptr}
#endif

template <class Params>
using KernelEntries = Entries<SsdStatus (*)(const Params&, int, char*, size_t)>;

inline void set_error(std::string* error, const char* msg) {
  if (!error) return;
  try {
    *error = msg;
  } catch (...) {
  }
}

// Runs the active instruction set's entry with `threads` threads (<= 0: default_threads(), at most
// 1024); failures fill *error (with `what` when the kernel gave no message), exceptions become
// statuses.
template <class Params>
SsdStatus run_kernel(const KernelEntries<Params>& entries, const Params& p, int threads, std::string* error, const char* what) {
  try {
    if (threads <= 0) threads = default_threads();
    if (threads > 1024) threads = 1024;
    char err[256];
    err[0] = '\0';
    const SsdStatus st = entries.active()(p, threads, err, sizeof err);
    if (st != SSD_OK) set_error(error, err[0] ? err : what);
    return st;
  } catch (const std::bad_alloc&) {
    set_error(error, "ssd cpu: out of memory");
    return SSD_ERR_OUT_OF_MEMORY;
  } catch (...) {
    set_error(error, "ssd cpu: internal error");
    return SSD_ERR_INTERNAL;
  }
}

}}}  // namespace ssd::cpu::detail
