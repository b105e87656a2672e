#pragma once
// mbarrier (PTX ISA 9.7.13.15, "Parallel Synchronization and Communication Instructions: mbarrier"):
// a 64-bit object in this CTA's shared memory (8-byte aligned) holding the current phase, the arrivals
// still pending in it (reset to the expected count when a phase completes) and a transaction count
// (tx-count, bytes: raised by expect-tx, lowered by the complete-tx of the async copies that name the
// barrier). A phase completes when its pending arrivals and its tx-count are both zero; waiters test
// the parity of a completed phase.
#include "cuda/sm90/arch.cuh"

namespace ssd { namespace cuda { namespace sm90 {

// Phase 0 expects `count` arrivals (1 .. 2^20 - 1) and no transaction bytes.
__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
#if SSD_SM90A
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count) : "memory");
#else
  SSD_SM90A_MISSING();
#endif
}

// Makes this thread's earlier mbar_init visible to the other threads and to the async proxy (the TMA
// unit's complete-tx); the block syncs after it, before any other use of the barriers.
__device__ __forceinline__ void mbar_init_fence() {
#if SSD_SM90A
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#else
  SSD_SM90A_MISSING();
#endif
}

// One arrival on the current phase (release semantics at CTA scope).
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
#if SSD_SM90A
  asm volatile(
      "{\n"
      ".reg .b64 state;\n"
      "mbarrier.arrive.shared::cta.b64 state, [%0];\n"
      "}\n" ::"r"(smem_addr(bar))
      : "memory");
#else
  SSD_SM90A_MISSING();
#endif
}

// Expect `bytes` more transaction bytes in the current phase (what the TMA loads that name the barrier
// will complete), then one arrival.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
#if SSD_SM90A
  asm volatile(
      "{\n"
      ".reg .b64 state;\n"
      "mbarrier.arrive.expect_tx.shared::cta.b64 state, [%0], %1;\n"
      "}\n" ::"r"(smem_addr(bar)), "r"(bytes)
      : "memory");
#else
  SSD_SM90A_MISSING();
#endif
}

// Whether the phase of parity `parity` has completed, that is whether the current phase's parity
// differs (acquire semantics at CTA scope when it has). The hardware waits a bounded time before
// answering false.
__device__ __forceinline__ bool mbar_try_wait(uint64_t* bar, uint32_t parity) {
#if SSD_SM90A
  uint32_t done;
  asm volatile(
      "{\n"
      ".reg .pred p;\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
      "selp.u32 %0, 1, 0, p;\n"
      "}\n"
      : "=r"(done) : "r"(smem_addr(bar)), "r"(parity) : "memory");
  return done != 0;
#else
  SSD_SM90A_MISSING();
  return true;
#endif
}

// Waits until the phase of parity `parity` has completed. The k-th use (k = 0, 1, ...) of a barrier
// waits parity k & 1; a producer waiting for a free slot before its first use passes parity 1, which
// a fresh barrier reports complete (the phase before phase 0).
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  while (!mbar_try_wait(bar, parity)) {
  }
}

}}}  // namespace ssd::cuda::sm90
