#!/usr/bin/env bash
# Build and run the CUDA step harness (bench/cuda/step_harness.cu) once per value of
# SSD_STEP_MIN_BLOCKS in MIN_BLOCKS (default: the value the source sets).
# Run from the repo root on a GPU machine:  bash bench/cuda/run_step.sh [runs]
# Env: BUILD_DIR (default /tmp/ssd-step-build), MIN_BLOCKS (e.g. "4 8 12"), NVCC_EXTRA.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR=${BUILD_DIR:-/tmp/ssd-step-build}
mkdir -p "$BUILD_DIR"
NVCC=${NVCC:-nvcc}
FLAGS=(-O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -I include -I csrc -lineinfo ${NVCC_EXTRA:-})
for mb in ${MIN_BLOCKS:-default}; do
  def=(); [ "$mb" = default ] || def=(-DSSD_STEP_MIN_BLOCKS="$mb")
  echo "== SSD_STEP_MIN_BLOCKS=$mb"
  "$NVCC" "${FLAGS[@]}" "${def[@]}" -Xptxas -v -c csrc/cuda/step/step.cu -o "$BUILD_DIR/ssd_step_$mb.o" 2>&1 |
    grep -A2 "properties for.*k_step" | grep -o "[0-9]* bytes spill stores\|Used [0-9]* registers" | paste -sd' ' || true
  "$NVCC" "${FLAGS[@]}" -o "$BUILD_DIR/step_harness_$mb" bench/cuda/step_harness.cu "$BUILD_DIR/ssd_step_$mb.o" \
    csrc/cuda/supports.cu csrc/core/params.cpp
  "$BUILD_DIR/step_harness_$mb" "${1:-200}"
done
