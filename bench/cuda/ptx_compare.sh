#!/usr/bin/env bash
# Before/after for a change that must not change what the kernels compute (a refactor): compiles the
# forward, backward and step translation units and the sm_90a ones (sm90/chain_forward.cu,
# chain_backward.cu) of a baseline source tree and of this one to PTX (sm_90a and sm_80) and compares every kernel's arithmetic and memory instruction sequence
# (ptx_compare.py). Runs here, no GPU needed; it does not replace the fingerprints on the GPU.
#   bash bench/cuda/ptx_compare.sh BASELINE_TREE      e.g. a `git worktree add /tmp/base HEAD~1`
set -euo pipefail
cd "$(dirname "$0")/../.."
base=$(cd "${1:?usage: ptx_compare.sh BASELINE_TREE}" && pwd)
out=$(mktemp -d "${TMPDIR:-/tmp}/ssd-ptx.XXXXXX")
trap 'rm -rf "$out"' EXIT
flags=(-std=c++17 -O3 --expt-relaxed-constexpr -I include -I csrc)
status=0
for arch in compute_90a compute_80; do
  for tu in fwd/forward bwd/backward step/step sm90/chain_forward sm90/chain_backward; do
    name=$(basename "$tu")
    (cd "$base" && nvcc "${flags[@]}" -arch=$arch -ptx "csrc/cuda/$tu.cu" -o "$out/old_$name.ptx")
    nvcc "${flags[@]}" -arch=$arch -ptx "csrc/cuda/$tu.cu" -o "$out/new_$name.ptx"
    echo "== $arch $name"
    python3 bench/cuda/ptx_compare.py "$out/old_$name.ptx" "$out/new_$name.ptx" || status=1
  done
done
exit $status
