#!/usr/bin/env bash
# Builds bench/cpu_variants (the CPU SSD benchmark and correctness check) and runs it.
#   bench/cpu_variants.sh            build, run --check --quiet, then the benchmark table
#   bench/cpu_variants.sh --check    build, run the correctness suite (verbose)
#   bench/cpu_variants.sh ARGS...    build, pass ARGS to the binary
# The csrc/cpu files are compiled with the same per-file flags as the shipped build (baseline x86-64
# for the dispatch/pool/scalar files, -mavx2 ... for *_avx2.cpp, -mavx512* for *_avx512.cpp); the
# benchmark driver, which also holds the chunked comparison, is compiled with -march=native.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
out="${BUILD_DIR:-$root/bench/out/cpu}"
mkdir -p "$out"
CXX="${CXX:-g++}"
common=(-std=c++17 -O3 -fno-math-errno -Wall -Wextra -I"$root/include" -I"$root/csrc/cpu")
objs=()
for src in "$root"/csrc/cpu/*.cpp; do
  name="$(basename "$src" .cpp)"
  flags=()
  case "$name" in
    *_avx512) flags=(-mavx512f -mavx512vl -mavx512bw -mavx512dq -mfma -mf16c) ;;
    *_avx2) flags=(-mavx2 -mfma -mf16c) ;;
  esac
  "$CXX" "${common[@]}" "${flags[@]}" -fPIC -c "$src" -o "$out/$name.o"
  objs+=("$out/$name.o")
done
"$CXX" "${common[@]}" -march=native -c "$here/cpu_variants.cpp" -o "$out/cpu_variants.o"
"$CXX" -o "$out/cpu_variants" "$out/cpu_variants.o" "${objs[@]}" -pthread
if [ "$#" -eq 0 ]; then
  "$out/cpu_variants" --check --quiet
  "$out/cpu_variants"
else
  "$out/cpu_variants" "$@"
fi
