#pragma once
// Host-callable interface of the CUDA kernels of ssd-kernels (forward, backward, step). Plain C++: no CUDA types here
// (the stream is a cudaStream_t passed as void*).
#include <cstddef>
#include <string>
#include "ssd_kernels.h"

namespace ssd { namespace cuda {

// Every entry below takes a block that passed its check in core/params.h and supports() (or
// supports_step()): the dispatcher (core/dispatch.cpp) makes sure of both.

// Whether the kernels take this block (sizes and options beyond the contract); *why (may be null)
// receives the reason when they do not.
bool supports(const SsdParams& p, std::string* why);
bool supports_step(const SsdStepParams& p, std::string* why);

// Device bytes of scratch the forward needs for these params (may be 0).
size_t forward_workspace_bytes(const SsdParams& p);

// Enqueue the forward on `stream` (a cudaStream_t) with all pointers in p on the current device;
// workspace is a device pointer of at least forward_workspace_bytes(p). Asynchronous: returns after
// enqueueing. Never aborts; returns SSD_OK or an error code with *error set (CUDA error name and
// message for CUDA failures).
SsdStatus forward(const SsdParams& p, void* stream, void* workspace, std::string* error);

// The one-token step (SsdStepParams). Workspace: step_workspace_bytes(p) device bytes (8 when
// state_indices is given: the indices' verdict). The state_indices are checked on the device before
// any state row is written; when verdict_host is non-null the verdict {kind, entry} is copied there
// on the stream (kind 0: valid, 1: an entry >= state_rows, 2: a row used twice; entry: the first
// offending batch entry), to be read after the stream completes.
size_t step_workspace_bytes(const SsdStepParams& p);
SsdStatus step(const SsdStepParams& p, void* stream, void* workspace, int* verdict_host, std::string* error);

// Device bytes of scratch the backward needs for these params (may be 0).
size_t backward_workspace_bytes(const SsdBackwardParams& p);

// Enqueue the backward (every gradient of SsdBackwardParams) on `stream`; workspace is a device
// pointer of at least backward_workspace_bytes(p). Deterministic: the same inputs give the same bits
// (fixed-order reductions, no floating-point atomics). Asynchronous; never aborts; returns SSD_OK or
// an error code with *error set.
SsdStatus backward(const SsdBackwardParams& p, void* stream, void* workspace, std::string* error);

// Checks only: forces the kernels one direction runs on, "sm80" or "sm90", as SSD_KERNELS_FORWARD_PATH
// or SSD_KERNELS_BACKWARD_PATH would (sm90/forward.h: PathChoice), or (null) leaves it to the variable
// again. The variables are read by native code, which never sees the copy of process.env that jest
// gives each test file. Returns false for any other path.
bool set_path_override(bool backward, const char* path);

}}  // namespace ssd::cuda
