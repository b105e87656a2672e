#!/usr/bin/env bash
# One device call, many checks: runs the named steps in the order given, each with its own log under
# $OUT and a line in $OUT/summary.txt (step, exit status, seconds), so that a call the machine is
# taken back from still leaves what finished. Lent GPU time is short: name the steps that matter
# first.
#   bash .device/enter.sh bash bench/cuda/session.sh STEP...
# Steps:
#   suite      the GPU suite (jest.gpu.config.js) on build-cmake/Release/ssd_kernels.node, one jest
#              run per file (its own log, FILE_LIMIT seconds each, default 300), so that a call the
#              machine is taken back from still reports the files that finished; with SUITE_FILES (an
#              extended regex over the file names, e.g. "backward|forward") only the files it matches;
#              JEST_ARGS go to each jest run (e.g. --testTimeout=20000, so that a test whose call never
#              settles fails by name within the file's limit instead of holding the file)
#   probe      bench/cuda/sm90_probe.js: the sm_90a forward's calls one at a time, each limited
#   compare    bench/cuda/compare.sh $BASELINE (fingerprints and package timings, before/after;
#              ROUNDS, default 1), without the suite
#   bench      bench --device cuda on G1-G5: forward, then --backward, then --backward --ungated
#   triton     the Triton peer (.peers/mamba_ref, ../shared/peers) with CUDA graphs; $TRITON_CONFIGS
#              (default: G1 G2 G3 G4 G5); Triton's compiled kernels stay in /tmp/triton-cache, so that
#              a later call on the same warm machine skips the compiles (S18-1: 380 s cold, 109 s warm;
#              the cache, 264 MB, is too large to bring back)
#   sanitize   compute-sanitizer memcheck, then racecheck, on `check` (both paths of each direction),
#              SANITIZE_LIMIT seconds each (default 240)
#   ncu        ncu --set full (source counters, clocks left alone) of the kernels matching $NCU_KERNELS
#              (a regex, default k_chain; $NCU_COUNT launches, default 2) in `bench --device cuda
#              --config C $NCU_ARGS` for each C of $NCU_CONFIGS (default G1); the reports go back as
#              $OUT/ncu.tgz, apart from the logs; read them here with bench/cuda/ncu_report.py, since this
#              machine has no ncu
#   harness_build  builds the three harnesses in the background (CPU only: put it before the GPU steps)
#   harness    the forward, backward and step harness checks (run.sh, run_bwd.sh, run_step.sh) on
#              sm_90a, no bench; uses harness_build's binaries when that step ran
#   sm90       the sm_90a primitives' self-test (sm90_selftest.sh)
#   sm90bwd    the sm_90a backward against the float64 references (sm90_bwd_states.sh)
#   ab         bench --device cuda --backward (the forward, the backward and their sum) of each addon in
#              $VARIANTS on $VARIANT_CONFIGS (default G1-G4), the addons alternating for $ROUNDS rounds
#              (default 2) on the default paths, so that a change is timed against its baseline in one call;
#              AB_ARGS are added to each bench (e.g. --ungated)
#   bwdpaths   bench --device cuda --backward ($VARIANT_CONFIGS, default G1-G4), with and without
#              --ungated, on the sm_80 kernels and with SSD_KERNELS_BACKWARD_PATH=sm90
#   variants   bench --device cuda (forward, $VARIANT_CONFIGS, default G1-G5) of each addon in
#              $VARIANTS (space-separated .node files, default the build's), on the sm_80 kernels and
#              with SSD_KERNELS_FORWARD_PATH=sm90, interleaved so that the binaries share the session
# Logs: each step's under $LOGS (default /tmp/ssd-session); when OUT is set (a device call), after every
# step the whole of $LOGS is packed into $OUT/session.tgz and summary.txt copied beside it: the device
# brings back at most 8 files from $OUT, and a call cut off still returns what finished.
# Env: OUT, LOGS, SUITE_FILES (suite), BASELINE (a folder with ssd_kernels.node and dist/, for compare).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${LOGS:-/tmp/ssd-session}
back=${OUT:-}
mkdir -p "$out"
summary=$out/summary.txt
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader > "$out/gpu.txt" 2>&1
echo "gpu: $(cat "$out/gpu.txt")" | tee -a "$summary"

pack() {
  if [ -n "$back" ]; then
    mkdir -p "$back"
    tar czf "$back/session.tgz" --exclude=./ncu -C "$out" . && cp "$summary" "$back/summary.txt"
    if [ -d "$out/ncu" ]; then tar czf "$back/ncu.tgz" -C "$out/ncu" .; fi
  fi
}

run_step() {
  local name=$1
  shift
  local t0=$SECONDS
  echo "== $name: $*" | tee -a "$summary"
  "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "   $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$summary"
  tail -n 5 "$out/$name.log" | sed 's/^/   | /' | tee -a "$summary"
  pack
}

