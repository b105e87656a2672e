#!/usr/bin/env bash
# The memory tests under AddressSanitizer: builds the CPU addon with -fsanitize=address (cmake-js,
# -DSSD_SANITIZE=address, no CUDA) into its own folder, then runs the jest files that hand buffers
# away mid-call and use shared memory (test/memory-policy.test.ts, test/shared-memory.test.ts, the
# worker_threads tests) and the C ABI's fuzz of malformed parameter blocks (test/abi-fuzz.test.ts)
# on that build, in one process with gcc's libasan preloaded (Node.js is not built with ASan, so the
# runtime must come first) and leak detection off (Node.js leaks by design at exit). Fails on a failing test and on any ASan report (each one goes to its own log
# file, whose existence fails the run even if the process exit code were to hide it).
#
#   bash scripts/asan-test.sh            # build (incremental) and test
#   SSD_ASAN_JOBS=2 bash scripts/asan-test.sh
#   SSD_ASAN_TESTS="test/step.test.ts" bash scripts/asan-test.sh   # other jest files
#   SSD_ASAN_NODE=/path/to/node bash scripts/asan-test.sh          # another Node.js (22+ has
#       ArrayBuffer.prototype.transfer, whose new length frees the old memory at once: the hand-over
#       that a use-after-free shows soonest)
#
# Needs what `npm run build:native` needs (cmake, a C++17 compiler; no nvcc) and gcc's libasan
# (`gcc -print-file-name=libasan.so`; Debian: libgcc-12-dev, which g++ depends on).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${SSD_ASAN_BUILD:-build-asan}
jobs=${SSD_ASAN_JOBS:-1}
read -r -a tests <<<"${SSD_ASAN_TESTS:-test/memory-policy.test.ts test/shared-memory.test.ts test/worker.test.ts test/abi-fuzz.test.ts}"
t0=$SECONDS

libasan=$(gcc -print-file-name=libasan.so)
if [ ! -f "$libasan" ]; then
  echo "asan-test: gcc has no libasan.so ($libasan); install gcc's runtime libraries (Debian: libgcc-12-dev)" >&2
  exit 1
fi
libasan=$(realpath "$libasan")

echo "== build: the CPU addon with -fsanitize=address into $out/ ($jobs job(s))"
mkdir -p "$out"
npx cmake-js compile --out "$out" --parallel "$jobs" --CDSSD_WITH_CUDA=OFF --CDSSD_SANITIZE=address >"$out/build.log" 2>&1 || {
  tail -40 "$out/build.log"
  exit 1
}
addon=$root/$out/Release/ssd_kernels.node
if ! nm -D "$addon" | grep __asan_init >/dev/null; then echo "asan-test: $addon is not instrumented"; exit 1; fi
echo "built in $((SECONDS - t0)) s"

echo "== build: TypeScript (the worker tests load dist/)"
npm run build:ts >/dev/null

reports=$(mktemp -d "${TMPDIR:-/tmp}/ssd-kernels-asan.XXXXXX")
trap 'rm -rf "$reports"' EXIT
echo "== jest under ASan: ${tests[*]}"
t1=$SECONDS
status=0
SSD_KERNELS_ADDON=$addon LD_PRELOAD=$libasan \
  ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:log_path=$reports/asan" \
  "${SSD_ASAN_NODE:-node}" node_modules/.bin/jest --runInBand "${tests[@]}" || status=$?
echo "tests ran in $((SECONDS - t1)) s"
if compgen -G "$reports/asan*" >/dev/null; then
  echo "asan-test: AddressSanitizer reported:"
  cat "$reports"/asan*
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "asan-test: jest failed (exit $status)"
  exit "$status"
fi
echo "asan-test: no AddressSanitizer report; $((SECONDS - t0)) s in all"
