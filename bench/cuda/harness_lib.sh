# Shell functions of the kernel harness scripts (run.sh, run_bwd.sh): sourced from the repo root
# after NVCC, FLAGS (nvcc flags), BUILD_DIR and LOG_DIR are set.

# The toolkit's version and the GPU.
print_tools() {
  echo "== nvcc: $($NVCC --version | tail -n 2 | head -n 1)"
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv 2>/dev/null || true
}

# registers LOG: one line per kernel and arch of a `ptxas -v` log (registers, spills, stack).
registers() {
  python3 - "$1" <<'PY'
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
}

# build_objects [parallel]: every csrc/cuda/**/*.cu and csrc/core/params.cpp (the contract the
# harnesses check against) into $BUILD_DIR, one ptxas report each in $LOG_DIR and the registers in
# $LOG_DIR/registers.txt; sets OBJS. With `parallel`, all compile at once. Exits 2 on a failure.
build_objects() {
  local parallel=${1:-} src obj i=0
  local -a srcs pids=()
  mapfile -t srcs < <(find csrc/cuda -name '*.cu' | sort; echo csrc/core/params.cpp)
  echo "== build csrc/cuda (ptxas -v: registers / spills per kernel)${parallel:+, in parallel}"
  OBJS=()
  for src in "${srcs[@]}"; do
    obj="$BUILD_DIR/$(basename "${src%.*}").o"
    OBJS+=("$obj")
    if [ -n "$parallel" ]; then
      "$NVCC" "${FLAGS[@]}" -Xptxas -v -c "$src" -o "$obj" > "$LOG_DIR/ptxas_$(basename "$src").log" 2>&1 &
      pids+=($!)
    elif ! "$NVCC" "${FLAGS[@]}" -Xptxas -v -c "$src" -o "$obj" > "$LOG_DIR/ptxas_$(basename "$src").log" 2>&1; then
      cat "$LOG_DIR/ptxas_$(basename "$src").log"; echo "BUILD FAILED: $src"; exit 2
    fi
    if [ -z "$parallel" ]; then registers "$LOG_DIR/ptxas_$(basename "$src").log" | tee -a "$LOG_DIR/registers.txt"; fi
  done
  if [ -n "$parallel" ]; then
    for src in "${srcs[@]}"; do
      if ! wait "${pids[$i]}"; then
        cat "$LOG_DIR/ptxas_$(basename "$src").log"; echo "BUILD FAILED: $src"; exit 2
      fi
      i=$((i + 1))
      registers "$LOG_DIR/ptxas_$(basename "$src").log" | tee -a "$LOG_DIR/registers.txt"
    done
  fi
  if grep -Ei "warning" "$LOG_DIR"/ptxas_*.log; then echo "(warnings above)"; fi
}

# build_harness NAME: bench/cuda/NAME.cu linked with OBJS into $BUILD_DIR/NAME. Exits 2 on a failure.
build_harness() {
  echo "== build bench/cuda/$1"
  if ! "$NVCC" "${FLAGS[@]}" -o "$BUILD_DIR/$1" "bench/cuda/$1.cu" "${OBJS[@]}" 2>&1 | tee "$LOG_DIR/build_harness.log"; then
    echo "BUILD FAILED: harness"; exit 2
  fi
  [ -x "$BUILD_DIR/$1" ] || { echo "BUILD FAILED: harness"; exit 2; }
}

# check_and_bench HARNESS [check arguments...]: `HARNESS check ...` unless SKIP_CHECK=1, then
# `HARNESS bench ${BENCH_RUNS:-100}` unless SKIP_BENCH=1, logged to $LOG_DIR; exits with the first
# nonzero status.
check_and_bench() {
  local harness=$1 rc=0 brc
  shift
  if [ "${SKIP_CHECK:-0}" != 1 ]; then
    echo "== check"
    "$harness" check "$@" 2>&1 | tee "$LOG_DIR/check.log"
    rc=${PIPESTATUS[0]}
    echo "== check exit status: $rc"
  fi
  if [ "${SKIP_BENCH:-0}" != 1 ]; then
    echo "== bench"
    "$harness" bench "${BENCH_RUNS:-100}" 2>&1 | tee "$LOG_DIR/bench.log"
    brc=${PIPESTATUS[0]}
    echo "== bench exit status: $brc"
    [ $rc -eq 0 ] && rc=$brc
  fi
  echo "== logs in $LOG_DIR"
  exit $rc
}
