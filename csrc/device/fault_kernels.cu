// The kernels of the device layer's fault injection (device.h, "Fault injection"): compiled with the
// CUDA kernels, launched only when a test armed a fault.
#include <cuda_runtime.h>

#include "device/fault_kernels.h"

namespace ssd {
namespace device {

namespace {
__global__ void k_fault_trap() { __trap(); }
__global__ void k_fault_nothing() {}
}  // namespace

cudaError_t launch_fault_trap(cudaStream_t stream) {
  k_fault_trap<<<1, 1, 0, stream>>>();
  return cudaGetLastError();
}

cudaError_t launch_fault_invalid(cudaStream_t stream) {
  // 2048 threads in a block, over every device's limit of 1024: the launch itself fails.
  k_fault_nothing<<<1, 2048, 0, stream>>>();
  return cudaGetLastError();
}

}  // namespace device
}  // namespace ssd
