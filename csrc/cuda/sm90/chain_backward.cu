// Host side of the sm_90a backward's state walks (chain_states.cuh): which calls they take, the tensor
// maps, the launches.
#include <cuda_runtime.h>

#include <string>

#include "cuda/common/host.h"
#include "cuda/sm90/backward.h"
#include "cuda/sm90/chain_host.h"
#include "cuda/sm90/forward.h"

namespace ssd { namespace cuda { namespace sm90 {
namespace {

template <class T, int N>
SsdStatus launch_walks(const SsdBackwardParams& bw, cudaStream_t stream, void* h_blocks, void* dh_blocks, void* workspace,
                       std::string* err) {
  const SsdParams& p = bw.fwd;
  alignas(64) ChainMaps maps;
  SsdStatus st;
  if ((st = chain_maps<T>(&maps, p, err)) != SSD_OK) return st;
  if ((st = chain_map<T>(&maps.dy, p, bw.dy, p.headdim, p.nheads, bw.dy_head_stride, bw.dy_seq_stride, err)) != SSD_OK) return st;
  const Cut cut = cut_of(p);
  const ChainSegs segs = segs_in(p, cut, workspace);
  const ChainStatesIO none{nullptr, nullptr, nullptr};
  // forward: H entering every block; the segments' end states first where the chains are cut
  if (cut.nseg > 1 &&
      (st = launch_states<ChainStates<T, N, false, false>>(p, maps, segs, none, cut.nseg - 1, stream, "k_chain_states (segment ends)",
                                                           err)) != SSD_OK)
    return st;
  const ChainStatesIO fwd{h_blocks, nullptr, nullptr};
  if ((st = launch_states<ChainStates<T, N, false, true>>(p, maps, segs, fwd, cut.nseg, stream, "k_chain_states (H per block)",
                                                          err)) != SSD_OK)
    return st;
  // reverse: dH leaving every block; the segments' start gradients first (the same workspace, reused
  // once the forward walk has read it: the stream orders them), the last from d_final_states
  const ChainStatesIO starts{nullptr, bw.d_final_states, nullptr};
  if (cut.nseg > 1 &&
      (st = launch_states<ChainStates<T, N, true, false>>(p, maps, segs, starts, cut.nseg - 1, stream,
                                                          "k_chain_states (segment start gradients)", err)) != SSD_OK)
    return st;
  const ChainStatesIO rev{dh_blocks, bw.d_final_states, bw.d_initial_states};
  return launch_states<ChainStates<T, N, true, true>>(p, maps, segs, rev, cut.nseg, stream, "k_chain_states (dH per block)", err);
}

}  // namespace

bool takes_backward(const SsdBackwardParams& bw, std::string* why) {
  if (!takes(bw.fwd, why)) return false;
  const SsdParams& p = bw.fwd;
  if (bw.dy_type != p.x_type) {
    if (why) *why = "dy not of x's dtype";
    return false;
  }
  if (!aligned(bw.dy, 16) || bw.dy_seq_stride % 8 || bw.dy_head_stride % 8 ||
      (p.batch > 1 && bw.dy_batch_stride != p.seqlen * bw.dy_seq_stride)) {
    if (why) *why = "dy not in a layout a tensor map describes";
    return false;
  }
  if (!aligned(bw.d_final_states, 8) || !aligned(bw.d_initial_states, 8)) {
    if (why) *why = "state gradients not 8-byte aligned";
    return false;
  }
  return true;
}

int64_t block_slots(const SsdParams& p) {
  const int64_t per_row = (p.seqlen + 63) / 64;
  return p.cu_seqlens ? per_row + p.num_seqs : p.batch * per_row;
}

size_t states_workspace_bytes(const SsdParams& p) { return seg_bytes(p, cut_of(p)); }

SsdStatus backward_states(const SsdBackwardParams& bw, void* stream_v, void* h_blocks, void* dh_blocks, void* workspace,
                          std::string* err) {
  std::string why;
  if (!takes_backward(bw, &why)) {
    if (err) *err = "the sm_90a state walks do not take this call: " + why;
    return SSD_ERR_UNSUPPORTED;
  }
  cudaStream_t stream = static_cast<cudaStream_t>(stream_v);
  return run_path(path_of(bw.fwd), [&](auto t) {
    using T = decltype(t);
    if constexpr (sizeof(T) == 2)
      return bw.fwd.dstate == 64 ? launch_walks<T, 64>(bw, stream, h_blocks, dh_blocks, workspace, err)
                                 : launch_walks<T, 128>(bw, stream, h_blocks, dh_blocks, workspace, err);
    if (err) *err = "internal: the sm_90a state walks take 16-bit dtypes only";
    return SSD_ERR_INTERNAL;
  });
}

}}}  // namespace ssd::cuda::sm90
