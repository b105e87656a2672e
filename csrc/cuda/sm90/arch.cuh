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

}}}  // namespace ssd::cuda::sm90
