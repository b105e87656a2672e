// CPU emulation of the CUDA features used by csrc/cuda/bwd/ and csrc/cuda/fwd/ and bench/cuda/bwd_harness.cu:
// each CUDA thread is a fiber (ucontext), blocks run one after another, __syncthreads and warp
// shuffles are cooperative barriers, "device" memory is host memory. For verification only.
// The sm_90a instructions (mbarrier, TMA, wgmma) are in emu_sm90.h.
//
// A misuse the emulation detects (emu::fail) and a block whose threads all wait for something that
// never comes (a deadlock) abort the process, or, built with -DEMU_SOFT_FAILURES=1, end the launch:
// the rest of the grid is skipped and cudaGetLastError / cudaDeviceSynchronize report the error.
#pragma once
// core/dtype.h gives its rows their CUDA types and conversions here too
#define SSD_EMULATED_CUDA 1
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <ucontext.h>

#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <functional>
#include <tuple>
#include <type_traits>
#include <vector>

#define SSD_CUDA_EMULATION 1
#ifndef EMU_SOFT_FAILURES
#define EMU_SOFT_FAILURES 0
#endif

#define __launch_bounds__(...)
#undef __grid_constant__
#define __grid_constant__

using std::min;
using std::max;
template <class T>
inline cudaError_t cudaFuncSetAttribute(T* f, cudaFuncAttribute a, int v) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(f), a, v);
}

struct EmuDim { unsigned x = 0, y = 0, z = 0; };
inline EmuDim threadIdx, blockIdx, blockDim, gridDim;
inline char* emu_dyn_smem = nullptr;   // the block's dynamic shared memory, 1024-byte aligned
inline size_t emu_dyn_smem_bytes = 0;

namespace emu {
struct Fiber {
  ucontext_t ctx;
  std::vector<char> stack;
  bool done = false;
};
inline std::vector<Fiber> fibers;
inline ucontext_t sched_ctx;
inline int cur = 0, nthreads = 0, nexited = 0;
inline int bar_count = 0;
inline unsigned bar_gen = 0;
inline int wbar_count[32];
inline unsigned wbar_gen[32];
inline uint64_t wbuf[32][32];
inline char gbuf[32][32][32];  // all-gather: warp, lane, up to 32 bytes
inline uint64_t arrivals = 0;  // progress: any barrier arrival (or mbarrier operation) counts
inline std::function<void()> body;
inline bool in_fiber = false;
inline bool launch_failed = false;          // the current launch stopped (soft failures)
inline cudaError_t pending_error = cudaSuccess;
// Hooks of emu_sm90.h: a block starts; the block stalled (returns whether it could make progress,
// e.g. by landing TMA copies); a deadlock is reported (prints what the threads wait for).
inline void (*on_block_start)() = nullptr;
inline bool (*on_stall)() = nullptr;
inline void (*on_deadlock)() = nullptr;

inline void yield() { swapcontext(&fibers[cur].ctx, &sched_ctx); }

// A misuse of the emulated hardware: the message, then abort, or (soft failures) the launch ends here.
struct LaunchFailure {};
[[noreturn]] inline void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
inline void fail(const char* fmt, ...) {
  fprintf(stderr, "EMU ERROR (block %u, thread %u): ", blockIdx.x, threadIdx.x);
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  if (!EMU_SOFT_FAILURES) abort();
  launch_failed = true;
  pending_error = cudaErrorLaunchFailure;
  if (!in_fiber) throw LaunchFailure{};     // raised by the scheduler (a hook): emu_launch catches it
  swapcontext(&fibers[cur].ctx, &sched_ctx);  // a fiber: never resumed
  abort();
}

inline void block_barrier() {
  ++arrivals;
  const unsigned g = bar_gen;
  if (++bar_count == nthreads - nexited) {
    bar_count = 0;
    ++bar_gen;
    return;
  }
  while (bar_gen == g) yield();
}
inline void warp_barrier() {
  ++arrivals;
  const int w = threadIdx.x / 32;
  const int members = std::min(32, nthreads - 32 * w);
  const unsigned g = wbar_gen[w];
  if (++wbar_count[w] == members) {
    wbar_count[w] = 0;
    ++wbar_gen[w];
    return;
  }
  while (wbar_gen[w] == g) yield();
}
// every lane publishes v, then reads lane src's value
template <class T>
inline T exchange(T v, int src) {
  static_assert(sizeof(T) <= 8, "64-bit max");
  const int w = threadIdx.x / 32, l = threadIdx.x % 32;
  uint64_t u = 0;
  memcpy(&u, &v, sizeof(T));
  wbuf[w][l] = u;
  warp_barrier();
  T r;
  u = wbuf[w][src];
  memcpy(&r, &u, sizeof(T));
  warp_barrier();
  return r;
}

// every lane publishes v (<= 32 bytes); out[l] = lane l's value
template <class T>
inline void allgather(const T& v, T* out) {
  static_assert(sizeof(T) <= 32, "32 bytes max");
  const int w = threadIdx.x / 32, l = threadIdx.x % 32;
  memcpy(gbuf[w][l], &v, sizeof(T));
  warp_barrier();
  for (int i = 0; i < 32; ++i) memcpy(&out[i], gbuf[w][i], sizeof(T));
  warp_barrier();
}

inline void trampoline() {
  body();
  fibers[cur].done = true;
  ++nexited;
  // wake a pending block barrier whose count is now complete
  if (bar_count > 0 && bar_count == nthreads - nexited) {
    bar_count = 0;
    ++bar_gen;
  }
}

inline void run_block(unsigned nthr) {
  if (on_block_start) on_block_start();
  nthreads = (int)nthr;
  nexited = 0;
  bar_count = 0;
  for (int w = 0; w < 32; ++w) wbar_count[w] = 0;
  if (fibers.size() < nthr) fibers.resize(nthr);
  for (unsigned i = 0; i < nthr; ++i) {
    Fiber& f = fibers[i];
    if (f.stack.empty()) f.stack.resize(256 * 1024);
    f.done = false;
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack.data();
    f.ctx.uc_stack.ss_size = f.stack.size();
    f.ctx.uc_link = &sched_ctx;
    makecontext(&f.ctx, (void (*)())trampoline, 0);
  }
  int alive = (int)nthr;
  int stuck = 0;
  while (alive > 0) {
    const uint64_t before = arrivals + bar_gen + nexited;
    uint64_t wg = 0;
    for (int w = 0; w < 32; ++w) wg += wbar_gen[w];
    for (unsigned i = 0; i < nthr; ++i) {
      if (fibers[i].done) continue;
      cur = (int)i;
      threadIdx.x = i;
      in_fiber = true;
      swapcontext(&sched_ctx, &fibers[i].ctx);
      in_fiber = false;
      if (launch_failed) return;
      if (fibers[i].done) --alive;
    }
    uint64_t wg2 = 0;
    for (int w = 0; w < 32; ++w) wg2 += wbar_gen[w];
    if (alive > 0 && arrivals + bar_gen + nexited == before && wg == wg2) {
      if (on_stall && on_stall()) {
        stuck = 0;
      } else if (++stuck > 3) {
        fprintf(stderr, "EMU DEADLOCK: block %u, %d threads alive, block barrier count %d\n", blockIdx.x, alive, bar_count);
        if (on_deadlock) on_deadlock();
        if (!EMU_SOFT_FAILURES) abort();
        launch_failed = true;
        pending_error = cudaErrorLaunchTimeout;
        return;
      }
    } else {
      stuck = 0;
    }
  }
}
}  // namespace emu