for step in "$@"; do
  case $step in
    suite)
      for file in dist/test/cuda/*.test.js; do
        base=$(basename "$file" .cuda.test.js)
        if [ -n "${SUITE_FILES:-}" ] && ! grep -Eq "$SUITE_FILES" <<< "$base"; then continue; fi
        # shellcheck disable=SC2086  # JEST_ARGS is a list
        run_step "suite_$base" timeout "${FILE_LIMIT:-300}" node node_modules/.bin/jest -c jest.gpu.config.js --ci --verbose ${JEST_ARGS:-} "$file"
      done ;;
    harness_build)
      echo "== harness_build (background)" | tee -a "$summary"
      (SKIP_CHECK=1 SKIP_BENCH=1 BUILD_DIR=/tmp/hb_fwd OUT=$out/fwd_harness bash bench/cuda/run.sh > "$out/harness_build_fwd.log" 2>&1) &
      (SKIP_CHECK=1 SKIP_BENCH=1 BUILD_DIR=/tmp/hb_bwd OUT=$out/bwd_harness bash bench/cuda/run_bwd.sh > "$out/harness_build_bwd.log" 2>&1) &
      harness_built=1 ;;
    probe) run_step probe timeout 300 node bench/cuda/sm90_probe.js ;;
    compare) OUT=$out/compare SKIP_SUITE=1 ROUNDS=${ROUNDS:-1} run_step compare bash bench/cuda/compare.sh "${BASELINE:?compare needs BASELINE}" ;;
    bench)
      run_step bench_fwd node dist/lib/cli.js bench --device cuda --json
      run_step bench_bwd node dist/lib/cli.js bench --device cuda --backward --json
      run_step bench_ungated node dist/lib/cli.js bench --device cuda --backward --ungated --json ;;
    triton)
      export TRITON_CACHE_DIR=/tmp/triton-cache
      mkdir -p "$TRITON_CACHE_DIR"
      # shellcheck disable=SC2086
      run_step triton python3 .peers/mamba_ref/bench_ref.py --mode triton --cuda-graph --configs ${TRITON_CONFIGS:-G1 G2 G3 G4 G5} \
        --json-out "$out/triton.json" ;;
    ncu)
      mkdir -p "$out/ncu"
      for cfg in ${NCU_CONFIGS:-G1}; do
        # shellcheck disable=SC2086  # NCU_ARGS is a list
        run_step "ncu_$cfg" timeout "${NCU_LIMIT:-120}" /usr/local/cuda/bin/ncu --set full --import-source yes --clock-control none \
          -k "regex:${NCU_KERNELS:-k_chain}" -c "${NCU_COUNT:-2}" -f -o "$out/ncu/$cfg" \
          node dist/lib/cli.js bench --device cuda --config "$cfg" --runs 1 ${NCU_ARGS:-}
      done ;;
    sanitize)
      for tool in memcheck racecheck; do
        run_step "sanitize_$tool" timeout "${SANITIZE_LIMIT:-240}" compute-sanitizer --tool "$tool" --error-exitcode 3 \
          node dist/lib/cli.js check
      done ;;
    harness)
      if [ -n "${harness_built:-}" ]; then
        wait
        mkdir -p "$out/fwd_harness" "$out/bwd_harness"
        run_step fwd_harness /tmp/hb_fwd/fwd_harness check
        run_step bwd_harness /tmp/hb_bwd/bwd_harness check
      else
        OUT=$out/fwd_harness SKIP_BENCH=1 run_step fwd_harness bash bench/cuda/run.sh
        OUT=$out/bwd_harness SKIP_BENCH=1 run_step bwd_harness bash bench/cuda/run_bwd.sh
      fi
      OUT=$out/step_harness run_step step_harness bash bench/cuda/run_step.sh 20 ;;
    sm90) OUT=$out/sm90 run_step sm90 bash bench/cuda/sm90_selftest.sh ;;
    sm90bwd) OUT=$out/sm90bwd run_step sm90bwd bash bench/cuda/sm90_bwd_states.sh ;;
    variants)
      for addon in ${VARIANTS:-build-cmake/Release/ssd_kernels.node}; do
        name=$(basename "$addon" .node)
        for path in sm80 sm90; do
          # shellcheck disable=SC2086  # the configs are a list
          SSD_KERNELS_ADDON=$addon SSD_KERNELS_FORWARD_PATH=$path run_step "fwd_${name}_$path" \
            timeout 120 node dist/lib/cli.js bench --device cuda --json --config "${VARIANT_CONFIGS:-G1,G2,G3,G4,G5}"
        done
      done ;;
    ab)
      for ((r = 1; r <= ${ROUNDS:-2}; r++)); do
        for addon in ${VARIANTS:?ab needs VARIANTS}; do
          # shellcheck disable=SC2086  # AB_ARGS is a list
          SSD_KERNELS_ADDON=$addon run_step "ab_$(basename "$(dirname "$addon")")_$(basename "$addon" .node)_r$r" \
            timeout 90 node dist/lib/cli.js bench --device cuda --backward ${AB_ARGS:-} --config "${VARIANT_CONFIGS:-G1,G2,G3,G4}"
        done
      done ;;
    bwdpaths)
      # shellcheck disable=SC2086  # the configs are a list
      for path in sm80 sm90; do
        for mode in --ungated ""; do
          SSD_KERNELS_BACKWARD_PATH=$path run_step "bwd_${path}${mode:+_ungated}" \
            timeout 60 node dist/lib/cli.js bench --device cuda --backward $mode --json --config "${VARIANT_CONFIGS:-G1,G2,G3,G4}"
        done
      done ;;
    *) echo "unknown step '$step'" | tee -a "$summary" ;;
  esac
done
pack
