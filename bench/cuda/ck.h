// CK(call): a CUDA runtime call of the bench harnesses and self-tests; on an error, its name, where,
// and the message on stderr, then exit status 2.
#pragma once
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#define CK(call)                                                                                  \
  do {                                                                                            \
    const cudaError_t e_ = (call);                                                                \
    if (e_ != cudaSuccess) {                                                                      \
      fprintf(stderr, "CUDA error %s at %s:%d: %s\n", cudaGetErrorName(e_), __FILE__, __LINE__,  \
              cudaGetErrorString(e_));                                                            \
      exit(2);                                                                                    \
    }                                                                                             \
  } while (0)
