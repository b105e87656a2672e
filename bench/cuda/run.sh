#!/usr/bin/env bash
# Build and run the CUDA forward harness: check (correctness), then bench (G1-G4).
# Run from the repo root on a GPU machine:  bash bench/cuda/run.sh
# Env: OUT (folder for logs, optional), BUILD_DIR (default /tmp/ssd-cuda-build),
#      NVCC_EXTRA (extra nvcc flags, e.g. -G for device debugging), SKIP_CHECK=1 / SKIP_BENCH=1, CHECK_FILTER (substring of case names), BENCH_RUNS (default 100).
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR=${BUILD_DIR:-/tmp/ssd-cuda-build}
LOG_DIR=${OUT:-$BUILD_DIR/logs}
mkdir -p "$BUILD_DIR" "$LOG_DIR"
NVCC=${NVCC:-nvcc}
FLAGS=(-O3 -std=c++17 -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90a,code=sm_90a
       -I include -I csrc -lineinfo -Xcompiler -Wall,-Wextra ${NVCC_EXTRA:-})

source bench/cuda/harness_lib.sh

print_tools
build_objects
build_harness fwd_harness
# shellcheck disable=SC2086  # the filter is passed as it was given, word-split
check_and_bench "$BUILD_DIR/fwd_harness" ${CHECK_FILTER:-}
