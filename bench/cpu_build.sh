#!/usr/bin/env bash
# Shared by bench/cpu_step.sh and bench/cpu_variants.sh (sourced, not run): compiles every
# csrc/cpu/*.cpp into $out with the shipped build's per-file flags (baseline x86-64 for the
# dispatch / pool / scalar files, -mavx2 ... for *_avx2.cpp, -mavx512* for *_avx512.cpp), then
# links the benchmark driver bench/<driver>.cpp against them.
#
#   cpu_build <driver> <out dir> [extra driver flags...]    sets $bin to the linked binary
#
# An object is rebuilt only when it is missing or older than its source or one of the headers /
# .inc files it included at its last build (from the compiler's -MMD dependency file).
# CXX (default g++) picks the compiler.
set -euo pipefail
_cpu_build_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
_cpu_build_root="$(cd "$_cpu_build_here/.." && pwd)"

# True when $1 (an object) must be rebuilt: missing, no dependency file, or a dependency is newer.
_cpu_build_stale() {
  local obj="$1" dep="${1%.o}.d" f
  [ -f "$obj" ] && [ -f "$dep" ] || return 0
  # the dependency file: "obj: src hdr hdr \" lines; every word after the colon is a file
  for f in $(sed -e 's/^[^:]*://' -e 's/\\$//' "$dep"); do
    [ -e "$f" ] || return 0
    [ "$f" -nt "$obj" ] && return 0
  done
  return 1
}

# Compiles $1 to $2 with the flags after them unless the object is up to date.
_cpu_build_compile() {
  local src="$1" obj="$2"
  shift 2
  # the flags are part of the object: a change of flags (or CXX) rebuilds it
  local sig="${obj%.o}.flags" want="$CXX $*"
  if ! _cpu_build_stale "$obj" && [ -f "$sig" ] && [ "$(cat "$sig")" = "$want" ]; then return 0; fi
  "$CXX" "$@" -MMD -MF "${obj%.o}.d" -c "$src" -o "$obj"
  printf '%s' "$want" > "$sig"
}

cpu_build() {
  local driver="$1" out="$2"
  shift 2
  mkdir -p "$out"
  CXX="${CXX:-g++}"
  local common=(-std=c++17 -O3 -fno-math-errno -Wall -Wextra -I"$_cpu_build_root/include" -I"$_cpu_build_root/csrc" -I"$_cpu_build_root/csrc/cpu")
  local objs=() src name flags
  for src in "$_cpu_build_root"/csrc/cpu/*.cpp; do
    name="$(basename "$src" .cpp)"
    flags=()
    case "$name" in
      *_avx512) flags=(-mavx512f -mavx512vl -mavx512bw -mavx512dq -mfma -mf16c) ;;
      *_avx2) flags=(-mavx2 -mfma -mf16c) ;;
    esac
    _cpu_build_compile "$src" "$out/$name.o" "${common[@]}" ${flags[@]+"${flags[@]}"} -fPIC
    objs+=("$out/$name.o")
  done
  _cpu_build_compile "$_cpu_build_root/csrc/core/params.cpp" "$out/params.o" "${common[@]}" -fPIC
  objs+=("$out/params.o")
  _cpu_build_compile "$_cpu_build_here/$driver.cpp" "$out/$driver.o" "${common[@]}" "$@"
  bin="$out/$driver"
  "$CXX" -o "$bin" "$out/$driver.o" "${objs[@]}" -pthread
}
