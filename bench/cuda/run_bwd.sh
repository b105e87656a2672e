#!/usr/bin/env bash
# Build and run the CUDA backward harness: check (correctness against the float64 reference), then
# bench (G1-G4: forward + backward, backward alone, per-launch times, workspace).
# Run from the repo root on a GPU machine:  bash bench/cuda/run_bwd.sh
# Env: OUT (folder for logs, optional), BUILD_DIR (default /tmp/ssd-cuda-build-bwd),
#      ARCH (default 90a; e.g. 80 for an A100), SKIP_CHECK=1 / SKIP_BENCH=1,
#      CHECK_FILTER (substring of case names), BENCH_RUNS (default 100), VERBOSE=1 (every gradient
#      of every case, not only failing ones).
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR=${BUILD_DIR:-/tmp/ssd-cuda-build-bwd}
LOG_DIR=${OUT:-$BUILD_DIR/logs}
mkdir -p "$BUILD_DIR" "$LOG_DIR"
NVCC=${NVCC:-nvcc}
ARCH=${ARCH:-90a}
FLAGS=(-O3 -std=c++17 -gencode "arch=compute_${ARCH},code=sm_${ARCH}" -I include -I csrc -lineinfo
       -Xcompiler -Wall,-Wextra)

source bench/cuda/harness_lib.sh

print_tools
build_objects parallel
build_harness bwd_harness
check_and_bench "$BUILD_DIR/bwd_harness" ${CHECK_FILTER:+"$CHECK_FILTER"}
