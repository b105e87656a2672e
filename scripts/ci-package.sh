#!/usr/bin/env bash
# The package test of CI (.ci/run calls it after the test suite):
#   1. npm pack (prepack builds the TypeScript and the prebuilt binary, checked as it is written);
#      the tarball stays under 50 MB, holds the prebuild and no build folders;
#   2. the .node in the tarball: no link-time libcudart/libcuda, GLIBC_ needs no newer than 2.28,
#      CUDA code for sm_80/86/89/90a + compute_90 PTX (scripts/check-binary.js); the whole jest suite
#      passes on it;
#   3. a fresh project installs the tarball with no compiler on PATH (cc, c++, gcc, g++, clang,
#      nvcc, cmake, make and python3 absent), and test/install/smoke.js checks known values there,
#      also under SSD_KERNELS_DEVICE=cpu, and from an ES module; as a control, the tarball minus its
#      prebuild must fail to install there;
#   4. the example consumer (test/abi-consumer) builds against the installed package's header and
#      runs a forward through the C function table (test/install/consumer-check.js).
# `--keep-tarball DIR`: once everything passed, copy the tarball into DIR (.ci/run hands it to
# scripts/runtime-matrix.sh, which needs no second pack).
set -euo pipefail
keep=
if [ "${1:-}" = --keep-tarball ]; then keep=$(realpath "${2:?--keep-tarball needs a folder}"); fi
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d "${TMPDIR:-/tmp}/ssd-kernels-package.XXXXXX")
trap 'rm -rf "$work"' EXIT
step() { printf '\n== %s\n' "$*"; }

step "npm pack"
npm pack --pack-destination "$work" >"$work/pack.log" 2>&1 || { cat "$work/pack.log"; exit 1; }
grep -E "^prebuild:|check-binary|  (file|needed|newest|exports|CUDA code):" "$work/pack.log" || true
tarballs=("$work"/ssd-kernels-*.tgz)
tarball=${tarballs[0]}
[ -f "$tarball" ] || { echo "npm pack made no tarball"; cat "$work/pack.log"; exit 1; }
bytes=$(stat -c %s "$tarball")
echo "tarball: $(basename "$tarball"), $((bytes / 1024)) KiB"
if [ "$bytes" -ge $((50 * 1024 * 1024)) ]; then echo "FAIL: the tarball is 50 MB or more"; exit 1; fi
tar -tzf "$tarball" >"$work/contents.txt"
for want in package/prebuilds/linux-x64/ssd-kernels.node package/dist/lib/index.js package/dist/lib/native-api.js \
            package/include/ssd_kernels.h package/binding.gyp package/csrc/binding/c_abi.cpp; do
  grep -qx "$want" "$work/contents.txt" || { echo "FAIL: the tarball lacks $want"; exit 1; }
done
if grep -E "^package/(build|build-cmake|build-prebuild|node_modules|test)/" "$work/contents.txt"; then
  echo "FAIL: the tarball holds build output or tests"; exit 1
fi

step "the shipped binary"
mkdir "$work/extract"
tar -xzf "$tarball" -C "$work/extract" package/prebuilds/linux-x64/ssd-kernels.node
node scripts/check-binary.js "$work/extract/package/prebuilds/linux-x64/ssd-kernels.node" --cuda --max-glibc 2.28 --max-mb 50

step "the jest suite on the shipped binary"
SSD_KERNELS_ADDON="$work/extract/package/prebuilds/linux-x64/ssd-kernels.node" npx jest --runInBand >"$work/jest.log" 2>&1 || { cat "$work/jest.log"; exit 1; }
grep -E "^(Tests|Test Suites):" "$work/jest.log"

step "install with no compiler on PATH"
# A PATH with node, npm, npx and a shell, nothing else: any attempt to compile fails loudly.
mkdir "$work/bin" "$work/project"
for tool in node npm npx sh bash env; do ln -s "$(command -v "$tool")" "$work/bin/$tool"; done
for tool in cc c++ gcc g++ clang clang++ nvcc cmake make python3; do
  if PATH="$work/bin" command -v "$tool" >/dev/null 2>&1; then echo "FAIL: $tool is still on the test PATH"; exit 1; fi
done
cp test/install/smoke.js test/install/known-values.cjs "$work/project/"
# Runs a command with only $work/bin on PATH and no compiler variables.
bare() { /usr/bin/env -u CC -u CXX -u CUDACXX -u CUDAHOSTCXX PATH="$work/bin" "$@"; }
cd "$work/project"
bare npm init -y >/dev/null
bare npm install --no-audit --no-fund --foreground-scripts "$tarball" >"$work/install.log" 2>&1 || { cat "$work/install.log"; exit 1; }
tail -n 5 "$work/install.log"
[ ! -e node_modules/ssd-kernels/build ] || { echo "FAIL: installing built from source"; exit 1; }
bare node smoke.js
bare SSD_KERNELS_DEVICE=cpu node smoke.js --forced-cpu
bare node --input-type=module -e "
  import { ssdSync, Tensor, version } from 'ssd-kernels';
  import { includeDir, getNativeApi } from 'ssd-kernels/native';
  const t = (v, d) => new Tensor('float32', Float32Array.from(v), d);
  const { y } = ssdSync({ x: t([1, 2, 3], [1, 3, 1, 1]), dt: t([0.5, 1, 0.25], [1, 3, 1]), A: t([-1], [1]), B: t([1, 0.5, 2], [1, 3, 1, 1]), C: t([1, 2, -1], [1, 3, 1, 1]) });
  if (Math.abs(y.data[0] - 0.5) > 1e-6 || !includeDir || typeof getNativeApi !== 'function') process.exit(1);
  console.log('ES module import: ok (' + version + ')');"
# The control: the same tarball without its prebuilt binary must fail to install in this
# environment (the install script runs, finds no binary, and cannot compile one).
mkdir "$work/broken" "$work/control"
tar -xzf "$tarball" -C "$work/broken"
rm "$work/broken/package/prebuilds/linux-x64/ssd-kernels.node"
tar -czf "$work/broken.tgz" -C "$work/broken" package
cd "$work/control"
bare npm init -y >/dev/null
if bare npm install --no-audit --no-fund "$work/broken.tgz" >"$work/control.log" 2>&1; then
  echo "FAIL: without the prebuilt binary the install should have needed a compiler"; exit 1
fi
echo "control: without the prebuilt binary the install fails here, as it must ($(grep -c 'gyp ERR' "$work/control.log") node-gyp errors)"
cd "$root"

step "the example consumer, built against the installed package"
mkdir "$work/project/consumer"
cp test/abi-consumer/binding.gyp test/abi-consumer/consumer.c test/abi-consumer/build.js test/abi-consumer/index.js "$work/project/consumer/"
cp test/install/consumer-check.js "$work/project/"
(
  cd "$work/project"
  node consumer/build.js
  node consumer-check.js consumer
)
echo
echo "package test passed"
if [ -n "$keep" ]; then cp "$tarball" "$keep/"; echo "kept $keep/$(basename "$tarball")"; fi
