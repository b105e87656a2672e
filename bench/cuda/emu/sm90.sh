#!/usr/bin/env bash
# CPU emulation of the sm_90a building blocks (csrc/cuda/sm90: mbarrier, TMA, wgmma) and their
# self-test, for machines without a GPU: builds bench/cuda/sm90_selftest.cu as host C++ (g++) on top of
# emu_cuda.h and emu_sm90.h (transform.py's sm90 mode replaces each wrapper's inline PTX with a call
# into the emulation; the driver's cuTensorMapEncodeTiled is emulated too) and runs it. Misuse that the
# emulation detects ends the launch instead of the process (-DEMU_SOFT_FAILURES=1), so the self-test's
# "emu:" cases can check that it is reported. Needs the CUDA headers; seconds to build and run.
#   bash bench/cuda/emu/sm90.sh [case-filter]        e.g. "gemm" or "pipeline"
# Env: BUILD_DIR (default /tmp/ssd-emu-sm90), CUDA_INC (default: next to nvcc), EMU_CXXFLAGS.
set -euo pipefail
cd "$(dirname "$0")/../../.."
BUILD_DIR=${BUILD_DIR:-/tmp/ssd-emu-sm90}
source bench/cuda/emu/cuda_inc.sh
E=bench/cuda/emu
mkdir -p "$BUILD_DIR/cuda/sm90"
cp "$E/emu_cuda.h" "$E/emu_sm90.h" "$BUILD_DIR/"
python3 "$E/transform.py" sm90 csrc/cuda/sm90 "$BUILD_DIR/cuda/sm90"
python3 "$E/transform.py" file bench/cuda/sm90_selftest.cu "$BUILD_DIR/emu_sm90_selftest.cpp"
FLAGS=(-std=c++17 -O2 -w -Wno-psabi -DEMU_SOFT_FAILURES=1 -DEMU_SM90 -I "$BUILD_DIR" -I "$CUDA_INC" -I include -I csrc -I bench/cuda ${EMU_CXXFLAGS:-})
g++ "${FLAGS[@]}" -c "$BUILD_DIR/emu_sm90_selftest.cpp" -o "$BUILD_DIR/selftest.o" & p1=$!
g++ "${FLAGS[@]}" -c "$E/emu_stubs.cpp" -o "$BUILD_DIR/stubs.o" & p2=$!
wait $p1 && wait $p2 || { echo "BUILD FAILED"; exit 2; }
g++ -o "$BUILD_DIR/sm90_selftest" "$BUILD_DIR/selftest.o" "$BUILD_DIR/stubs.o"
exec "$BUILD_DIR/sm90_selftest" "$@"
