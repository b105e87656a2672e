#!/usr/bin/env bash
# Builds bench/cpu_variants (the CPU SSD benchmark and correctness check) and runs it.
#   bench/cpu_variants.sh            build, run --check --quiet, then the benchmark table
#   bench/cpu_variants.sh --check    build, run the correctness suite (verbose)
#   bench/cpu_variants.sh ARGS...    build, pass ARGS to the binary
# The csrc/cpu files are compiled with the same per-file flags as the shipped build (baseline x86-64
# for the dispatch/pool/scalar files, -mavx2 ... for *_avx2.cpp, -mavx512* for *_avx512.cpp; see
# bench/cpu_build.sh, which rebuilds an object only when its sources changed); the benchmark
# driver, which also holds the chunked comparison, is compiled with -march=native.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/cpu_build.sh"
cpu_build cpu_variants "${BUILD_DIR:-$here/out/cpu}" -march=native
if [ "$#" -eq 0 ]; then
  "$bin" --check --quiet
  "$bin"
else
  "$bin" "$@"
fi
