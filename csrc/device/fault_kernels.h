// The kernels of the device layer's fault injection (device.h, "Fault injection"), for
// device_cuda.cpp.
#pragma once
#include <cuda_runtime.h>

namespace ssd {
namespace device {

// A kernel that executes __trap() (a sticky error once it runs); returns the launch's status.
cudaError_t launch_fault_trap(cudaStream_t stream);
// A launch of an invalid configuration: returns its (non-sticky) cudaErrorInvalidConfiguration.
cudaError_t launch_fault_invalid(cudaStream_t stream);

}  // namespace device
}  // namespace ssd
