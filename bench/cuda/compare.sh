#!/usr/bin/env bash
# Before/after on the GPU machine, in one session: the bitwise fingerprints of every output
# (bench/cuda/hashes.js) and the package's timings (forward, forward + backward recomputing and with
# yUngated kept, the decode step), for a baseline build and the current one, interleaved so that
# both see the same card and clocks. Then the GPU suite on the current build.
#   bash .device/enter.sh bash bench/cuda/compare.sh BASELINE_DIR
# BASELINE_DIR holds ssd_kernels.node and dist/ of the build to compare against; the current build is
# build-cmake/Release/ssd_kernels.node with dist/. Env: OUT (logs; default /tmp/compare), ROUNDS
# (timing rounds, default 2), SKIP_SUITE=1.
set -uo pipefail
cd "$(dirname "$0")/../.."
base=${1:?usage: compare.sh BASELINE_DIR}
out=${OUT:-/tmp/compare}
mkdir -p "$out"
new_addon=$PWD/build-cmake/Release/ssd_kernels.node
old_addon=$PWD/$base/ssd_kernels.node
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$out/gpu.txt"

echo "== fingerprints"
SSD_KERNELS_ADDON=$old_addon node bench/cuda/hashes.js --lib "$base/dist/lib" > "$out/hash_before.txt"
SSD_KERNELS_ADDON=$new_addon node bench/cuda/hashes.js --lib dist/lib > "$out/hash_after.txt"
if diff "$out/hash_before.txt" "$out/hash_after.txt" > "$out/hash_diff.txt"; then
  echo "identical: $(wc -l < "$out/hash_after.txt") outputs"
else
  echo "DIFFERENT outputs:"; cat "$out/hash_diff.txt"
fi
sha256sum "$out/hash_before.txt" "$out/hash_after.txt"
# bench/cuda/fingerprints.txt: the fingerprints recorded with the last change that kept every bit
if diff -q bench/cuda/fingerprints.txt "$out/hash_after.txt" > /dev/null; then
  echo "the current build matches bench/cuda/fingerprints.txt"
else
  echo "the current build differs from bench/cuda/fingerprints.txt (expected only where a change meant to change results)"
fi

echo "== timings (each round: before, then after)"
for round in $(seq "${ROUNDS:-2}"); do
  for which in before after; do
    if [ $which = before ]; then addon=$old_addon lib=$base/dist/lib; else addon=$new_addon lib=dist/lib; fi
    for mode in "--device cuda" "--device cuda --backward" "--device cuda --backward --ungated" "--step --device cuda"; do
      echo "-- round $round $which: bench $mode"
      # shellcheck disable=SC2086
      SSD_KERNELS_ADDON=$addon node "$lib/cli.js" bench $mode --json > "$out/t_${round}_${which}_$(echo $mode | tr -dc 'a-z')".json 2>> "$out/bench_stderr.txt" ||
        echo "bench failed"
    done
  done
done
node -e '
const fs = require("fs"), out = process.argv[1];
const rows = {};
for (const f of fs.readdirSync(out).filter((f) => f.startsWith("t_"))) {
  const [, round, which, mode] = f.replace(".json", "").split("_");
  let data; try { data = JSON.parse(fs.readFileSync(`${out}/${f}`, "utf8")); } catch { continue; }
  for (const r of data.rows || data.results || []) {
    const key = `${mode} ${r.config ?? "b" + r.batch}`;
    for (const field of ["ms", "fwdBwdMs"]) {
      if (r[field] === undefined) continue;
      ((rows[`${key} ${field}`] ??= {})[which] ??= []).push(r[field]);
    }
  }
}
for (const [k, v] of Object.entries(rows).sort()) {
  const b = Math.min(...(v.before || [NaN])), a = Math.min(...(v.after || [NaN]));
  console.log(`${k.padEnd(48)} before ${b.toFixed(4)}  after ${a.toFixed(4)}  ${(100 * (a / b - 1)).toFixed(2)}%`);
}' "$out" | tee "$out/timings.txt"

if [ "${SKIP_SUITE:-0}" != 1 ]; then
  echo "== GPU suite (current build)"
  SSD_KERNELS_ADDON=$new_addon node node_modules/.bin/jest -c jest.gpu.config.js 2>&1 | tail -n 40 | tee "$out/suite.txt"
fi
