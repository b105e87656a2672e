#pragma once
// What every sm90 wrapper shares: the test for the sm_90a target and the shared-memory address of a
// generic pointer.
#include <cuda_runtime.h>

#include <cstdint>

// SSD_SM90A is 1 in the device pass for sm_90a only: wgmma, TMA tensor copies and mbarrier
// transaction counts need the architecture-specific target, for which nvcc defines
// __CUDA_ARCH_FEAT_SM90_ALL (-arch=sm_90a, -gencode arch=compute_90a,...). Not for sm_90 or sm_100+.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define SSD_SM90A 1
#else
#define SSD_SM90A 0
#endif

// The body of a wrapper built for any other target: a trap in device code (no kernel of another
// target may call it), nothing in the host pass.
#if defined(__CUDA_ARCH__)
#define SSD_SM90A_MISSING() __trap()
#else
#define SSD_SM90A_MISSING() ((void)0)
#endif

namespace ssd { namespace cuda { namespace sm90 {

// The 32-bit shared-state-space address of p (which must point into this CTA's shared memory).
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// setmaxnreg (PTX ISA 9.7.19.5): every warp of a warpgroup executes the same one, and the warpgroup's
// per-thread register budget becomes kRegs (a multiple of 8 in 24 .. 256): lowered registers return to
// the SM's pool, raised ones are taken from it (waiting until the pool has them). A kernel whose
// warpgroups need unequal budgets (a lean producer beside hungry consumers) rebalances with these.
template <int kRegs>
__device__ __forceinline__ void regs_lower() {
#if SSD_SM90A
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(kRegs));
#else
  SSD_SM90A_MISSING();
#endif
}
template <int kRegs>
__device__ __forceinline__ void regs_raise() {
#if SSD_SM90A
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(kRegs));
#else
  SSD_SM90A_MISSING();
#endif
}

}}}  // namespace ssd::cuda::sm90
