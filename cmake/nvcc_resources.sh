#!/usr/bin/env bash
# CUDA compiler launcher for loom_ops (set by ops/CMakeLists.txt): runs the compile (through
# ccache when LOOM_NVCC_CCACHE names it), passes its output on unchanged, and keeps ptxas's
# resource report (registers, shared memory, stack, spills per kernel; the compile has
# -Xptxas=-v) beside the object as <object>.ptxas, for tools/kernel_resources.py to check
# against ops/cuda/kernel_resources.tsv. ccache replays the report on a cache hit, so the file
# is written by every build.
set -uo pipefail
out=""
prev=""
for a in "$@"; do
  [[ "$prev" == "-o" ]] && out="$a"
  prev="$a"
done
launcher=()
[[ -n "${LOOM_NVCC_CCACHE:-}" ]] && launcher=("$LOOM_NVCC_CCACHE")
err=$(mktemp)
"${launcher[@]}" "$@" 2>"$err"
rc=$?
grep -v '^ptxas info\|^    [0-9]* bytes stack frame' "$err" >&2
if [[ -n "$out" && $rc -eq 0 ]]; then
  grep '^ptxas info\|^    [0-9]* bytes stack frame' "$err" >"$out.ptxas" || true
fi
rm -f "$err"
exit $rc
