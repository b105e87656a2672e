#!/usr/bin/env bash
# The sm_90a backward's state walks against the float64 recurrence (sm90_bwd_states.cu) on a GPU with
# compute capability 9.0 (H100, H200): builds the check with chain_backward.cu and chain_forward.cu for
# sm_90a and runs it (PASS/FAIL per case, non-zero exit on any failure). The same cases run without a
# GPU in the emulation: bench/cuda/emu/sm90_bwd.sh.
#   bash bench/cuda/sm90_bwd_states.sh [case-filter]
# Env: OUT (default /tmp/ssd-sm90-bwd), TIMEOUT (seconds, default 120), COMPILE_ONLY=1 (build only).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/ssd-sm90-bwd}
mkdir -p "$OUT"
nvcc -std=c++17 -O3 -arch=sm_90a -I include -I csrc -I bench/cuda -Xptxas -v \
  bench/cuda/sm90_bwd_states.cu csrc/cuda/sm90/chain_backward.cu csrc/cuda/sm90/chain_forward.cu \
  -o "$OUT/sm90_bwd_states" 2> "$OUT/ptxas.log" || { cat "$OUT/ptxas.log"; exit 2; }
if grep -iE "spill stores [1-9]|warning" "$OUT/ptxas.log"; then echo "(ptxas, above: see $OUT/ptxas.log)"; fi
[ "${COMPILE_ONLY:-0}" = 1 ] && exit 0
timeout "${TIMEOUT:-120}" "$OUT/sm90_bwd_states" "$@"
