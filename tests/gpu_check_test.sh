#!/usr/bin/env bash
# scripts/gpu-check.sh end to end on a machine with nvcc but no GPU, as a device session would
# run it: `build` from whatever state BUILD_DIR is in (reusing its objects: scripts/test.sh
# passes its own CUDA build dir), then `run` on the bundle. Expected: `build` packs a bundle
# under the 60 MiB carry limit holding `loom`, every binary of the plan, Open MPI's components,
# the job files and the demo data; `run` unpacks it, every step of the issue is present in its
# report (report.md and report.json), step 0 trains from the bundle with a bare environment
# (no mpirun, no orted), every test binary starts and reports SKIPPED (none FAIL), steps c-g
# check their job files and skip, step sft checks its job and trains it 2 CPU steps on the
# bundle's SFT data, step generate runs its CPU half from that checkpoint, both then SKIPPED,
# and the exit status is 3 (no GPU). A dry run (GPU_CHECK_DRY_RUN: the "GPU" runs are CPU runs)
# then runs the comparison logic of steps c, d, e, sft and generate, which must all pass.
# Usage: tests/gpu_check_test.sh BUILD_DIR
set -uo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:?usage: tests/gpu_check_test.sh BUILD_DIR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GPU_CHECK_BUNDLE="$work/bundle"
fail() { echo "gpu_check_test: FAIL: $*"; for f in "$work"/*.log "$work"/out/logs/*.log; do [[ -f "$f" ]] && { echo "---- $f"; tail -20 "$f"; }; done; exit 1; }
start=$(date +%s)

BUILD_DIR="$build_dir" scripts/gpu-check.sh build >"$work/build.log" 2>&1 \
  || fail "gpu-check.sh build exited $?"
[[ -s "$GPU_CHECK_BUNDLE/bundle.tar.gz" ]] || fail "no bundle.tar.gz"
mib=$(( ($(du -sb "$GPU_CHECK_BUNDLE" | cut -f1) + 1048575) / 1048576 ))
(( mib < 60 )) || fail "bundle is $mib MiB, over the 60 MiB carry limit"
# Every binary of the plan is in the archive; so are loom, the jobs, the data and Open MPI's
# components (a machine without Open MPI runs the bundle).
members=$(tar -tzf "$GPU_CHECK_BUNDLE/bundle.tar.gz")
for want in ./bin/loom ./configs/gpu_check.textproto ./configs/gpt2_124m.textproto \
            ./configs/gpt2_350m.textproto ./data/demo/tokenizer.json ./steps.txt \
            ./configs/sft_tiny.textproto ./data/sft/train_000000.bin \
            ./data/sft/train_000000.bin.mask ./lib/openmpi/mca_ess_singleton.so; do
  grep -qx "$want" <<<"$members" || fail "$want is not in the bundle"
done
grep -q '^\./lib/libmpi\.so' <<<"$members" || fail "libmpi is not in the bundle"
planned=0
while read -r name exe _; do
  [[ -z "$name" || "$name" == "#" ]] && continue
  grep -qx "./bin/$exe" <<<"$members" || fail "test $name: $exe is not in the bundle"
  planned=$(( planned + 1 ))
done <"$GPU_CHECK_BUNDLE/tests.txt"
(( planned > 0 )) || fail "the bundle plans no test binary"
grep -q "^communicator_gpu_test " "$GPU_CHECK_BUNDLE/tests.txt" \
  || fail "communicator_gpu_test (step b, world size 1) is not planned"

# (BUDGET_S: the device's budget is not this loaded machine's; every step must run here.)
BUDGET_S=3600 OUT="$work/out" scripts/gpu-check.sh run >"$work/run.log" 2>&1
rc=$?
grep -q "^libraries from this machine:" "$work/run.log" || fail "the bundle was not unpacked and checked"
[[ -s "$work/out/report.md" && -s "$work/out/report.json" ]] || fail "no report.md / report.json"
grep -q "===== gpu-check summary =====" "$work/run.log" || fail "no summary printed"
# Every step of the issue, once, in order.
steps=$(python3 -c 'import json,sys; print(" ".join(s["step"] for s in json.load(open(sys.argv[1]))["steps"]))' \
  "$work/out/report.json")
want_steps="0 a sft generate b c d e f g"
[[ "$steps" == "$want_steps" ]] || fail "report steps '$steps', want '$want_steps'"
status() { python3 -c 'import json,sys; print({s["step"]: s["status"] for s in json.load(open(sys.argv[1]))["steps"]}[sys.argv[2]])' \
  "$work/out/report.json" "$1"; }
[[ "$(status 0)" == PASS ]] || fail "step 0: loom did not train from the bundle with a bare environment"
if nvidia-smi -L >/dev/null 2>&1; then
  (( rc == 0 )) || fail "gpu-check.sh run exited $rc on a machine with a GPU"
else
  (( rc == 3 )) || fail "gpu-check.sh run exited $rc without a GPU (want 3)"
  for s in a sft generate b c d e f g; do
    [[ "$(status $s)" == SKIPPED ]] || fail "step $s: $(status $s) without a GPU (want SKIPPED)"
  done
  # Every planned binary started and skipped itself (exit 77).
  started=$(cat "$work"/out/logs/[ab]-tests.txt 2>/dev/null | grep -c ": exit 77 ")
  (( started == planned )) || fail "$started of $planned binaries started and reported skipped"
fi
# The logic of steps c-e (two runs compared, losses bitwise, resume from a checkpoint), sft
# (three runs of the SFT job compared; its checkpoint) and generate (greedy texts compared) on
# the CPU in fp32 over a few steps (GPU_CHECK_DRY_RUN), so a bug in it shows here, not on the GPU.
GPU_CHECK_DRY_RUN=1 TRAIN_STEPS_OVERRIDE=6 BUDGET_S=3600 OUT="$work/dry" scripts/gpu-check.sh run \
  >"$work/dry.log" 2>&1
for s in c d e sft generate; do
  st=$(python3 -c 'import json,sys; print({s["step"]: s["status"] for s in json.load(open(sys.argv[1]))["steps"]}[sys.argv[2]])' \
    "$work/dry/report.json" "$s")
  [[ "$st" == PASS ]] || fail "dry run (CPU) step $s: $st: $(grep "^$s " "$work/dry.log" | head -1)"
done
echo "gpu_check_test: ok ($planned binaries, bundle ~$mib MiB, run exit $rc, $(( $(date +%s) - start ))s)"
