#!/usr/bin/env bash
# Build and run the CUDA forward harness: check (correctness), then bench (G1-G4).
# Run from the repo root on a GPU machine:  bash bench/cuda/run.sh
# Env: OUT (folder for logs, optional), BUILD_DIR (default /tmp/ssd-cuda-build),
#      NVCC_EXTRA (extra nvcc flags, e.g. -DSSD_FAST_SCAN=1), SKIP_CHECK=1 / SKIP_BENCH=1, CHECK_FILTER (substring of case names), BENCH_RUNS (default 100).
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR=${BUILD_DIR:-/tmp/ssd-cuda-build}
LOG_DIR=${OUT:-$BUILD_DIR/logs}
mkdir -p "$BUILD_DIR" "$LOG_DIR"
NVCC=${NVCC:-nvcc}
FLAGS=(-O3 -std=c++17 -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90a,code=sm_90a
       -I include -I csrc -lineinfo -Xcompiler -Wall,-Wextra ${NVCC_EXTRA:-})

echo "== nvcc: $($NVCC --version | tail -n 2 | head -n 1)"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv 2>/dev/null || true

mapfile -t SRCS < <(find csrc/cuda -name '*.cu' | sort; echo csrc/core/params.cpp)
echo "== build csrc/cuda (ptxas -v: registers / spills per kernel)"
objs=()
for src in "${SRCS[@]}"; do
  obj="$BUILD_DIR/$(basename "${src%.*}").o"
  if ! "$NVCC" "${FLAGS[@]}" -Xptxas -v -c "$src" -o "$obj" > "$LOG_DIR/ptxas_$(basename "$src").log" 2>&1; then
    cat "$LOG_DIR/ptxas_$(basename "$src").log"; echo "BUILD FAILED: $src"; exit 2
  fi
  objs+=("$obj")
  # one line per kernel and arch: registers, spills, stack
  python3 - "$LOG_DIR/ptxas_$(basename "$src").log" <<'PY' | tee -a "$LOG_DIR/registers.txt"
import re, subprocess, sys
fn = arch = None; stack = ss = sl = 0
for line in open(sys.argv[1]):
    m = re.search(r"Compiling entry function '([^']+)' for '(sm_\w+)'", line)
    if m: fn, arch = m.group(1), m.group(2); continue
    m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
    if m: stack, ss, sl = map(int, m.groups()); continue
    m = re.search(r"Used (\d+) registers", line)
    if m and fn:
        try: dem = subprocess.run(["c++filt", fn], capture_output=True, text=True).stdout.strip()
        except Exception: dem = fn
        dem = dem.replace("ssd::cuda::(anonymous namespace)::", "")
        print(f"  {arch:7s} regs {int(m.group(1)):3d}  spill st/ld {ss:3d}/{sl:3d} B  stack {stack:3d} B  {dem}")
        fn = None
PY
done
if grep -Ei "warning" "$LOG_DIR"/ptxas_*.log; then echo "(warnings above)"; fi

echo "== build bench/cuda/fwd_harness"
if ! "$NVCC" "${FLAGS[@]}" -o "$BUILD_DIR/fwd_harness" bench/cuda/fwd_harness.cu "${objs[@]}" 2>&1 | tee "$LOG_DIR/build_harness.log"; then
  echo "BUILD FAILED: harness"; exit 2
fi
[ -x "$BUILD_DIR/fwd_harness" ] || { echo "BUILD FAILED: harness"; exit 2; }

rc=0
if [ "${SKIP_CHECK:-0}" != 1 ]; then
  echo "== check"
  "$BUILD_DIR/fwd_harness" check ${CHECK_FILTER:-} 2>&1 | tee "$LOG_DIR/check.log"
  rc=${PIPESTATUS[0]}
  echo "== check exit status: $rc"
fi
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  echo "== bench"
  "$BUILD_DIR/fwd_harness" bench "${BENCH_RUNS:-100}" 2>&1 | tee "$LOG_DIR/bench.log"
  brc=${PIPESTATUS[0]}
  echo "== bench exit status: $brc"
  [ $rc -eq 0 ] && rc=$brc
fi
echo "== logs in $LOG_DIR"
exit $rc
