#!/usr/bin/env bash
# CPU emulation of the sm_90a backward's state walks (csrc/cuda/sm90/chain_states.cuh) and their check
# against the float64 recurrence (bench/cuda/sm90_bwd_states.cu), for machines without a GPU: builds the
# check, chain_backward.cu and chain_forward.cu as host C++ on emu_cuda.h and emu_sm90.h, then runs it.
# Needs the CUDA headers; a minute or two to build and run.
#   bash bench/cuda/emu/sm90_bwd.sh [case-filter]
# Env: BUILD_DIR (default /tmp/ssd-emu-sm90-bwd), CUDA_INC (default: next to nvcc), EMU_CXXFLAGS.
set -euo pipefail
cd "$(dirname "$0")/../../.."
BUILD_DIR=${BUILD_DIR:-/tmp/ssd-emu-sm90-bwd}
source bench/cuda/emu/cuda_inc.sh
E=bench/cuda/emu
mkdir -p "$BUILD_DIR/cuda/sm90" "$BUILD_DIR/cuda/common"
cp "$E/emu_cuda.h" "$E/emu_sm90.h" "$BUILD_DIR/"
python3 "$E/transform.py" mma csrc/cuda/common/mma.cuh "$BUILD_DIR/cuda/common/mma.cuh"
for h in csrc/cuda/common/*.cuh; do
  [ "$h" = csrc/cuda/common/mma.cuh ] || python3 "$E/transform.py" file "$h" "$BUILD_DIR/${h#csrc/}"
done
python3 "$E/transform.py" sm90 csrc/cuda/sm90 "$BUILD_DIR/cuda/sm90"
# what the check shares with the harnesses, found next to the transformed check first
python3 "$E/transform.py" file bench/cuda/harness_common.h "$BUILD_DIR/harness_common.h"
srcs=(bench/cuda/sm90_bwd_states.cu csrc/cuda/sm90/chain_backward.cu csrc/cuda/sm90/chain_forward.cu)
objs=()
pids=()
FLAGS=(-std=c++17 -O2 -w -Wno-psabi -DEMU_SM90 -I "$BUILD_DIR" -I "$CUDA_INC" -I include -I csrc -I bench/cuda ${EMU_CXXFLAGS:-})
for src in "${srcs[@]}"; do
  name=$(basename "$src" .cu)
  python3 "$E/transform.py" file "$src" "$BUILD_DIR/emu_$name.cpp"
  sed -i 's|#include "emu_cuda.h"|#include "emu_sm90.h"|' "$BUILD_DIR/emu_$name.cpp"
  g++ "${FLAGS[@]}" -c "$BUILD_DIR/emu_$name.cpp" -o "$BUILD_DIR/$name.o" & pids+=($!)
  objs+=("$BUILD_DIR/$name.o")
done
g++ "${FLAGS[@]}" -c "$E/emu_stubs.cpp" -o "$BUILD_DIR/stubs.o" & pids+=($!)
for pid in "${pids[@]}"; do wait "$pid" || { echo "BUILD FAILED"; exit 2; }; done
g++ -o "$BUILD_DIR/sm90_bwd_states" "${objs[@]}" "$BUILD_DIR/stubs.o"
exec "$BUILD_DIR/sm90_bwd_states" "$@"
