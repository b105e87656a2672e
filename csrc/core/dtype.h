// The dtype table: the element types of SsdDtype (include/ssd_kernels.h) that tensors may have.
// Adding a dtype: a row here, its load/store in csrc/cuda/common/device.cuh and csrc/cpu/convert.inc,
// and its name in lib/rules.ts (csrc/README.md, "Where things go").
#pragma once
#include <cstdint>

#include "ssd_kernels.h"

namespace ssd {

// A floating-point dtype the kernels read and write (x, dt, B, C, z, y and their gradients).
inline bool is_float_dtype(SsdDtype t) { return t == SSD_FLOAT32 || t == SSD_BFLOAT16 || t == SSD_FLOAT16; }

// Bytes per element.
inline int64_t dtype_bytes(SsdDtype t) { return t == SSD_FLOAT32 ? 4 : 2; }

}  // namespace ssd
