# Sourced by the emulation's build scripts: CUDA_INC, the folder of cuda_runtime.h (the CUDA headers
# the emulation compiles against), unless it is set already; exits 2 when there is none.
if [ -z "${CUDA_INC:-}" ]; then
  for d in "${CUDA_HOME:-}/include" /usr/local/cuda/include \
           "$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")/include"; do
    if [ -f "$d/cuda_runtime.h" ]; then CUDA_INC=$d; break; fi
  done
fi
[ -f "${CUDA_INC:-}/cuda_runtime.h" ] || { echo "CUDA headers not found: set CUDA_INC"; exit 2; }
