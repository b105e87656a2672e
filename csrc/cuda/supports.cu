// What the CUDA kernels take, beyond the parameter contract (core/params.h): the dispatcher asks
// these before it launches anything, and device 'auto' runs on the GPU only where they say yes.
#include <string>

#include "cuda/backend.h"

namespace ssd { namespace cuda {

namespace {
bool refuse(std::string* why, const char* reason) {
  if (why) *why = reason;
  return false;
}
}  // namespace

bool supports(const SsdParams& p, std::string* why) {
  if (p.headdim > 256 || p.dstate > 256) return refuse(why, "the CUDA backend supports headdim and dstate up to 256");
  if (p.nheads > (1 << 24) || p.batch > (1 << 24)) return refuse(why, "the CUDA backend supports batch and nheads up to 2^24");
  return true;
}

bool supports_step(const SsdStepParams& p, std::string* why) {
  if (p.batch * p.nheads * ((p.headdim + 15) / 16) > 0x7fffffffLL) return refuse(why, "step: batch * nheads exceeds the CUDA grid");
  return true;
}

}}  // namespace ssd::cuda
