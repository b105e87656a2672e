#!/usr/bin/env bash
# Builds bench/cpu_step (the CPU decode step's kernel alone, per batch size and thread count) and
# runs it with the given arguments. The csrc/cpu files get the shipped build's per-file flags.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
out="${BUILD_DIR:-$root/bench/out/cpu_step}"
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
  "$CXX" "${common[@]}" "${flags[@]}" -c "$src" -o "$out/$name.o"
  objs+=("$out/$name.o")
done
"$CXX" "${common[@]}" -c "$here/cpu_step.cpp" -o "$out/cpu_step.o"
"$CXX" -o "$out/cpu_step" "$out/cpu_step.o" "${objs[@]}" -pthread
"$out/cpu_step" "$@"
