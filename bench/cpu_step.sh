#!/usr/bin/env bash
# Builds bench/cpu_step (the CPU decode step's kernel alone, per batch size and thread count) and
# runs it with the given arguments. The csrc/cpu files get the shipped build's per-file flags
# (bench/cpu_build.sh; objects are rebuilt only when their sources changed).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/cpu_build.sh"
cpu_build cpu_step "${BUILD_DIR:-$here/out/cpu_step}"
"$bin" "$@"