inline void __syncthreads() { emu::block_barrier(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::warp_barrier(); }
template <class T>
inline T __shfl_xor_sync(unsigned, T v, int o) {
  return emu::exchange(v, (int)(threadIdx.x % 32) ^ o);
}
template <class T>
inline T __shfl_sync(unsigned, T v, int src) {
  return emu::exchange(v, src & 31);
}
template <class T>
inline T __shfl_up_sync(unsigned, T v, unsigned d) {
  const int l = threadIdx.x % 32;
  return emu::exchange(v, l >= (int)d ? l - (int)d : l);
}
template <class T>
inline T __shfl_down_sync(unsigned, T v, unsigned d) {
  const int l = threadIdx.x % 32;
  return emu::exchange(v, l + (int)d < 32 ? l + (int)d : l);
}
template <class T>
inline T __ldg(const T* p) { return *p; }
inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
inline float __expf(float x) { return expf(x); }
inline size_t __cvta_generic_to_shared(const void* p) { return (size_t)p; }
template <class T>
inline T __ldcs(const T* p) { return *p; }
template <class T>
inline T __ldcg(const T* p) { return *p; }
// fibers switch only at barriers and shuffles: a read-modify-write in between is atomic
inline int atomicAdd(int* p, int v) { const int o = *p; *p = o + v; return o; }
inline void __threadfence() {}
// forward's cp.async: shared addresses are offsets from the block's dynamic shared memory
inline uint32_t emu_smem_off(const void* p) { return (uint32_t)(static_cast<const char*>(p) - emu_dyn_smem); }
inline void emu_cp_async(uint32_t off, const void* src, int bytes) {
  memcpy(emu_dyn_smem + off, src, (size_t)bytes);
  memset(emu_dyn_smem + off + bytes, 0, (size_t)(16 - bytes));
}
inline float cospif(float x) { return cosf(3.14159265358979f * x); }

template <class... KArgs, class... Args>
inline void emu_launch(void (*k)(KArgs...), unsigned grid, unsigned block, size_t smem, cudaStream_t, Args... args) {
  std::tuple<std::decay_t<KArgs>...> targs(args...);
  std::vector<char> buf(smem + 1024);
  char* s = buf.data() + ((1024 - ((uintptr_t)buf.data() & 1023)) & 1023);
  memset(s, 0xcd, smem);  // garbage, as on a GPU
  emu_dyn_smem = s;
  emu_dyn_smem_bytes = smem;
  blockDim.x = block;
  gridDim.x = grid;
  emu::body = [&] { std::apply(k, targs); };
  emu::launch_failed = false;
  for (unsigned b = 0; b < grid && !emu::launch_failed; ++b) {
    blockIdx.x = b;
    try {
      emu::run_block(block);
    } catch (const emu::LaunchFailure&) {
    }
  }
}
