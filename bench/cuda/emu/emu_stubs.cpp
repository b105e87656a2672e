// Host stand-ins for the CUDA runtime calls the backward and its harness make (emulation, see build.sh):
// "device" memory is host memory, launches are synchronous, events measure nothing.
#include "emu_cuda.h"
#include <string>
#include "cuda/backend.h"
#include "cuda/detail.h"
extern "C" {
cudaError_t cudaMalloc(void** p, size_t n) { *p = aligned_alloc(256, (n + 255) & ~size_t(255)); memset(*p, 0xab, n); return cudaSuccess; }
cudaError_t cudaFree(void* p) { free(p); return cudaSuccess; }
cudaError_t cudaMemcpy(void* d, const void* s, size_t n, enum cudaMemcpyKind) { memcpy(d, s, n); return cudaSuccess; }
cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, enum cudaMemcpyKind, cudaStream_t) { memcpy(d, s, n); return cudaSuccess; }
cudaError_t cudaMemset(void* d, int v, size_t n) { memset(d, v, n); return cudaSuccess; }
cudaError_t cudaMemsetAsync(void* d, int v, size_t n, cudaStream_t) { memset(d, v, n); return cudaSuccess; }
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaGetLastError(void) { return cudaSuccess; }
const char* cudaGetErrorName(cudaError_t) { return "emu"; }
const char* cudaGetErrorString(cudaError_t) { return "emu"; }
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
}
#ifndef EMU_WITH_FORWARD  // the backward's build: no forward kernels
namespace ssd { namespace cuda {
size_t forward_workspace_bytes(const SsdParams&) { return 0; }
SsdStatus forward(const SsdParams&, void*, void*, std::string* e) { if (e) *e = "no forward in the emulation"; return SSD_ERR_UNSUPPORTED; }
}}
#endif
