#!/usr/bin/env bash
# CPU emulation of the CUDA backward (or, with KERNEL=fwd, the forward), for machines without a GPU:
# builds csrc/cuda/bwd/backward.cu and bench/cuda/bwd_harness.cu (fwd/forward.cu and fwd_harness.cu) as host C++ (g++) on top of emu_cuda.h (every CUDA thread a fiber,
# barriers and warp shuffles cooperative, ldmatrix / mma.sync in software with the PTX fragment
# layouts), then runs `bwd_harness check` with the given arguments. It executes the kernels' index
# math, masks, barriers and workspace layout on every compute path; it is slow (seconds to minutes a
# case) and says nothing about speed or about real-hardware rounding order. Needs the CUDA headers.
#   bash bench/cuda/emu/build.sh [check-filter]       e.g. "=L=63 Q=64" (exact) or "seq" (substring)
# The forward's cp.async copies run synchronously there, so a missing cp.async wait goes unseen.
# The backward's "yu" cases run the forward first (for y_ungated), which the backward's build lacks:
# they fail there with "no forward in the emulation".
# SSD_KERNELS_FORWARD_PATH=sm90 / SSD_KERNELS_BACKWARD_PATH=sm90 at run time put the cases the sm_90a
# kernels take on them (the harness skips the others). Unset, the backward's variable is set to sm80
# here, so that every case checks the sm_80 kernels (the package's default gives the sm_90a backward
# the cases it takes; bench/cuda/emu/sm90_bwd.sh checks those kernels on their own).
# Env: KERNEL (bwd or fwd, default bwd), BUILD_DIR (default /tmp/ssd-emu-$KERNEL), CUDA_INC (default:
# next to nvcc), RUNS (backward: runs compared, 2), EMU_CXXFLAGS (extra g++ flags), and at run time
# SSD_BWD_TEST_SPLIT=n to force the backward's head-slice count (the harness reads it).
# The sm_90a building blocks (csrc/cuda/sm90: mbarrier, TMA, wgmma; emu_sm90.h) have their own script
# and self-test: bash bench/cuda/emu/sm90.sh.
set -euo pipefail
cd "$(dirname "$0")/../../.."
KERNEL=${KERNEL:-bwd}
case "$KERNEL" in bwd|fwd) ;; *) echo "KERNEL must be bwd or fwd"; exit 2 ;; esac
BUILD_DIR=${BUILD_DIR:-/tmp/ssd-emu-$KERNEL}
source bench/cuda/emu/cuda_inc.sh
mkdir -p "$BUILD_DIR"
E=bench/cuda/emu
cp "$E/emu_cuda.h" "$BUILD_DIR/"
mkdir -p "$BUILD_DIR/cuda/common"
python3 "$E/transform.py" mma csrc/cuda/common/mma.cuh "$BUILD_DIR/cuda/common/mma.cuh"
for h in csrc/cuda/common/*.cuh csrc/cuda/fwd/*.cuh csrc/cuda/bwd/*.cuh; do
  [ -f "$h" ] || continue
  rel=${h#csrc/}
  mkdir -p "$BUILD_DIR/$(dirname "$rel")"
  [ "$rel" = cuda/common/mma.cuh ] || python3 "$E/transform.py" file "$h" "$BUILD_DIR/$rel"
done
# the sm_90a kernels (the forward's and the backward's, which either path may call), on the emulation of
# their instructions (emu_sm90.h)
cp "$E/emu_sm90.h" "$BUILD_DIR/"
mkdir -p "$BUILD_DIR/cuda/sm90"
python3 "$E/transform.py" sm90 csrc/cuda/sm90 "$BUILD_DIR/cuda/sm90"
sm90_objs=()
for f in chain_forward chain_backward; do
  python3 "$E/transform.py" file "csrc/cuda/sm90/$f.cu" "$BUILD_DIR/emu_sm90_$f.cpp"
  sed -i 's|#include "emu_cuda.h"|#include "emu_sm90.h"|' "$BUILD_DIR/emu_sm90_$f.cpp"
  sm90_objs+=("$BUILD_DIR/emu_sm90_$f.o")
done
src=$([ "$KERNEL" = bwd ] && echo csrc/cuda/bwd/backward.cu || echo csrc/cuda/fwd/forward.cu)
python3 "$E/transform.py" file "$src" "$BUILD_DIR/emu_ssd_$KERNEL.cpp"
subs=(); [ "$KERNEL" = bwd ] && subs=("constexpr int kRuns = 5;=>constexpr int kRuns = ${RUNS:-2};")
python3 "$E/transform.py" file "bench/cuda/${KERNEL}_harness.cu" "$BUILD_DIR/emu_harness.cpp" "${subs[@]}"
# what the harnesses share (its fill kernel and launch); found next to emu_harness.cpp first
python3 "$E/transform.py" file bench/cuda/harness_common.h "$BUILD_DIR/harness_common.h"
FLAGS=(-std=c++17 -O2 -w -I "$BUILD_DIR" -I "$CUDA_INC" -I include -I csrc -I bench/cuda ${EMU_CXXFLAGS:-})
stub_flags=(-DEMU_SM90); [ "$KERNEL" = fwd ] && stub_flags+=(-DEMU_WITH_FORWARD)
g++ "${FLAGS[@]}" -c "$BUILD_DIR/emu_ssd_$KERNEL.cpp" -o "$BUILD_DIR/emu_ssd.o" & p1=$!
g++ "${FLAGS[@]}" -c "$BUILD_DIR/emu_harness.cpp" -o "$BUILD_DIR/emu_harness.o" & p2=$!
g++ "${FLAGS[@]}" "${stub_flags[@]}" -c "$E/emu_stubs.cpp" -o "$BUILD_DIR/emu_stubs.o" & p3=$!
g++ "${FLAGS[@]}" -x c++ -c csrc/cuda/supports.cu -o "$BUILD_DIR/supports.o" & p4=$!
g++ "${FLAGS[@]}" -c csrc/core/params.cpp -o "$BUILD_DIR/params.o" & p5=$!
g++ "${FLAGS[@]}" -Wno-psabi -c "$BUILD_DIR/emu_sm90_chain_forward.cpp" -o "${sm90_objs[0]}" & p6=$!
g++ "${FLAGS[@]}" -Wno-psabi -c "$BUILD_DIR/emu_sm90_chain_backward.cpp" -o "${sm90_objs[1]}" & p7=$!
wait $p1 && wait $p2 && wait $p3 && wait $p4 && wait $p5 && wait $p6 && wait $p7 || { echo "BUILD FAILED"; exit 2; }
g++ -o "$BUILD_DIR/emu_harness" "$BUILD_DIR"/emu_ssd.o "$BUILD_DIR"/emu_harness.o "$BUILD_DIR"/emu_stubs.o "$BUILD_DIR"/supports.o "$BUILD_DIR"/params.o "${sm90_objs[@]}"
SSD_KERNELS_BACKWARD_PATH=${SSD_KERNELS_BACKWARD_PATH:-sm80} exec "$BUILD_DIR/emu_harness" check "$@"
