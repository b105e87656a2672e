// The sm_90a backward's host entry (chain_states.cuh, bwd_block.cuh, chain_backward.cu; the design is in
// bench/NOTES.md, session 14): the CUDA backward (../bwd/backward.cu) hands it the calls it takes on an
// H100 or H200. bench/cuda/sm90_bwd_states.cu checks the state walks against a float64 recurrence and
// the whole backward against the float64 reference, in the CPU emulation and on a device. Plain C++.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "cuda/sm90/forward.h"
#include "ssd_kernels.h"

namespace ssd { namespace cuda { namespace sm90 {

// Whether the state walks were written for bw's shapes, dtypes and layouts (bw passed the parameter
// check): those of the sm_90a forward (forward.h: takes) with dy of x's dtype in a layout a tensor map
// describes. *why (may be null) receives the first reason they were not.
bool takes_backward(const SsdBackwardParams& bw, std::string* why);

// The block slots of the per-block values (chain_states.cuh: block_slot): batch * ceil(seqlen / 64),
// or ceil(seqlen / 64) + num_seqs for packed sequences. Each slot holds nheads * headdim * dstate
// values of x's 16-bit dtype.
int64_t block_slots(const SsdParams& p);

// The workspace of the state walks (the segments' additions where the chains are few; 0 otherwise).
size_t states_workspace_bytes(const SsdParams& p);

// Enqueues the two walks: h_blocks receives H entering every block of 64 positions and dh_blocks dL/dH
// leaving it (the gradient that reaches the state after the block from later positions and from
// d_final_states), each block_slots(p) slots; bw.d_initial_states (when set, batch rows only) the
// gradient of the state before position 0. `which` runs one of them alone (the timings of
// bench/cuda/sm90_bwd_states.cu). Never aborts; SSD_OK or an error with *err set.
enum Walks { kForwardWalk = 1, kReverseWalk = 2, kBothWalks = 3 };
SsdStatus backward_states(const SsdBackwardParams& bw, void* stream, void* h_blocks, void* dh_blocks, void* workspace,
                          std::string* err, Walks which = kBothWalks);

// Which backward a call takes (PathChoice of forward.h; SSD_KERNELS_BACKWARD_PATH). By default the
// sm_90a backward runs every call takes_backward() accepts on a device where available() (faster than
// the sm_80 kernels on G1-G4 on an H100, bench/NOTES.md session 15), the sm_80 kernels the others.
PathChoice backward_path_choice();
constexpr bool kBackwardByDefault = true;

// The whole backward's workspace: H and dH per block, the segments', the per-block partials of dA,
// dDtBias and dD.
size_t backward_workspace_bytes(const SsdParams& p);

// Enqueues the whole backward (every gradient of SsdBackwardParams; d_initial_states for batch rows):
// the two state walks, the block launch (a CTA per block slot and group, over the group's heads) and
// the fixed-order sums of dA, dDtBias and dD. workspace holds backward_workspace_bytes(bw.fwd).
SsdStatus backward(const SsdBackwardParams& bw, void* stream, void* workspace, std::string* err);

}}}  // namespace ssd::cuda::sm90
