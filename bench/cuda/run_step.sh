#!/usr/bin/env bash
# Build and run the CUDA step harness (bench/cuda/step_harness.cu): registers and spills of k_step,
# then the check against the float64 recurrence and the timings.
# Run from the repo root on a GPU machine:  bash bench/cuda/run_step.sh [runs]
# Env: BUILD_DIR (default /tmp/ssd-step-build), NVCC_EXTRA (extra nvcc flags).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR=${BUILD_DIR:-/tmp/ssd-step-build}
mkdir -p "$BUILD_DIR"
NVCC=${NVCC:-nvcc}
FLAGS=(-O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -I include -I csrc -lineinfo ${NVCC_EXTRA:-})
"$NVCC" "${FLAGS[@]}" -Xptxas -v -c csrc/cuda/step/step.cu -o "$BUILD_DIR/ssd_step.o" 2>&1 |
  grep -A2 "properties for.*k_step" | grep -o "[0-9]* bytes spill stores\|Used [0-9]* registers" | paste -sd' ' || true
"$NVCC" "${FLAGS[@]}" -o "$BUILD_DIR/step_harness" bench/cuda/step_harness.cu "$BUILD_DIR/ssd_step.o" \
  csrc/cuda/supports.cu csrc/core/params.cpp
"$BUILD_DIR/step_harness" "${1:-200}"
