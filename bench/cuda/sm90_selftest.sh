#!/usr/bin/env bash
# The sm_90a self-test (sm90_selftest.cu) on a GPU with compute capability 9.0 (H100, H200): builds it
# for sm_90a, checks that the binary carries the instructions the wrappers of csrc/cuda/sm90 stand for
# (in the PTX, and in the SASS when cuobjdump is installed), then runs it (PASS/FAIL per case, non-zero
# exit on any failure). The same cases run without a GPU in the emulation: bench/cuda/emu/sm90.sh.
#   bash bench/cuda/sm90_selftest.sh [case-filter]
# Env: OUT (default /tmp/ssd-sm90), COMPILE_ONLY=1 (build and check, no run), TIMEOUT (seconds, default
# 120: a barrier that never completes hangs the GPU until then).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/ssd-sm90}
mkdir -p "$OUT"
if command -v python3 > /dev/null; then
  python3 csrc/cuda/sm90/gen_wgmma_ops.py --check ||
    { echo "csrc/cuda/sm90/wgmma_ops.inc is not what gen_wgmma_ops.py writes: run it"; exit 2; }
fi
FLAGS=(-std=c++17 -O3 -arch=sm_90a -I include -I csrc)
nvcc "${FLAGS[@]}" -ptx bench/cuda/sm90_selftest.cu -o "$OUT/sm90_selftest.ptx"
nvcc "${FLAGS[@]}" -Xptxas -v bench/cuda/sm90_selftest.cu -o "$OUT/sm90_selftest" 2> "$OUT/ptxas.log"
if grep -iE "serializ|spill stores [1-9]|warning" "$OUT/ptxas.log"; then echo "(ptxas, above: see $OUT/ptxas.log)"; fi
status=0
for ins in wgmma.fence.sync.aligned wgmma.commit_group.sync.aligned wgmma.wait_group.sync.aligned \
           wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 \
           cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes \
           cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes \
           cp.async.bulk.tensor.2d.global.shared::cta.bulk_group prefetch.tensormap fence.proxy.async.shared::cta \
           mbarrier.init.shared::cta.b64 fence.mbarrier_init.release.cluster mbarrier.arrive.expect_tx.shared::cta.b64 \
           mbarrier.arrive.shared::cta.b64 mbarrier.try_wait.parity.shared::cta.b64; do
  n=$(grep -cF "$ins" "$OUT/sm90_selftest.ptx" || true)
  printf 'PTX  %-75s %s\n' "$ins" "$n"
  [ "$n" -gt 0 ] || status=1
done
if command -v cuobjdump > /dev/null; then
  cuobjdump -sass "$OUT/sm90_selftest" > "$OUT/sm90_selftest.sass"
  for op in HGMMA UTMALDG UTMASTG UTMAPF SYNCS WARPGROUP; do
    printf 'SASS %-75s %s\n' "$op" "$(grep -c "$op" "$OUT/sm90_selftest.sass" || true)"
  done
  grep -q HGMMA "$OUT/sm90_selftest.sass" && grep -q UTMALDG "$OUT/sm90_selftest.sass" ||
    { echo "no HGMMA / UTMALDG in the SASS"; status=1; }
else
  echo "SASS: no cuobjdump here (the PTX above went through ptxas for sm_90a)"
fi
[ $status = 0 ] || { echo "missing instructions"; exit 1; }
[ "${COMPILE_ONLY:-0}" = 1 ] && exit 0
timeout "${TIMEOUT:-120}" "$OUT/sm90_selftest" "$@"
