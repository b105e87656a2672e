#pragma once
// Host side of TMA: a tiled CUtensorMap (rank 2 or 3; bf16, f16 or fp32; no, 32B, 64B or 128B
// swizzle; out-of-bounds elements read as zero) encoded by the driver's cuTensorMapEncodeTiled. The
// function is looked up at run time through the runtime's cudaGetDriverEntryPoint(ByVersion), so the
// addon keeps linking only the (static) CUDA runtime and never libcuda. Errors come back as a status
// and a message, never an abort.
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "ssd_kernels.h"
#include "cuda/sm90/swizzle.h"

namespace ssd { namespace cuda { namespace sm90 {

enum class TmaDtype { kBf16, kF16, kF32 };

inline uint32_t tma_dtype_bytes(TmaDtype t) { return t == TmaDtype::kF32 ? 4u : 2u; }

// A tensor in global memory and the box one copy moves. Dimension 0 is the innermost (contiguous);
// strides[i - 1] is the distance in bytes between consecutive indices of dimension i (i >= 1), in any
// order (a 3D view may step back and forth inside a 2D matrix). The box lands in shared memory as
// box[0] x box[1] (x box[2]) elements, dimension 0 innermost, permuted by the swizzle.
struct TmaTensor {
  TmaDtype dtype = TmaDtype::kBf16;
  int rank = 2;
  const void* base = nullptr;
  uint64_t dims[3] = {1, 1, 1};
  uint64_t strides[2] = {0, 0};
  uint32_t box[3] = {1, 1, 1};
  Swizzle swizzle = Swizzle::kNone;
};

// Bytes one copy of the box moves (what a load completes on its mbarrier, out-of-bounds fill included).
inline uint32_t tma_box_bytes(const TmaTensor& t) {
  uint32_t n = tma_dtype_bytes(t.dtype);
  for (int i = 0; i < t.rank; ++i) n *= t.box[i];
  return n;
}

// The driver's cuTensorMapEncodeTiled (ABI of CUDA 12.0), or nullptr with the reason in *err. Only a
// success is cached.
inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder(std::string* err) {
  static std::atomic<void*> cached{nullptr};
  if (void* p = cached.load(std::memory_order_acquire))
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
#if CUDART_VERSION >= 12050
  const cudaError_t e =
      cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found);
#else
  const cudaError_t e = cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &fn, cudaEnableDefault, &found);
#endif
  if (e != cudaSuccess) {
    if (err)
      *err = std::string("cudaGetDriverEntryPoint(cuTensorMapEncodeTiled): ") + cudaGetErrorName(e) + ": " +
             cudaGetErrorString(e);
    return nullptr;
  }
  if (found != cudaDriverEntryPointSuccess || fn == nullptr) {
    if (err) *err = "cuTensorMapEncodeTiled: not in this driver (TMA needs a CUDA 12 driver)";
    return nullptr;
  }
  cached.store(fn, std::memory_order_release);
  return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
}

// The requirements of cuTensorMapEncodeTiled (cuda.h) that concern these maps, checked here so that
// a mistake names its field: "" when t is acceptable.
inline std::string tensor_map_problem(const TmaTensor& t) {
  const uint64_t es = tma_dtype_bytes(t.dtype);
  if (t.rank != 2 && t.rank != 3) return "rank " + std::to_string(t.rank) + " (2 or 3)";
  if (reinterpret_cast<uintptr_t>(t.base) % 16 != 0) return "base address not 16-byte aligned";
  for (int i = 0; i < t.rank; ++i) {
    const std::string d = "dimension " + std::to_string(i);
    if (t.dims[i] == 0 || t.dims[i] > (uint64_t(1) << 32))
      return d + ": size " + std::to_string(t.dims[i]) + " (1 .. 2^32)";
    if (t.box[i] == 0 || t.box[i] > 256) return d + ": box " + std::to_string(t.box[i]) + " (1 .. 256)";
    if (i > 0 && (t.strides[i - 1] % 16 != 0 || t.strides[i - 1] >= (uint64_t(1) << 40)))
      return d + ": stride " + std::to_string(t.strides[i - 1]) + " bytes (a multiple of 16 below 2^40)";
  }
  const uint64_t inner = t.box[0] * es;
  if (inner % 16 != 0) return "box row of " + std::to_string(inner) + " bytes (a multiple of 16)";
  if (t.swizzle != Swizzle::kNone && inner > static_cast<uint64_t>(t.swizzle))
    return "box row of " + std::to_string(inner) + " bytes wider than the " +
           std::to_string(static_cast<uint32_t>(t.swizzle)) + "-byte swizzle";
  return "";
}

// Encodes t into *map (64-byte aligned host memory; pass it to the kernel as a __grid_constant__
// parameter). SSD_ERR_INVALID_ARGUMENT for a map the driver would refuse, SSD_ERR_UNSUPPORTED without
// the driver function, SSD_ERR_CUDA when the driver refuses it.
inline SsdStatus encode_tensor_map(CUtensorMap* map, const TmaTensor& t, std::string* err) {
  if (reinterpret_cast<uintptr_t>(map) % 64 != 0) {
    if (err) *err = "tensor map: the CUtensorMap is not 64-byte aligned";
    return SSD_ERR_INVALID_ARGUMENT;
  }
  const std::string problem = tensor_map_problem(t);
  if (!problem.empty()) {
    if (err) *err = "tensor map: " + problem;
    return SSD_ERR_INVALID_ARGUMENT;
  }
  const PFN_cuTensorMapEncodeTiled_v12000 encode = tensor_map_encoder(err);
  if (encode == nullptr) return SSD_ERR_UNSUPPORTED;
  const CUtensorMapDataType dtype = t.dtype == TmaDtype::kBf16  ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                    : t.dtype == TmaDtype::kF16 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16
                                                                : CU_TENSOR_MAP_DATA_TYPE_FLOAT32;
  const CUtensorMapSwizzle swizzle = t.swizzle == Swizzle::k128B  ? CU_TENSOR_MAP_SWIZZLE_128B
                                     : t.swizzle == Swizzle::k64B ? CU_TENSOR_MAP_SWIZZLE_64B
                                     : t.swizzle == Swizzle::k32B ? CU_TENSOR_MAP_SWIZZLE_32B
                                                                  : CU_TENSOR_MAP_SWIZZLE_NONE;
  cuuint64_t dims[3], strides[2];
  cuuint32_t box[3], elem_strides[3] = {1, 1, 1};
  for (int i = 0; i < t.rank; ++i) {
    dims[i] = t.dims[i];
    box[i] = t.box[i];
    if (i > 0) strides[i - 1] = t.strides[i - 1];
  }
  const CUresult r = encode(map, dtype, static_cast<cuuint32_t>(t.rank), const_cast<void*>(t.base), dims, strides, box,
                            elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
                            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS) {
    if (err) *err = "cuTensorMapEncodeTiled: CUresult " + std::to_string(static_cast<int>(r)) +
                    (r == CUDA_ERROR_INVALID_VALUE ? " (invalid value)" : "");
    return SSD_ERR_CUDA;
  }
  return SSD_OK;
}

}}}  // namespace ssd::cuda::sm90
