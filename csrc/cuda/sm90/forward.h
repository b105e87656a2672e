// The sm_90a forward's host entry (fwd_chain.cuh, chain_forward.cu): the sm_80 forward (../fwd/forward.cu)
// hands a call over when path_choice() asks for it and takes() and available() say yes. Plain C++.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "ssd_kernels.h"

namespace ssd { namespace cuda { namespace sm90 {

// Whether the sm_90a forward was written for p's shapes, dtypes and layouts (p passed check_params):
// x, z, B, C, y and y_ungated all bf16 or all f16, headdim 64, dstate 64 or 128, no seq_idx, layouts
// a tensor map can describe (16-byte aligned bases and strides, batch rows back to back). *why (may
// be null) receives the first reason it does not.
bool takes(const SsdParams& p, std::string* why);

// What the forward and the backward both need of p: x, z, B and C of one 16-bit dtype in layouts a
// tensor map describes, headdim 64, dstate 64 or 128, no seq_idx, aligned states, sizes one grid holds.
bool takes_inputs(const SsdParams& p, std::string* why);

// Whether the current device runs the sm_90a image of the kernel (compute capability 9.0 and the
// binary built with sm_90a).
bool available();

// What a path variable (SSD_KERNELS_FORWARD_PATH, SSD_KERNELS_BACKWARD_PATH) asks for: "sm90" forces
// the sm_90a kernels (a call they do not take is an error, never a fallback), "sm80" forces the sm_80
// kernels, and anything else (unset) leaves the choice to the direction's default.
enum class PathChoice { kDefault, kSm80, kSm90 };

// Which forward a call takes. By default the sm_90a forward runs every call that takes() accepts on a
// GPU that has its kernels (H100, H200), and the sm_80 kernels the rest: it was faster on G1-G5 by
// 1.2-1.9x on an H100 (bench/NOTES.md, session 17). SSD_KERNELS_FORWARD_PATH=sm80 forces the sm_80
// kernels, sm90 the sm_90a forward (a call it does not take is then an error).
PathChoice path_choice();
constexpr bool kForwardByDefault = true;

// Whether a call runs on a direction's sm_90a kernels: 1 yes, 0 no (the sm_80 kernels), -1 the path
// was forced onto them and they cannot take the call (*why, may be null, says why). `choice` is the
// direction's path choice, `by_default` whether the kernels take the calls they accept unforced,
// takes(why) whether they accept this one.
template <class Takes>
int path_verdict(PathChoice choice, bool by_default, Takes takes, std::string* why) {
  if (choice == PathChoice::kSm80 || (choice == PathChoice::kDefault && !by_default)) return 0;
  const int refused = choice == PathChoice::kSm90 ? -1 : 0;
  if (!takes(why)) return refused;
  if (available()) return 1;
  if (why) *why = "no sm_90a device";
  return refused;
}

// The workspace the forward needs for p (the segments' end states where the chains are few; 0 where
// takes() says no): a function of p alone, never of the device.
size_t workspace_bytes(const SsdParams& p);

// How many segments each chain is cut into (1: a CTA per chain), for the harnesses and probes.
int segments(const SsdParams& p);

// Enqueues the forward; workspace holds at least workspace_bytes(p). Never aborts; SSD_OK or an error
// with *err set.
SsdStatus forward(const SsdParams& p, void* stream, void* workspace, std::string* err);

}}}  // namespace ssd::cuda::sm90
