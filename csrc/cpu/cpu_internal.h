// Internal declarations shared by the CPU backend's translation units.
//
// This header is included by files compiled with different ISA flags (baseline, -mavx2, -mavx512*).
// It must contain declarations and plain data only: no inline functions, no templates, no static
// objects, so that nothing compiled with AVX flags can be merged (ODR/COMDAT) into baseline code.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "core/math.h"
#include "ssd_kernels.h"

namespace ssd { namespace cpu { namespace detail {

// Thread pool (thread_pool.cpp, baseline). Calls fn(ctx, id) exactly once for every id in [0, n);
// id 0 runs on the calling thread. Concurrent callers are serialised on the pool; n <= 1 runs inline
// without touching the pool. Never throws: if helper threads cannot be created, the calling thread
// runs the missing ids itself.
void run_workers(int n, void (*fn)(void* ctx, int id), void* ctx);

// Host workspace (workspace.cpp, baseline): 64-byte aligned blocks of at least `bytes`, or nullptr.
// Released blocks are cached for reuse (the largest one, up to a cap); pass the size asked for.
void* workspace_acquire(size_t bytes);
void workspace_release(void* p, size_t bytes);

// Per-ISA entry points. Each is defined in forward_<isa>.cpp (through forward_isa.inc); the AVX ones
// exist only on x86-64 and may only be called after the CPU was checked. Parameters are already
// validated (sizes >= 1, pointers present, nheads % ngroups == 0). `threads` >= 1. On error they
// write a NUL-terminated message into err (errlen bytes).
SsdStatus forward_scalar(const SsdParams& p, int threads, char* err, size_t errlen);
SsdStatus forward_avx2(const SsdParams& p, int threads, char* err, size_t errlen);
SsdStatus forward_avx512(const SsdParams& p, int threads, char* err, size_t errlen);
// The backward, in backward_<isa>.cpp, with the same conventions.
SsdStatus backward_scalar(const SsdBackwardParams& p, int threads, char* err, size_t errlen);
SsdStatus backward_avx2(const SsdBackwardParams& p, int threads, char* err, size_t errlen);
SsdStatus backward_avx512(const SsdBackwardParams& p, int threads, char* err, size_t errlen);

// `iters` iterations of a block of independent FMAs on the ISA's widest vectors. Returns a value that
// depends on every result (so nothing is optimised away); *flops_per_iter receives the fp32 flop
// count of one iteration (2 per FMA lane).
float fma_burst_scalar(int64_t iters, float seed, double* flops_per_iter);
float fma_burst_avx2(int64_t iters, float seed, double* flops_per_iter);
float fma_burst_avx512(int64_t iters, float seed, double* flops_per_iter);

// The decode step per ISA (step_<isa>.cpp), parameters validated by ssd::step_cpu; `threads` >= 1.
SsdStatus step_scalar(const SsdStepParams& p, int threads, char* err, size_t errlen);
SsdStatus step_avx2(const SsdStepParams& p, int threads, char* err, size_t errlen);
SsdStatus step_avx512(const SsdStepParams& p, int threads, char* err, size_t errlen);
// a[i] *= s for i in [0, n), n a multiple of 64: the memory traffic of the step, for the benchmark.
void rmw_pass_scalar(float* a, int64_t n, float s);
void rmw_pass_avx2(float* a, int64_t n, float s);
void rmw_pass_avx512(float* a, int64_t n, float s);

}}}  // namespace ssd::cpu::detail
