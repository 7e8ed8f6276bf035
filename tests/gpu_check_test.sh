#!/usr/bin/env bash
# scripts/gpu-check.sh end to end on a machine with nvcc but no GPU, as a device session would
# run it: `build` from whatever state BUILD_DIR is in (reusing its objects: scripts/test.sh
# passes its own CUDA build dir), then `run` on the bundle. Expected: `build` succeeds and packs
# a bundle under the 60 MiB carry limit holding `loom` and every binary of the plan; `run`
# unpacks it, starts every binary (each reports SKIPPED, none FAIL) and exits 3 (no GPU).
# Usage: tests/gpu_check_test.sh BUILD_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:?usage: tests/gpu_check_test.sh BUILD_DIR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GPU_CHECK_BUNDLE="$work/bundle"
fail() { echo "gpu_check_test: FAIL: $*"; for f in "$work"/*.log; do echo "---- $f"; tail -30 "$f"; done; exit 1; }
start=$(date +%s)

BUILD_DIR="$build_dir" scripts/gpu-check.sh build >"$work/build.log" 2>&1 \
  || fail "gpu-check.sh build exited $?"
[[ -s "$GPU_CHECK_BUNDLE/bundle.tar.gz" ]] || fail "no bundle.tar.gz"
mib=$(( ($(du -sb "$GPU_CHECK_BUNDLE" | cut -f1) + 1048575) / 1048576 ))
(( mib < 60 )) || fail "bundle is $mib MiB, over the 60 MiB carry limit"
# Every binary of the plan is in the archive; so is loom.
members=$(tar -tzf "$GPU_CHECK_BUNDLE/bundle.tar.gz")
grep -qx "./bin/loom" <<<"$members" || fail "loom is not in the bundle"
planned=0
while read -r name exe _; do
  [[ -z "$name" || "$name" == "#" ]] && continue
  grep -qx "./bin/$exe" <<<"$members" || fail "test $name: $exe is not in the bundle"
  planned=$(( planned + 1 ))
done <"$GPU_CHECK_BUNDLE/tests.txt"
(( planned > 0 )) || fail "the bundle plans no test binary"

OUT="$work/out" scripts/gpu-check.sh run >"$work/run.log" 2>&1
rc=$?
grep -q "^libraries from this machine:" "$work/run.log" || fail "the bundle was not unpacked and checked"
grep -q "FAIL" "$work/run.log" && fail "a binary failed"
if nvidia-smi -L >/dev/null 2>&1; then
  (( rc == 0 )) || fail "gpu-check.sh run exited $rc on a machine with a GPU"
else
  (( rc == 3 )) || fail "gpu-check.sh run exited $rc without a GPU (want 3)"
  skipped=$(grep -c "^test .*: SKIPPED (no GPU answers)" "$work/out/summary.txt")
  (( skipped == planned )) || fail "$skipped of $planned binaries reported SKIPPED"
fi
echo "gpu_check_test: ok ($planned binaries, bundle ~$mib MiB, run exit $rc, $(( $(date +%s) - start ))s)"
