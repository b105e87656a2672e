#pragma once
// TMA tile copies (PTX ISA 9.7.9.25, cp.async.bulk.tensor; tensor_map.h encodes the CUtensorMap on the
// host). A load copies the box at the given coordinates (c0 the innermost dimension, in elements,
// signed) from global memory into shared memory, row-major with dimension 0 innermost and permuted by
// the map's swizzle (swizzle.h); box elements outside the tensor are filled with zeros, and the whole
// box's bytes count towards the mbarrier's complete-tx. A store copies a box from shared memory (same
// layout) to global memory and skips the elements outside the tensor.
//
// The shared-memory side must be 128-byte aligned, and aligned to the swizzle's repeat (1024 bytes for
// 128B) so that the pattern starts at the box's first row; the tensor map is a __grid_constant__
// kernel parameter (or lives in global memory).
#include <cuda.h>

#include "cuda/sm90/arch.cuh"

namespace ssd { namespace cuda { namespace sm90 {

// Fetches the tensor map into the descriptor cache ahead of its first copy.
__device__ __forceinline__ void tma_prefetch(const CUtensorMap* map) {
#if SSD_SM90A
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
#else
  SSD_SM90A_MISSING();
#endif
}

// Loads the 2D box at (c0, c1) into dst; completes its bytes on bar.
__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, uint64_t* bar, int c0, int c1) {
#if SSD_SM90A
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n"
      ::"r"(smem_addr(dst)), "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(smem_addr(bar))
      : "memory");
#else
  SSD_SM90A_MISSING();
#endif
}

// Loads the 3D box at (c0, c1, c2) into dst; completes its bytes on bar.
__device__ __forceinline__ void tma_load_3d(void* dst, const CUtensorMap* map, uint64_t* bar, int c0, int c1,
                                            int c2) {
#if SSD_SM90A
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n"
      ::"r"(smem_addr(dst)), "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(smem_addr(bar))
      : "memory");
#else
  SSD_SM90A_MISSING();
#endif
}

// Orders this thread's earlier generic-proxy accesses to shared memory before later async-proxy ones
// (a TMA store reading what the thread wrote, a wgmma reading it). Every writing thread runs it, then
// the threads sync, then one thread issues the copy.
__device__ __forceinline__ void fence_proxy_async_smem() {
#if SSD_SM90A
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#else
  SSD_SM90A_MISSING();
#endif
}

// Stores the 2D box at (c0, c1) from src into the tensor, in the current bulk group.
__device__ __forceinline__ void tma_store_2d(const CUtensorMap* map, const void* src, int c0, int c1) {
#if SSD_SM90A
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];\n"
               ::"l"(reinterpret_cast<uint64_t>(map)), "r"(smem_addr(src)), "r"(c0), "r"(c1)
               : "memory");
#else
  SSD_SM90A_MISSING();
#endif
}

// Stores the 3D box at (c0, c1, c2) from src into the tensor, in the current bulk group.
__device__ __forceinline__ void tma_store_3d(const CUtensorMap* map, const void* src, int c0, int c1, int c2) {
#if SSD_SM90A
  asm volatile("cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [%0, {%2, %3, %4}], [%1];\n"
               ::"l"(reinterpret_cast<uint64_t>(map)), "r"(smem_addr(src)), "r"(c0), "r"(c1), "r"(c2)
               : "memory");
#else
  SSD_SM90A_MISSING();
#endif
}

// Closes the current bulk group of this thread's stores.
__device__ __forceinline__ void tma_store_commit() {
#if SSD_SM90A
  asm volatile("cp.async.bulk.commit_group;\n" ::: "memory");
#else
  SSD_SM90A_MISSING();
#endif
}

// Waits until at most N of this thread's newest bulk groups still read their shared memory (the
// sources of the others may be overwritten).
template <int N>
__device__ __forceinline__ void tma_store_wait_read() {
#if SSD_SM90A
  asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
#else
  SSD_SM90A_MISSING();
#endif
}

// Waits until at most N of this thread's newest bulk groups are incomplete (the others' writes done).
template <int N>
__device__ __forceinline__ void tma_store_wait() {
#if SSD_SM90A
  asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(N) : "memory");
#else
  SSD_SM90A_MISSING();
#endif
}

}}}  // namespace ssd::cuda::sm90
