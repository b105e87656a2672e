// Host side of the sm_90a backward (chain_states.cuh, bwd_block.cuh): which calls it takes, its
// workspace, the tensor maps, the launches.
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "cuda/common/host.h"
#include "cuda/sm90/backward.h"
#include "cuda/sm90/bwd_block.cuh"
#include "cuda/sm90/chain_host.h"
#include "cuda/sm90/forward.h"

namespace ssd { namespace cuda { namespace sm90 {
namespace {

template <class T, int N>
SsdStatus launch_walks(const SsdBackwardParams& bw, cudaStream_t stream, void* h_blocks, void* dh_blocks, void* workspace,
                       Walks which, std::string* err) {
  const SsdParams& p = bw.fwd;
  alignas(64) ChainMaps maps;
  SsdStatus st;
  if ((st = chain_maps<T>(&maps, p, err)) != SSD_OK) return st;
  if ((st = chain_map<T>(&maps.dy, p, bw.dy, p.headdim, p.nheads, p.x_head_stride, p.x_seq_stride, err)) != SSD_OK) return st;
  const Cut cut = cut_of(p);
  const ChainSegs segs = segs_in(p, cut, workspace);
  const ChainStatesIO none{nullptr, nullptr, nullptr};
  // forward: H entering every block; the segments' end states first where the chains are cut
  if (which & kForwardWalk) {
    if (cut.nseg > 1 &&
        (st = launch_states<ChainStates<T, N, false, false>>(p, maps, segs, none, (int)cut.slots(), stream, "k_chain_states (segment ends)",
                                                             err)) != SSD_OK)
      return st;
    const ChainStatesIO fwd{h_blocks, nullptr, nullptr};
    if ((st = launch_states<ChainStates<T, N, false, true>>(p, maps, segs, fwd, cut.nseg, stream, "k_chain_states (H per block)",
                                                            err)) != SSD_OK)
      return st;
  }
  if (!(which & kReverseWalk)) return SSD_OK;
  // reverse: dH leaving every block; the segments' start gradients first (the same workspace, reused
  // once the forward walk has read it: the stream orders them), the last from d_final_states
  const ChainStatesIO starts{nullptr, bw.d_final_states, nullptr};
  if (cut.nseg > 1 &&
      (st = launch_states<ChainStates<T, N, true, false>>(p, maps, segs, starts, (int)cut.slots(), stream,
                                                          "k_chain_states (segment start gradients)", err)) != SSD_OK)
    return st;
  const ChainStatesIO rev{dh_blocks, bw.d_final_states, bw.d_initial_states};
  return launch_states<ChainStates<T, N, true, true>>(p, maps, segs, rev, cut.nseg, stream, "k_chain_states (dH per block)", err);
}

// The workspace of the whole backward: H and dH per block, the segments', the per-CTA partials.
struct BwdLayout {
  size_t h, dh, seg, dA, dbias, dD, total;
};
BwdLayout bwd_layout(const SsdParams& p) {
  BwdLayout l;
  auto up = [](size_t v) { return (v + 255) & ~size_t(255); };
  const size_t vals = (size_t)block_slots(p) * (size_t)(p.nheads * p.headdim * p.dstate);
  const size_t parts = (size_t)block_slots(p) * (size_t)p.nheads;
  l.h = 0;
  l.dh = l.h + up(vals * 2);
  l.seg = l.dh + up(vals * 2);
  l.dA = l.seg + up(seg_bytes(p, cut_of(p)));
  l.dbias = l.dA + up(parts * 4);
  l.dD = l.dbias + up(parts * 4);
  l.total = l.dD + up(parts * 4 * (p.D_per_channel ? (size_t)p.headdim : 1));
  return l;
}

template <class T, int N>
SsdStatus launch_backward(const SsdBackwardParams& bw, cudaStream_t stream, void* workspace, std::string* err) {
  using Tr = BwdBlock<T, N>;
  const SsdParams& p = bw.fwd;
  const BwdLayout l = bwd_layout(p);
  char* ws = static_cast<char*>(workspace);
  SsdStatus st;
  if ((st = launch_walks<T, N>(bw, stream, ws + l.h, ws + l.dh, ws + l.seg, kBothWalks, err)) != SSD_OK) return st;
  alignas(64) BlockMaps maps;
  std::memset(&maps, 0, sizeof maps);
  if ((st = chain_maps<T>(&maps.c, p, err)) != SSD_OK) return st;
  if ((st = chain_map<T>(&maps.c.dy, p, bw.dy, p.headdim, p.nheads, p.x_head_stride, p.x_seq_stride, err)) != SSD_OK) return st;
  const int64_t slots = block_slots(p);
  for (int u = 0; u < 2; ++u) {
    TmaTensor t;
    t.dtype = std::is_same<T, __half>::value ? TmaDtype::kF16 : TmaDtype::kBf16;
    t.rank = 2;
    t.base = ws + (u ? l.dh : l.h);
    t.dims[0] = (uint64_t)N;
    t.dims[1] = (uint64_t)slots * (uint64_t)p.nheads * 64;
    t.strides[0] = (uint64_t)N * 2;
    t.box[0] = 64;
    t.box[1] = 64;
    t.swizzle = Swizzle::k128B;
    if ((st = encode_tensor_map(u ? &maps.dh : &maps.h, t, err)) != SSD_OK) return st;
  }
  const BlockParts parts{reinterpret_cast<float*>(ws + l.dA), reinterpret_cast<float*>(ws + l.dbias),
                         reinterpret_cast<float*>(ws + l.dD)};
  auto* k = k_bwd_block<Tr>;
  if ((st = allow_smem(k, Tr::kSmem, "k_bwd_block", err)) != SSD_OK) return st;
  k<<<(unsigned)(slots * p.ngroups), Tr::kThreads, Tr::kSmem, stream>>>(bw, maps, parts);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return cuda_fail(e, "launch k_bwd_block", err);
  k_bwd_block_finish<<<(unsigned)p.nheads, 32 * kFinishWarps, 0, stream>>>(bw, parts, slots);
  e = cudaGetLastError();
  return e == cudaSuccess ? SSD_OK : cuda_fail(e, "launch k_bwd_block_finish", err);
}

}  // namespace

bool takes_backward(const SsdBackwardParams& bw, std::string* why) {
  if (!takes_inputs(bw.fwd, why)) return false;
  const SsdParams& p = bw.fwd;
  auto refuse = [&](const char* reason) {
    if (why) *why = reason;
    return false;
  };
  // the gradients have their inputs' dtypes and layouts (cuda_supports_backward); dy is read as x is
  // (TMA), so it must have x's dtype and layout (y_ungated, where kept, is not read: bwd_block.cuh)
  if (bw.dy_type != p.x_type || bw.dy_batch_stride != p.x_batch_stride || bw.dy_seq_stride != p.x_seq_stride ||
      bw.dy_head_stride != p.x_head_stride)
    return refuse("dy not of x's dtype and layout");
  if (!aligned(bw.d_final_states, 8) || !aligned(bw.d_initial_states, 8)) return refuse("state gradients not 8-byte aligned");
  return true;
}

int64_t block_slots(const SsdParams& p) {
  const int64_t per_row = (p.seqlen + 63) / 64;
  return p.cu_seqlens ? per_row + p.num_seqs : p.batch * per_row;
}

size_t states_workspace_bytes(const SsdParams& p) { return seg_bytes(p, cut_of(p)); }

size_t backward_workspace_bytes(const SsdParams& p) { return bwd_layout(p).total; }

PathChoice backward_path_choice() { return path_from(1, "SSD_KERNELS_BACKWARD_PATH"); }

SsdStatus backward(const SsdBackwardParams& bw, void* stream_v, void* workspace, std::string* err) {
  std::string why;
  if (!takes_backward(bw, &why)) {
    if (err) *err = "the sm_90a backward does not take this call: " + why;
    return SSD_ERR_UNSUPPORTED;
  }
  cudaStream_t stream = static_cast<cudaStream_t>(stream_v);
  return run_chain_shape(bw.fwd, err, [&](auto t, auto n) { return launch_backward<decltype(t), decltype(n)::value>(bw, stream, workspace, err); });
}

SsdStatus backward_states(const SsdBackwardParams& bw, void* stream_v, void* h_blocks, void* dh_blocks, void* workspace,
                          std::string* err, Walks which) {
  std::string why;
  if (!takes_backward(bw, &why)) {
    if (err) *err = "the sm_90a state walks do not take this call: " + why;
    return SSD_ERR_UNSUPPORTED;
  }
  cudaStream_t stream = static_cast<cudaStream_t>(stream_v);
  return run_chain_shape(bw.fwd, err, [&](auto t, auto n) {
    return launch_walks<decltype(t), decltype(n)::value>(bw, stream, h_blocks, dh_blocks, workspace, which, err);
  });
}

}}}  // namespace ssd::cuda::sm90
