// Host pieces the chain kernels' launches share (chain_forward.cu, chain_backward.cu): how the chains are
// cut into segments, the segments' workspace, the tensor maps, the segments' first launch.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#include "cuda/common/host.h"
#include "cuda/sm90/chain_states.cuh"
#include "cuda/sm90/forward.h"
#include "cuda/sm90/tensor_map.h"

namespace ssd { namespace cuda { namespace sm90 {

// What forces a direction's path (path_choice, backward_path_choice): the override set through the
// addon (cuda::set_path_override; index 0 the forward, 1 the backward), else the variable, exactly
// "sm90" or "sm80"; else the direction's default.
inline std::atomic<int> path_overrides[2] = {};  // PathChoice values; kDefault (0): none
inline PathChoice path_from(int direction, const char* variable) {
  const auto forced = static_cast<PathChoice>(path_overrides[direction].load(std::memory_order_relaxed));
  if (forced != PathChoice::kDefault) return forced;
  const char* v = std::getenv(variable);
  if (v && std::strcmp(v, "sm90") == 0) return PathChoice::kSm90;
  if (v && std::strcmp(v, "sm80") == 0) return PathChoice::kSm80;
  return PathChoice::kDefault;
}

// f(T(), std::integral_constant<int, N>()) for p's 16-bit element type T and dstate N (64 or 128), the
// shapes the chain kernels are built for (the callers' takes() has checked them).
template <class F>
SsdStatus run_chain_shape(const SsdParams& p, std::string* err, F f) {
  return run_path(path_of(p), [&](auto t) {
    using T = decltype(t);
    if constexpr (sizeof(T) == 2) {
      return p.dstate == 64 ? f(T(), std::integral_constant<int, 64>()) : f(T(), std::integral_constant<int, 128>());
    } else {
      if (err) *err = "internal: the sm_90a kernels take 16-bit dtypes only";
      return SSD_ERR_INTERNAL;
    }
  });
}

inline int64_t pairs_of(const SsdParams& p) { return (p.cu_seqlens ? p.num_seqs : p.batch) * p.nheads; }

// Segments (chain.cuh): with fewer (chain, head) pairs than kSegmentCtas, each chain of an unpacked
// call is cut into about kSegmentCtas / pairs segments of whole 64-position blocks (G2: 32 pairs, 4
// segments of 64 blocks). The first launch cuts the segments it walks (all but one) into `fine` pieces,
// so that it runs about kPieceCtas CTAs (two to an SM; each of kStateCols columns of the state), pieces
// of at least kMinPieceBlocks blocks (G4: 48 pairs, 2 segments of 64 blocks, the first in 5 pieces).
// Constants, not the SM count, so that the workspace and the bits never depend on the device. Packed
// calls keep a CTA per sequence.
constexpr int64_t kSegmentCtas = 128, kPieceCtas = 256, kMinPieceBlocks = 4;
struct Cut {
  int nseg = 1, seg_blocks = 0;
  int fine = 1, piece_blocks = 0;
  // the first launch's pieces, and the workspace's slots: all but the last segment's (or the first's)
  int64_t slots() const { return (int64_t)(nseg - 1) * fine; }
};
inline Cut cut_of(const SsdParams& p) {
  Cut c;
  const int64_t pairs = pairs_of(p), nblk = (p.seqlen + 63) / 64;
  c.seg_blocks = c.piece_blocks = (int)nblk;
  if (p.cu_seqlens || pairs >= kSegmentCtas || nblk < 2) return c;
  const int64_t want = std::min<int64_t>(kSegmentCtas / pairs, nblk);
  c.seg_blocks = (int)((nblk + want - 1) / want);
  c.nseg = (int)((nblk + c.seg_blocks - 1) / c.seg_blocks);
  if (c.nseg == 1) return c;
  const int64_t ctas = pairs * (c.nseg - 1) * (p.dstate / kStateCols);
  c.fine = (int)std::max<int64_t>(1, std::min<int64_t>(kPieceCtas / ctas, c.seg_blocks / kMinPieceBlocks));
  c.piece_blocks = (c.seg_blocks + c.fine - 1) / c.fine;
  return c;
}
// What each piece adds to its far side (fp32 p x n) and its decay product, for the slots of Cut.
inline size_t seg_state_bytes(const SsdParams& p, const Cut& c) {
  return (size_t)c.slots() * (size_t)pairs_of(p) * (size_t)(p.headdim * p.dstate) * sizeof(float);
}
inline size_t seg_bytes(const SsdParams& p, const Cut& c) {
  if (c.nseg == 1) return 0;
  return seg_state_bytes(p, c) + (size_t)c.slots() * (size_t)pairs_of(p) * sizeof(float);
}
inline ChainSegs segs_in(const SsdParams& p, const Cut& cut, void* workspace) {
  ChainSegs segs;
  segs.nseg = cut.nseg;
  segs.seg_blocks = cut.seg_blocks;
  segs.fine = cut.fine;
  segs.piece_blocks = cut.piece_blocks;
  segs.ends = static_cast<float*>(workspace);
  segs.decays = reinterpret_cast<float*>(static_cast<char*>(workspace) + seg_state_bytes(p, cut));
  return segs;
}

// The tensor map of a 16-bit (batch, seqlen, heads, inner) tensor as (inner, heads, batch * seqlen) with
// boxes {64, 1, 64} in the 128-byte swizzle.
template <class T>
SsdStatus chain_map(CUtensorMap* map, const SsdParams& p, const void* base, int64_t inner, int64_t heads, int64_t head_stride,
                    int64_t seq_stride, std::string* err) {
  TmaTensor t;
  t.dtype = std::is_same<T, __half>::value ? TmaDtype::kF16 : TmaDtype::kBf16;
  t.rank = 3;
  t.base = base;
  t.dims[0] = (uint64_t)inner;
  t.dims[1] = (uint64_t)heads;
  t.dims[2] = (uint64_t)p.batch * (uint64_t)p.seqlen;
  t.strides[0] = (uint64_t)head_stride * 2;
  t.strides[1] = (uint64_t)seq_stride * 2;
  t.box[0] = 64;
  t.box[1] = 1;
  t.box[2] = 64;
  t.swizzle = Swizzle::k128B;
  return encode_tensor_map(map, t, err);
}

// The maps of x, z (when present), B and C.
template <class T>
SsdStatus chain_maps(ChainMaps* maps, const SsdParams& p, std::string* err) {
  std::memset(maps, 0, sizeof *maps);
  SsdStatus st;
  if ((st = chain_map<T>(&maps->x, p, p.x, p.headdim, p.nheads, p.x_head_stride, p.x_seq_stride, err)) != SSD_OK) return st;
  if ((st = chain_map<T>(&maps->B, p, p.B, p.dstate, p.ngroups, p.B_group_stride, p.B_seq_stride, err)) != SSD_OK) return st;
  if ((st = chain_map<T>(&maps->C, p, p.C, p.dstate, p.ngroups, p.C_group_stride, p.C_seq_stride, err)) != SSD_OK) return st;
  if (p.z && (st = chain_map<T>(&maps->z, p, p.z, p.headdim, p.nheads, p.z_head_stride, p.z_seq_stride, err)) != SSD_OK)
    return st;
  return SSD_OK;
}

// Enqueues one launch of k_chain_states<Tr> over `segments` segments (or pieces) of every (chain, head)
// pair, each in Tr::kParts column parts.
template <class Tr>
SsdStatus launch_states(const SsdParams& p, const ChainMaps& maps, const ChainSegs& segs, const ChainStatesIO& io, int segments,
                        cudaStream_t stream, const char* name, std::string* err) {
  auto* k = k_chain_states<Tr>;
  SsdStatus st;
  if ((st = allow_smem(k, Tr::kSmem, name, err)) != SSD_OK) return st;
  k<<<(unsigned)pairs_of(p) * (unsigned)segments * (unsigned)Tr::kParts, Tr::kThreads, Tr::kSmem, stream>>>(p, maps, segs, io);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? SSD_OK : cuda_fail(e, (std::string("launch ") + name).c_str(), err);
}

}}}  // namespace ssd::cuda::sm90
