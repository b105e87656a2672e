#!/usr/bin/env bash
# Build forward-harness variants for sm_90a (no GPU needed), one binary per compile-time variant:
#   bash bench/cuda/variants.sh OUTDIR name1 "flags1" [name2 "flags2" ...]
# e.g. bash bench/cuda/variants.sh bench/out/h base "" kb32 "-DSSD_K1_KB=32 -DSSD_K1_MINB=4"
# Each binary is OUTDIR/fwd_<name> (stripped); registers and spills go to OUTDIR/regs_<name>.txt.
# Carry OUTDIR to the device and time them there with `OUTDIR/fwd_<name> bench 100`.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$1; shift
mkdir -p "$out"
NVCC=${NVCC:-nvcc}
while [ $# -ge 2 ]; do
  name=$1 flags=$2; shift 2
  obj=$(mktemp --suffix=.o)
  # shellcheck disable=SC2086
  "$NVCC" -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -I include -I csrc $flags \
    -Xptxas -v -c csrc/cuda/fwd/forward.cu -o "$obj" 2> "$out/regs_$name.txt"
  # shellcheck disable=SC2086
  "$NVCC" -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -I include -I csrc $flags \
    -o "$out/fwd_$name" bench/cuda/fwd_harness.cu "$obj"
  strip "$out/fwd_$name" || true
  rm -f "$obj"
  echo "$name: $(grep -A2 'k_state_bmmI13__nv_bfloat16Li128\|k_state_bmmI13__nv_bfloat16Li64\|k_chunk_scan_fastI13__nv_bfloat16Li64ELi128' "$out/regs_$name.txt" | grep -o 'Used [0-9]* registers\|[0-9]* bytes spill stores' | tr '\n' ' ')"
done
