// Host side of the sm_90a forward (fwd_chain.cuh): which calls it takes, the tensor maps, the launch.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/dtype.h"
#include "cuda/common/host.h"
#include "cuda/sm90/forward.h"
#include "cuda/sm90/chain_host.h"
#include "cuda/sm90/fwd_chain.cuh"

namespace ssd { namespace cuda { namespace sm90 {
namespace {

bool refuse(std::string* why, const char* reason) {
  if (why) *why = reason;
  return false;
}

// A 16-bit tensor (batch, seqlen, heads, inner) that one tensor map over (inner, heads, batch * seqlen)
// describes: 16-byte aligned base and strides, and batch rows back to back.
bool tma_ok(const void* ptr, int64_t batch_stride, int64_t seq_stride, int64_t head_stride, const SsdParams& p) {
  return aligned(ptr, 16) && seq_stride % 8 == 0 && head_stride % 8 == 0 &&
         (p.batch == 1 || batch_stride == p.seqlen * seq_stride);
}

template <class T, int N>
SsdStatus launch(const SsdParams& p, cudaStream_t stream, void* workspace, std::string* err) {
  using Tr = ChainFwd<T, N>;
  alignas(64) ChainMaps maps;
  SsdStatus st;
  if ((st = chain_maps<T>(&maps, p, err)) != SSD_OK) return st;
  const Cut cut = cut_of(p);
  const ChainSegs segs = segs_in(p, cut, workspace);
  if (cut.nseg > 1) {
    const ChainStatesIO io{nullptr, nullptr, nullptr};
    if ((st = launch_states<ChainStates<T, N, false, false>>(p, maps, segs, io, (int)cut.slots(), stream, "k_chain_states (segment ends)",
                                                             err)) != SSD_OK)
      return st;
  }
  auto* k = k_chain_fwd<Tr>;
  if ((st = allow_smem(k, Tr::kSmem, "k_chain_fwd", err)) != SSD_OK) return st;
  k<<<(unsigned)pairs_of(p) * (unsigned)cut.nseg, Tr::kThreads, Tr::kSmem, stream>>>(p, maps, segs);
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? SSD_OK : cuda_fail(e, "launch k_chain_fwd", err);
}

}  // namespace

bool takes_inputs(const SsdParams& p, std::string* why) {
  const SsdDtype t = p.x_type;
  if (!dtype_mma(t) || p.B_type != t || p.C_type != t || (p.z && p.z_type != t))
    return refuse(why, "x, z, B and C not all of one 16-bit dtype");
  if (p.headdim != 64) return refuse(why, "headdim is not 64");
  if (p.dstate != 64 && p.dstate != 128) return refuse(why, "dstate is not 64 or 128");
  if (p.seq_idx) return refuse(why, "seq_idx (packed sequences take cu_seqlens)");
  if (!tma_ok(p.x, p.x_batch_stride, p.x_seq_stride, p.x_head_stride, p) ||
      !tma_ok(p.B, p.B_batch_stride, p.B_seq_stride, p.B_group_stride, p) ||
      !tma_ok(p.C, p.C_batch_stride, p.C_seq_stride, p.C_group_stride, p) ||
      (p.z && !tma_ok(p.z, p.z_batch_stride, p.z_seq_stride, p.z_head_stride, p)))
    return refuse(why, "x, z, B or C not in a layout a tensor map describes");
  if (!aligned(p.initial_states, 8) || !aligned(p.final_states, 8) || !aligned(p.varlen_states, 8))
    return refuse(why, "states not 8-byte aligned");
  if ((uint64_t)p.batch * (uint64_t)p.seqlen + 64 > (uint64_t)INT32_MAX) return refuse(why, "more than 2^31 rows");
  // the state walks run up to two CTAs per (segment, chain, head): one per 64 columns of the state
  if (pairs_of(p) * cut_of(p).nseg * 2 > INT32_MAX) return refuse(why, "too many (chain, head) pairs for one grid");
  return true;
}

bool takes(const SsdParams& p, std::string* why) {
  if (!takes_inputs(p, why)) return false;
  const SsdDtype t = p.x_type;
  if (p.y_type != t || (p.y_ungated && p.y_ungated_type != t)) return refuse(why, "y or y_ungated not of x's dtype");
  // 4-byte stores of y
  if (!aligned(p.y, 4) || p.y_batch_stride % 2 || p.y_seq_stride % 2 || p.y_head_stride % 2 ||
      (p.y_ungated && (!aligned(p.y_ungated, 4) || p.y_ungated_batch_stride % 2 || p.y_ungated_seq_stride % 2 ||
                       p.y_ungated_head_stride % 2)))
    return refuse(why, "y not 4-byte aligned");
  return true;
}

bool available() {
#ifdef SSD_CUDA_EMULATION
  return true;  // the CPU emulation runs the sm_90a instructions (bench/cuda/emu/emu_sm90.h)
#else
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  // the answer per device, found once: every CUDA backward asks (0 unknown, 1 yes, 2 no)
  static std::atomic<int> known[64] = {};
  const int seen = dev >= 0 && dev < 64 ? known[dev].load(std::memory_order_relaxed) : 0;
  if (seen != 0) return seen == 1;
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess)
    return false;
  bool yes = false;
  if (major == 9 && minor == 0) {
    cudaFuncAttributes a;
    if (cudaFuncGetAttributes(&a, k_chain_fwd<ChainFwd<__nv_bfloat16, 128>>) == cudaSuccess) yes = a.binaryVersion == 90;
    else cudaGetLastError();
  }
  if (dev >= 0 && dev < 64) known[dev].store(yes ? 1 : 2, std::memory_order_relaxed);
  return yes;
#endif
}

PathChoice path_choice() { return path_from(0, "SSD_KERNELS_FORWARD_PATH"); }

size_t workspace_bytes(const SsdParams& p) { return takes(p, nullptr) ? seg_bytes(p, cut_of(p)) : 0; }

int segments(const SsdParams& p) { return cut_of(p).nseg; }

SsdStatus forward(const SsdParams& p, void* stream_v, void* workspace, std::string* err) {
  cudaStream_t stream = static_cast<cudaStream_t>(stream_v);
  return run_chain_shape(p, err, [&](auto t, auto n) { return launch<decltype(t), decltype(n)::value>(p, stream, workspace, err); });
}

}}}  // namespace ssd::cuda::sm90

namespace ssd { namespace cuda {

bool set_path_override(bool backward, const char* path) {
  sm90::PathChoice c = sm90::PathChoice::kDefault;
  if (path && std::strcmp(path, "sm90") == 0) c = sm90::PathChoice::kSm90;
  else if (path && std::strcmp(path, "sm80") == 0) c = sm90::PathChoice::kSm80;
  else if (path) return false;
  sm90::path_overrides[backward ? 1 : 0].store(static_cast<int>(c), std::memory_order_relaxed);
  return true;
}

}}  // namespace ssd::cuda
