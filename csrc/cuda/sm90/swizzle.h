#pragma once
// The shared-memory swizzle that TMA writes with (a tensor map's CU_TENSOR_MAP_SWIZZLE_*) and wgmma
// reads with (a matrix descriptor's swizzle mode), and where a byte lands under it. Host and device.
//
// PTX ISA, "Tensors: Swizzling Modes" and wgmma's "Shared Memory Matrix Layout" (9.7.15.5.1.2): a
// swizzle of span S bytes (32, 64 or 128) permutes the 16-byte chunks inside each S-byte row of an
// 8-row atom (8 x S bytes, the pattern's repeat): chunk c of row r goes to chunk c XOR (r mod S/16).
// Both units apply it to the shared-memory address itself (bits 4.. of the address XORed with bits
// 7..), which is why the buffers are aligned to the repeat and why a descriptor can step through an
// atom's columns by adding bytes to its start address.
#include <cuda_runtime.h>

#include <cstdint>

namespace ssd { namespace cuda { namespace sm90 {

// The value is the span in bytes (0: no swizzle).
enum class Swizzle : uint32_t { kNone = 0, k32B = 32, k64B = 64, k128B = 128 };

// Bytes after which the pattern repeats (8 rows of the span); 16 without swizzle.
__host__ __device__ constexpr uint32_t swizzle_repeat(Swizzle s) {
  return s == Swizzle::kNone ? 16u : 8u * static_cast<uint32_t>(s);
}

// Where the byte at shared-memory address (or repeat-aligned offset) `addr` of the unswizzled image
// lands: its 16-byte chunk index XOR the row index within the atom, over log2(S / 16) bits.
__host__ __device__ constexpr uint32_t swizzle_addr(uint32_t addr, Swizzle s) {
  return s == Swizzle::kNone ? addr : addr ^ (((addr >> 7) & (static_cast<uint32_t>(s) / 16u - 1u)) << 4);
}

}}}  // namespace ssd::cuda::sm90
