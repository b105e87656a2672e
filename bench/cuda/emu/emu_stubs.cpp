// Host stand-ins for the CUDA runtime calls the backward and its harness make (emulation, see build.sh):
// "device" memory is host memory, launches are synchronous, events measure nothing. A launch that the
// emulation stopped (soft failures, emu_cuda.h) is reported by cudaGetLastError (which clears it) and
// cudaDeviceSynchronize. Built with -DEMU_SM90 (sm90.sh): the driver's cuTensorMapEncodeTiled, emulated
// (emu_sm90.h), through cudaGetDriverEntryPoint(ByVersion), and none of the backend's stand-ins.
#ifdef EMU_SM90
#include "emu_sm90.h"
#else
#include "emu_cuda.h"
#endif
#include "cuda/backend.h"
#include "cuda/detail.h"
#include <string>
extern "C" {
cudaError_t cudaMalloc(void** p, size_t n) { *p = aligned_alloc(256, (n + 255) & ~size_t(255)); memset(*p, 0xab, n); return cudaSuccess; }
cudaError_t cudaFree(void* p) { free(p); return cudaSuccess; }
cudaError_t cudaMemcpy(void* d, const void* s, size_t n, enum cudaMemcpyKind) { memcpy(d, s, n); return cudaSuccess; }
cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, enum cudaMemcpyKind, cudaStream_t) { memcpy(d, s, n); return cudaSuccess; }
cudaError_t cudaMemset(void* d, int v, size_t n) { memset(d, v, n); return cudaSuccess; }
cudaError_t cudaMemsetAsync(void* d, int v, size_t n, cudaStream_t) { memset(d, v, n); return cudaSuccess; }
cudaError_t cudaDeviceSynchronize(void) { return emu::pending_error; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return emu::pending_error; }
cudaError_t cudaGetLastError(void) {
  const cudaError_t e = emu::pending_error;
  emu::pending_error = cudaSuccess;
  return e;
}
const char* cudaGetErrorName(cudaError_t e) {
  return e == cudaSuccess ? "cudaSuccess" : e == cudaErrorLaunchFailure ? "cudaErrorLaunchFailure"
                                        : e == cudaErrorLaunchTimeout ? "cudaErrorLaunchTimeout" : "emu";
}
const char* cudaGetErrorString(cudaError_t e) {
  return e == cudaErrorLaunchFailure ? "the emulation stopped the launch (EMU ERROR above)"
         : e == cudaErrorLaunchTimeout ? "the emulation found the block deadlocked (EMU DEADLOCK above)" : "emu";
}
cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp* p, int) { memset(p, 0, sizeof *p); strcpy(p->name, "CPU emulation"); p->major = 9; p->minor = 0; p->multiProcessorCount = 1; p->l2CacheSize = 50 << 20; return cudaSuccess; }
cudaError_t cudaFuncSetAttribute(const void*, enum cudaFuncAttribute a, int v) {
  if (a == cudaFuncAttributeMaxDynamicSharedMemorySize && v > 232448) { fprintf(stderr, "EMU: dynamic shared memory %d > 227 KB\n", v); return cudaErrorInvalidValue; }
  return cudaSuccess;
}
// compute capability 8.x: the forward's programmatic dependent launches stay off
cudaError_t cudaDeviceGetAttribute(int* v, enum cudaDeviceAttr a, int) { *v = a == cudaDevAttrComputeCapabilityMajor ? 8 : 0; return cudaSuccess; }
cudaError_t cudaLaunchKernelExC(const cudaLaunchConfig_t*, const void*, void**) { return cudaErrorNotSupported; }
cudaError_t cudaEventCreate(cudaEvent_t* e) { *e = (cudaEvent_t)malloc(8); return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t, cudaEvent_t) { *ms = 0; return cudaSuccess; }
cudaError_t cudaEventDestroy(cudaEvent_t e) { free(e); return cudaSuccess; }
#ifdef EMU_SM90
static cudaError_t entry_point(const char* symbol, void** fn, cudaDriverEntryPointQueryResult* found) {
  const bool known = strcmp(symbol, "cuTensorMapEncodeTiled") == 0;
  *fn = known ? reinterpret_cast<void*>(&emu::sm90::encode_tiled) : nullptr;
  if (found) *found = known ? cudaDriverEntryPointSuccess : cudaDriverEntryPointSymbolNotFound;
  return cudaSuccess;
}
cudaError_t cudaGetDriverEntryPointByVersion(const char* symbol, void** fn, unsigned int, unsigned long long,
                                             cudaDriverEntryPointQueryResult* found) {
  return entry_point(symbol, fn, found);
}
cudaError_t cudaGetDriverEntryPoint(const char* symbol, void** fn, unsigned long long,
                                    cudaDriverEntryPointQueryResult* found) {
  return entry_point(symbol, fn, found);
}
#endif
}
#if !defined(EMU_WITH_FORWARD)  // the backward's build: no forward kernels
namespace ssd { namespace cuda {
size_t forward_workspace_bytes(const SsdParams&) { return 0; }
SsdStatus forward(const SsdParams&, void*, void*, std::string* e) { if (e) *e = "no forward in the emulation"; return SSD_ERR_UNSUPPORTED; }
}}
#endif
