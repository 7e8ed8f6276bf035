#!/usr/bin/env bash
# The one script to run when a GPU is at hand. Two halves:
#
#   scripts/gpu-check.sh build   (here, with nvcc; no GPU needed) configures $BUILD_DIR for
#                                sm_90, builds `loom` and every gpu-labelled test binary, prepares
#                                the demo corpus, and packs into .device/bundle/ (git-ignored) one
#                                compressed archive holding the binaries, the shared libraries the
#                                GPU machine lacks (Open MPI and its MCA components included, so a
#                                machine without Open MPI runs it), the job files and the data.
#                                CUDA's own libraries (cudart, cuBLAS/cuBLASLt, NCCL, the driver)
#                                are never packed: the GPU machine has its own.
#   scripts/gpu-check.sh run     (there; nothing compiles) unpacks the bundle and runs the steps
#                                below, going on past a failing step, within a 9-minute budget
#                                on one H100 or H200 (a device command may run 10 minutes). Prints a one-screen summary and writes one
#                                report, report.md and report.json, under $OUT (the device tool
#                                brings $OUT back), else .device/logs/, with every step's log.
#
# Steps (run):
#   0  bundle   the bundled `loom` starts and trains 2 CPU steps with a bare environment (no
#               Open MPI daemon on PATH, libraries from the bundle only)
#   a  ops      every CUDA op against the CPU in f32 and bf16 (the single-process gpu test
#               binaries: ops, runtime, golden)
#   sft         issue 20's fine-tuning path on the GPU: `loom train` of configs/sft_tiny.textproto
#               (random init instead of the quickstart checkpoint, SFT_STEPS = 60 steps, on the
#               shipped Q/A pairs that `build` packs into data/sft with loss masks and segment
#               ids) three times: CPU fp32 (the reference; it also saves the checkpoint step
#               `generate` reads), GPU fp32 (every step's loss within 1e-3 relative of the CPU's,
#               step 1 within 1e-5: the segment-masked attention and the masked cross-entropy
#               kernels in f32) and GPU bf16 (step 1 within 1%, the mean of the last 10 losses
#               within 10%: a coarse check of bf16 training with masks; the fp32 run is the
#               exact one). The bounds are stated, not yet measured on a GPU
#   generate    `loom generate` greedy (temperature 0, 90 tokens, --no-stop, template qa) from
#               the sft step's CPU checkpoint, two prompts, --backend cuda beside --backend cpu:
#               generation runs in f32 on both, so the text must be equal; else the first
#               differing new token is reported. Proves DecodeAttention and the KV-cached
#               decode on CUDA, at cache lengths from the prompt's ~30 to ~120 keys
#   b  comm     communicator_gpu_test at world size 1 (NCCL on one GPU), without mpirun
#   c  train    `loom train`, bf16, demo data, one GPU, 300 steps, beside the CPU fp32 run of the
#               same job: validation losses within 2% at the end
#   d  determ   a second identical bf16 run: bitwise-equal losses, or the first step they part
#   e  resume   checkpoint saved on the GPU at step 150, resumed to 300: losses bitwise equal to
#               the uninterrupted run from step 151 on
#   f  step     `loom bench step`, GPT-2 124M and 350M, bf16, T=1024, at the largest micro-batch
#               that fits (32, 16, 8, ... tried in turn): ms/step, tokens/s, MFU against the
#               chip's datasheet peak, the per-op breakdown, the allocator's peak vs loom's estimate
#   g  opsbench `loom bench ops --device cuda`
#
# Steps run in the order above: the ops (a) and issue 20's paths (sft, generate: CUDA code no
# GPU has run yet) first, so a short budget still proves them.
#
# Exit status of run: 0 every step passed; 1 a step failed; 3 no GPU answered (the binaries
# started and reported themselves skipped; steps c-g checked their job files and skipped; sft
# trained 2 CPU steps of its job from the bundle and generate ran its CPU half from them).
#
# Environment: BUILD_DIR (default build-gpu; scripts/test.sh passes its own CUDA build dir so
# nothing is compiled twice), LOOM_CUDA_ARCHS (default 90), JOBS (default 2), GPU_CHECK_BUNDLE
# (default .device/bundle; tests/gpu_check_test.sh packs into a temporary one), BUDGET_S (default
# 540: steps that would start later are reported SKIPPED (budget), and no command runs past it,
# so the run ends inside a 600 s device command with its report written), BENCH_SHAPES (default all),
# SFT_STEPS_OVERRIDE (the sft step's steps; default 60, the dry run's 4).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUNDLE_DIR="${GPU_CHECK_BUNDLE:-$ROOT/.device/bundle}"
BUILD_DIR="${BUILD_DIR:-build-gpu}"
MAX_BUNDLE_MIB=60
STEPS="0 a sft generate b c d e f g"

# Libraries never packed: the C runtime (the GPU machine has its own, newer one), and CUDA's
# libraries and driver (large, and they must match the machine's driver).
SYSTEM_LIBS='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libresolv|libutil)\.so'
CUDA_LIBS='^(libcuda|libcudart|libcublas|libcublasLt|libnccl|libnvidia-[a-z-]+|libnvrtc|libnvJitLink|libcusparse|libcufft|libcurand|libcusolver|libcudnn[a-z_]*)\.so'
# Packed apart and used only when the GPU machine's own copies are too old for the binaries.
FALLBACK_LIBS='^(libstdc\+\+|libgcc_s)\.so'
# Open MPI components whose libraries (InfiniBand, UCX, OFI, PSM, PMIx) a single-GPU check does
# not need: not packed (a world of one talks to nobody).
OMPI_SKIP_DEPS='libuc[ptsm]|libpsm|libibverbs|librdmacm|libfabric|libpmix|libmunge|liboshmem|libnl-|libefa|libinfinipath'

die() { echo "gpu-check: $*" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Prints one line per gpu-labelled test of $BUILD_DIR: "run NAME BINARY [ARGS...]" or
# "skip NAME (why)". A multi-rank test registered at one rank runs without mpirun (loom starts
# as a world of one when no launcher started it).
gpu_test_plan() {
  (cd "$BUILD_DIR" && ctest -L '^gpu$' --show-only=json-v1 2>/dev/null) | python3 -c '
import json, os, sys
for t in json.load(sys.stdin).get("tests", []):
    cmd = t.get("command") or [t["name"]]  # not built yet: the target is named like the test
    exe = os.path.basename(cmd[0])
    if exe.startswith(("mpiexec", "mpirun")):
        np = cmd[cmd.index("-np") + 1] if "-np" in cmd else "?"
        if np == "1":
            print("run", t["name"], os.path.basename(cmd[-1]))
        else:
            print("skip", t["name"], "(needs mpirun at", np, "ranks, one GPU each)")
    elif exe == "loom":
        print("skip", t["name"], "(step g runs the full loom bench ops --device cuda)")
    else:
        print("run", t["name"], " ".join([exe] + cmd[1:]))
'
}

# Copies every shared library `$@` load (resolved here) into $stage/lib, except those the GPU
# machine has (C runtime, CUDA) and the C++ runtime (into lib-fallback).
pack_libs() {
  local lib name
  while read -r lib; do
    name=$(basename "$lib")
    if [[ "$name" =~ $SYSTEM_LIBS || "$name" =~ $CUDA_LIBS ]]; then
      echo "$name" >>"$TMP/left.txt"
    elif [[ "$name" =~ $FALLBACK_LIBS ]]; then
      cp -L -n "$lib" "$stage/lib-fallback/"
    else
      cp -L -n "$lib" "$stage/lib/"
      echo "$name" >>"$TMP/packed.txt"
    fi
  done < <(ldd "$@" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u)
}

build() {
  local nvcc="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
  [[ -x "$nvcc" ]] || die "no nvcc at $nvcc (set CUDA_HOME)"
  echo "== configure $BUILD_DIR (CUDA archs ${LOOM_CUDA_ARCHS:-90})"
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" -DLOOM_CUDA=ON \
    -DLOOM_CUDA_ARCHS="${LOOM_CUDA_ARCHS:-90}" -DCMAKE_CUDA_COMPILER="$nvcc" >/dev/null

  # Which binaries the gpu-labelled tests run, from ctest's own description of them (see
  # gpu_test_plan). `loom` is built first so the tests that run it are recognised as such.
  echo "== build loom (-j${JOBS:-2})"
  cmake --build "$BUILD_DIR" -j "${JOBS:-2}" --target loom
  local plan="$BUILD_DIR/gpu-check-plan.txt"
  gpu_test_plan >"$plan"
  local known targets=()
  known=$(cmake --build "$BUILD_DIR" --target help | awk '/^\.\.\. / {print $2}')
  while read -r kind name exe _; do
    [[ "$kind" == run ]] || continue
    grep -qx "$exe" <<<"$known" \
      || die "gpu test $name runs '$exe', which is neither built nor a target of $BUILD_DIR"
    targets+=("$exe")
  done <"$plan"
  if (( ${#targets[@]} )); then
    echo "== build ${targets[*]} (-j${JOBS:-2})"
    cmake --build "$BUILD_DIR" -j "${JOBS:-2}" --target "${targets[@]}"
  fi
  gpu_test_plan >"$plan"

  echo "== pack"
  stage="$TMP/stage"
  mkdir -p "$stage/bin" "$stage/lib/openmpi" "$stage/lib-fallback" "$stage/configs" "$stage/data"
  : >"$TMP/packed.txt"
  : >"$TMP/left.txt"
  cp "$BUILD_DIR/bin/loom" "$stage/bin/"
  : >"$stage/tests.txt"
  while read -r kind name rest; do
    if [[ "$kind" == run ]]; then
      read -r exe args <<<"$rest"
      cp "$BUILD_DIR/tests/$exe" "$stage/bin/" 2>/dev/null || cp "$BUILD_DIR/bin/$exe" "$stage/bin/" \
        || die "built $exe but cannot find it under $BUILD_DIR/tests or $BUILD_DIR/bin"
      echo "$name $exe ${args:-}" >>"$stage/tests.txt"
    else
      echo "gpu-check: $name skipped $rest"
      echo "# skipped $name $rest" >>"$stage/tests.txt"
    fi
  done <"$plan"
  strip --strip-unneeded "$stage"/bin/* 2>/dev/null || true
  pack_libs "$stage"/bin/*

  # Open MPI's MCA components (dlopened at MPI_Init, so ldd does not see them): those a world
  # of one needs, with their libraries. `run` points Open MPI at them.
  local mpilib comp_dir
  mpilib=$(ldd "$stage/bin/loom" | awk '$1 ~ /^libmpi\.so/ {print $3}')
  if [[ -n "$mpilib" ]]; then
    comp_dir=$(find "$(dirname "$(readlink -f "$mpilib")")" -maxdepth 4 -name 'mca_ess_singleton.so' \
      -printf '%h\n' 2>/dev/null | head -1)
    [[ -n "$comp_dir" ]] || die "cannot find Open MPI's MCA components beside $mpilib"
    local comp deps
    for comp in "$comp_dir"/mca_*.so; do
      deps=$(ldd "$comp" 2>&1 || true)  # (not piped into grep -q: pipefail and SIGPIPE)
      grep -qE "$OMPI_SKIP_DEPS" <<<"$deps" && continue
      cp -L "$comp" "$stage/lib/openmpi/"
    done
    pack_libs "$stage"/lib/openmpi/*.so
  fi
  if ldd "$stage"/bin/* "$stage"/lib/openmpi/*.so 2>/dev/null | grep -q "not found"; then
    ldd "$stage"/bin/* | grep "not found" >&2
    die "some libraries do not resolve here either"
  fi

  # The jobs and the data of steps c-f; the demo corpus is prepared here by the loom just built.
  local f
  for f in gpu_check gpt2_124m gpt2_350m; do
    cp "configs/$f.textproto" "$stage/configs/" || die "configs/$f.textproto is missing"
  done
  "$BUILD_DIR/bin/loom" data prepare --input /usr/share/common-licenses --out "$stage/data/demo" \
    --val-fraction 0.05 >"$TMP/prepare.log" 2>&1 || { cat "$TMP/prepare.log"; die "data prepare failed"; }
  # The sft step's data: the shipped Q/A pairs, packed (so samples hold several examples and
  # the attention's segment ids matter), with loss masks and the qa template.
  cp configs/sft_tiny.textproto "$stage/configs/" || die "configs/sft_tiny.textproto is missing"
  "$BUILD_DIR/bin/loom" data sft --input data/demo/sft_qa.jsonl --out "$stage/data/sft" --seq-len 128 \
    --val-fraction 0 --template qa >"$TMP/sft.log" 2>&1 || { cat "$TMP/sft.log"; die "data sft failed"; }
  echo "$STEPS" >"$stage/steps.txt"

  echo "packed: $(sort -u "$TMP/packed.txt" | tr '\n' ' ')"
  echo "left to the GPU machine: $(sort -u "$TMP/left.txt" | tr '\n' ' ')"
  echo "Open MPI components: $(ls "$stage/lib/openmpi" | wc -l)"
  echo "loom $(git rev-parse --short=12 HEAD) built $(date -u +%Y-%m-%dT%H:%MZ) for sm_${LOOM_CUDA_ARCHS:-90}" \
    >"$stage/VERSION"

  rm -rf "$BUNDLE_DIR"
  mkdir -p "$BUNDLE_DIR"
  tar -C "$stage" -czf "$BUNDLE_DIR/bundle.tar.gz" .
  cp "$stage/tests.txt" "$stage/VERSION" "$stage/steps.txt" "$BUNDLE_DIR/"
  local bytes mib
  bytes=$(du -sb "$BUNDLE_DIR" | cut -f1)
  mib=$(( (bytes + 1048575) / 1048576 ))
  echo "bundle: $BUNDLE_DIR, $bytes bytes (~${mib} MiB; unpacked $(du -sh "$stage" | cut -f1))"
  (( mib < MAX_BUNDLE_MIB )) || die "bundle is ${mib} MiB, over the ${MAX_BUNDLE_MIB} MiB limit"
  cat <<EOF

Device call (from the repo root; the working tree travels, the bundle is carried):
  run(command="scripts/gpu-check.sh run", carry=[".device/bundle"], timeout_s=600)
Then read the summary at the end of output_tail; report.md, report.json and every step's log
come back as files under \$OUT.
EOF
}

# Adds to LD_LIBRARY_PATH a folder holding each CUDA library the binaries need but the loader
# cannot find (the toolkit's lib64, or the pip wheels' nvidia/*/lib folders).
find_cuda_libs() {
  local missing lib dir
  missing=$(ldd "$@" 2>/dev/null | awk '/not found/ {print $1}' | sort -u)
  for lib in $missing; do
    dir=""
    for root in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda \
                /usr/lib/x86_64-linux-gnu /usr/local/nvidia /opt /usr/local/lib /usr/lib; do
      [[ -d "$root" ]] || continue
      dir=$(find -L "$root" -maxdepth 10 -name "$lib" -printf '%h\n' 2>/dev/null | head -1)
      [[ -n "$dir" ]] && break
    done
    if [[ -n "$dir" ]]; then
      echo "gpu-check: $lib found in $dir"
      export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$dir"
    else
      echo "gpu-check: $lib not found on this machine" >&2
    fi
  done
}

# ---- run ------------------------------------------------------------------------------------

# record STEP STATUS SECONDS DETAIL: one line of the report (tab-separated).
record() {
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"
  printf '%-8s %-9s %4ss  %s\n' "$1" "$2" "$3" "$4"
}

# A command's time limit: $1 seconds, but none ends later than 10 s before the budget does (at
# least 5 s), so a step begun late cannot carry the run past the device command's limit.
capped() {
  local left=$(( $(budget_left) - 10 ))
  if (( left < 5 )); then left=5; fi
  echo $(( $1 < left ? $1 : left ))
}

# Runs `$@` with a timeout (capped by the budget), output to $LOGS/$name.log; sets RC.
logged() {
  local name=$1 limit
  limit=$(capped "$2")
  shift 2
  set +e
  timeout "$limit" "$@" >"$LOGS/$name.log" 2>&1
  RC=$?
  set -e
}

# Seconds left of the budget; steps that would start with less than $1 left are skipped.
budget_left() { echo $(( BUDGET - ($(date +%s) - RUN_START) )); }

# "step loss" lines of a metrics.jsonl, losses as written (%.9g: a float's exact value).
losses() { python3 -c '
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if "loss" in m and m.get("loss") is not None:
        print(m["step"], repr(m["loss"]))
' "$1"; }
val_loss() { python3 -c '
import json, sys
v = None
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("val_loss") is not None:
        v = m["val_loss"]
print("" if v is None else v)
' "$1"; }
# First step where two loss lists part, or "" when equal over their common steps.
first_difference() { python3 -c '
import sys
a = dict(l.split() for l in open(sys.argv[1]))
b = dict(l.split() for l in open(sys.argv[2]))
common = sorted(set(a) & set(b), key=int)
for s in common:
    if a[s] != b[s]:
        print(f"step {s}: {a[s]} vs {b[s]}"); break
' "$1" "$2"; }

# loom train for the steps c-e: train NAME EXTRA_SETS...
train() {
  local name=$1
  shift
  local sets=(--set "logging.run_dir=$OUTDIR/runs/$name" --set logging.overwrite=true
              --set "lr_schedule.total_steps=$TRAIN_STEPS" --set "logging.eval_interval=$TRAIN_STEPS"
              --set "lr_schedule.warmup_steps=$(( TRAIN_STEPS / 3 < 20 ? TRAIN_STEPS / 3 : 20 ))")
  local s
  for s in "$@"; do sets+=(--set "$s"); done
  logged "$name" 300 "$LOOM" train --config configs/gpu_check.textproto "${sets[@]}"
}

step_0() {  # the bundle: loom starts and trains without Open MPI's daemon and without the machine's MPI
  local t0=$SECONDS
  logged 0-bundle 120 env -i HOME="$HOME" PATH=/nonexistent LD_LIBRARY_PATH="$LD_LIBRARY_PATH" \
    OMPI_MCA_mca_base_component_path="$OMPI_MCA_mca_base_component_path" \
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    "$LOOM" train --config configs/gpu_check.textproto --set runtime.backend=CPU \
    --set precision=FP32 --set lr_schedule.total_steps=2 --set lr_schedule.warmup_steps=1 \
    --set logging.eval_interval=0 \
    --set "logging.run_dir=$OUTDIR/runs/0-bundle" --set logging.overwrite=true
  if (( RC == 0 )); then
    record 0 PASS $((SECONDS - t0)) "loom trains 2 CPU steps from the bundle with a bare environment (no mpirun, no orted)"
  else
    record 0 FAIL $((SECONDS - t0)) "loom from the bundle exited $RC: $(tail -1 "$LOGS/0-bundle.log")"
  fi
}

# Runs the test binaries of tests.txt; $1 selects: "a" all but communicator_gpu_test, "b" it.
run_tests() {
  local which=$1 t0=$SECONDS name exe args ran=0 passed=0 skipped=0 failed=() tally
  while read -r name exe args; do
    [[ -z "$name" || "$name" == "#"* ]] && continue
    if [[ "$which" == b ]]; then [[ "$name" == communicator_gpu_test ]] || continue
    else [[ "$name" == communicator_gpu_test ]] && continue; fi
    ran=$((ran + 1))
    # shellcheck disable=SC2086
    logged "$which-$name" 240 "$WORK/bin/$exe" $args
    tally=$(grep -E '^\[  (PASSED|FAILED) *\] [0-9]+ tests?' "$LOGS/$which-$name.log" \
      | sed -E 's/^\[ *([A-Z]+) *\] ([0-9]+) tests?.*/\2 \1/' | tr '\n' ' ' || true)
    if (( RC == 0 )); then passed=$((passed + 1))
    elif (( RC == 77 && NO_GPU )); then skipped=$((skipped + 1))
    elif (( RC == 77 )); then failed+=("$name (ran nothing although a GPU answers)")
    elif (( RC == 124 )); then failed+=("$name (timed out)")
    else failed+=("$name (exit $RC; ${tally% })")
      grep -E '^\[  FAILED  \] .* \([0-9]+ ms\)$' "$LOGS/$which-$name.log" | head -10 \
        | sed "s/^/  $name: /" >>"$TMP/failures"
    fi
    echo "test $name: exit $RC (${tally% })" >>"$LOGS/$which-tests.txt"
  done < <(grep -v '^#' "$WORK/tests.txt")
  local dt=$((SECONDS - t0))
  if (( ran == 0 )); then record "$which" FAIL "$dt" "no test binary in the bundle"
  elif (( ${#failed[@]} )); then record "$which" FAIL "$dt" "${#failed[@]} of $ran failed: ${failed[*]}"
  elif (( skipped == ran )); then record "$which" SKIPPED "$dt" "$ran binaries started and skipped (no GPU answers)"
  else record "$which" PASS "$dt" "$passed of $ran binaries passed"; fi
}

step_a() { run_tests a; }
step_b() { run_tests b; }

# Without a GPU, steps c-g check that what they need is in the bundle: the job file passes
# `loom config check` for the CPU, the data is there.
offline_check() {
  local step=$1 config=$2 t0=$SECONDS
  shift 2
  local extra=() s
  for s in "$@"; do extra+=(--set "$s"); done
  logged "$step-config-check" 60 "$LOOM" config check --config "$config" --world-size 1 \
    --set runtime.backend=CPU --set precision=FP32 --set logging.run_dir= "${extra[@]}"
  if (( RC == 0 )); then
    record "$step" SKIPPED $((SECONDS - t0)) "no GPU answers; $config checks out on the CPU"
  else
    record "$step" FAIL $((SECONDS - t0)) "$config does not check out: $(tail -2 "$LOGS/$step-config-check.log" | tr '\n' ' ')"
  fi
}

step_c() {
  if (( NO_GPU && !DRY_RUN )); then offline_check c configs/gpu_check.textproto; return; fi
  local t0=$SECONDS
  train c-gpu-bf16 "runtime.backend=$BACKEND" "precision=$PRECISION"
  local rc_gpu=$RC
  train c-cpu-fp32 runtime.backend=CPU precision=FP32 "runtime.threads_per_rank=$CPU_THREADS"
  local rc_cpu=$RC
  if (( rc_gpu || rc_cpu )); then
    record c FAIL $((SECONDS - t0)) "loom train exited GPU $rc_gpu, CPU $rc_cpu (logs c-gpu-bf16.log, c-cpu-fp32.log)"
    return
  fi
  local g c verdict
  g=$(val_loss "$OUTDIR/runs/c-gpu-bf16/metrics.jsonl")
  c=$(val_loss "$OUTDIR/runs/c-cpu-fp32/metrics.jsonl")
  verdict=$(python3 -c "import sys; g,c=float(sys.argv[1]),float(sys.argv[2]); d=abs(g-c)/c; print(('PASS' if d<=0.02 else 'FAIL'), f'val loss GPU bf16 {g:.4f} vs CPU fp32 {c:.4f}: {100*d:.2f}% apart (limit 2%)')" "${g:-nan}" "${c:-nan}")
  record c "${verdict%% *}" $((SECONDS - t0)) "${verdict#* }"
  GPU_RUN_OK=1
}

step_d() {
  if (( NO_GPU && !DRY_RUN )); then offline_check d configs/gpu_check.textproto; return; fi
  local t0=$SECONDS
  (( ${GPU_RUN_OK:-0} )) || { record d FAIL 0 "no first bf16 run to compare with (step c failed)"; return; }
  train d-gpu-bf16-again "runtime.backend=$BACKEND" "precision=$PRECISION"
  if (( RC )); then record d FAIL $((SECONDS - t0)) "loom train exited $RC"; return; fi
  losses "$OUTDIR/runs/c-gpu-bf16/metrics.jsonl" >"$TMP/d1"
  losses "$OUTDIR/runs/d-gpu-bf16-again/metrics.jsonl" >"$TMP/d2"
  local diff n
  diff=$(first_difference "$TMP/d1" "$TMP/d2")
  n=$(wc -l <"$TMP/d1")
  if [[ -z "$diff" && "$n" -ge "$TRAIN_STEPS" ]]; then record d PASS $((SECONDS - t0)) "$n losses bitwise equal"
  elif [[ -z "$diff" ]]; then record d FAIL $((SECONDS - t0)) "only $n losses logged"
  else record d FAIL $((SECONDS - t0)) "the runs part at $diff"; fi
}

step_e() {
  if (( NO_GPU && !DRY_RUN )); then offline_check e configs/gpu_check.textproto; return; fi
  local t0=$SECONDS
  (( ${GPU_RUN_OK:-0} )) || { record e FAIL 0 "no uninterrupted bf16 run to compare with (step c failed)"; return; }
  local ck="$OUTDIR/ckpt"
  rm -rf "$ck"
  train e-gpu-resume "runtime.backend=$BACKEND" "precision=$PRECISION" "checkpoint.dir=$ck" \
    "checkpoint.interval=$((TRAIN_STEPS / 3))" "runtime.stop_at_step=$HALF"
  local rc1=$RC
  train e-gpu-resume "runtime.backend=$BACKEND" "precision=$PRECISION" "checkpoint.dir=$ck" \
    "checkpoint.interval=$((TRAIN_STEPS / 3))" logging.overwrite=false
  local rc2=$RC
  if (( rc1 || rc2 )); then record e FAIL $((SECONDS - t0)) "save run exited $rc1, resume exited $rc2"; return; fi
  losses "$OUTDIR/runs/c-gpu-bf16/metrics.jsonl" | awk -v h="$HALF" '$1 > h' >"$TMP/e1"
  losses "$OUTDIR/runs/e-gpu-resume/metrics.jsonl" | awk -v h="$HALF" '$1 > h' >"$TMP/e2"
  local diff n
  diff=$(first_difference "$TMP/e1" "$TMP/e2")
  n=$(wc -l <"$TMP/e2")
  if [[ -z "$diff" && "$n" -ge $((TRAIN_STEPS - HALF)) ]]; then
    record e PASS $((SECONDS - t0)) "saved at $HALF, resumed: steps $((HALF + 1))-$TRAIN_STEPS bitwise equal to the uninterrupted run"
  elif [[ -z "$diff" ]]; then record e FAIL $((SECONDS - t0)) "only $n losses after the resume"
  else record e FAIL $((SECONDS - t0)) "the resumed run parts at $diff"; fi
}

# loom train of the sft step's job (configs/sft_tiny.textproto from random weights on the
# bundle's data/sft): sft_train NAME EXTRA_SETS...
sft_train() {
  local name=$1
  shift
  local sets=(--set model.init_from= --set "data.train=data/sft/train_*.bin"
              --set "logging.run_dir=$OUTDIR/runs/$name" --set logging.overwrite=true
              --set logging.interval=1 --set "lr_schedule.total_steps=$SFT_STEPS"
              --set "lr_schedule.warmup_steps=$(( SFT_STEPS / 3 < 10 ? SFT_STEPS / 3 : 10 ))")
  local s
  for s in "$@"; do sets+=(--set "$s"); done
  logged "$name" 150 "$LOOM" train --config configs/sft_tiny.textproto "${sets[@]}"
}

# The CPU fp32 run of the sft job, which also saves the checkpoint `generate` reads.
sft_cpu_run() {
  rm -rf "$SFT_CKPT"
  sft_train sft-cpu-fp32 runtime.backend=CPU precision=FP32 "checkpoint.dir=$SFT_CKPT" \
    "checkpoint.interval=$SFT_STEPS" "runtime.threads_per_rank=$CPU_THREADS"
}

# Verdict on the sft runs' losses: CPU fp32 against GPU fp32 (every step) and GPU bf16.
sft_verdict() { python3 - "$@" <<'PYEOF'
import json, sys
def losses(path):
    out = {}
    for line in open(path):
        m = json.loads(line)
        if m.get("loss") is not None:
            out[m["step"]] = m["loss"]
    return out
cpu, g32, g16 = (losses(p) for p in sys.argv[1:4])
steps = int(sys.argv[4])
rel = lambda a, b: abs(a - b) / max(abs(b), 1e-12)
ok, notes = True, []
for name, run in (("CPU fp32", cpu), ("GPU fp32", g32), ("GPU bf16", g16)):
    if len(run) < steps:
        ok = False
        notes.append(f"{name} logged {len(run)} of {steps} losses")
if ok:
    worst = max(range(1, steps + 1), key=lambda s: rel(g32[s], cpu[s]))
    d1, dw = rel(g32[1], cpu[1]), rel(g32[worst], cpu[worst])
    ok32 = d1 <= 1e-5 and dw <= 1e-3
    notes.append(f"fp32 GPU vs CPU: step 1 {g32[1]:.6f} vs {cpu[1]:.6f} ({d1:.1e}, limit 1e-5), "
                 f"worst step {worst} {g32[worst]:.6f} vs {cpu[worst]:.6f} ({dw:.1e}, limit 1e-3)")
    last = range(max(1, steps - 9), steps + 1)
    m16 = sum(g16[s] for s in last) / len(last)
    mc = sum(cpu[s] for s in last) / len(last)
    b1, bl = rel(g16[1], cpu[1]), rel(m16, mc)
    ok16 = b1 <= 1e-2 and bl <= 0.1
    notes.append(f"bf16 GPU vs fp32 CPU: step 1 {g16[1]:.4f} vs {cpu[1]:.4f} ({100*b1:.2f}%, limit 1%), "
                 f"mean of the last {len(last)} {m16:.4f} vs {mc:.4f} ({100*bl:.1f}%, limit 10%)")
    ok = ok32 and ok16
print(("PASS" if ok else "FAIL"), "; ".join(notes))
PYEOF
}

step_sft() {
  local t0=$SECONDS
  if (( NO_GPU && !DRY_RUN )); then
    # The job file and the packed data: config check, then 2 CPU steps saving the checkpoint
    # the generate step's offline check reads.
    logged sft-config-check 60 "$LOOM" config check --config configs/sft_tiny.textproto \
      --world-size 1 --set runtime.backend=CPU --set precision=FP32 --set logging.run_dir= \
      --set model.init_from= --set "data.train=data/sft/train_*.bin"
    if (( RC )); then
      record sft FAIL $((SECONDS - t0)) "configs/sft_tiny.textproto does not check out: $(tail -2 "$LOGS/sft-config-check.log" | tr '\n' ' ')"
      return
    fi
    SFT_STEPS=2 sft_cpu_run
    if (( RC )); then
      record sft FAIL $((SECONDS - t0)) "the sft job does not train on the CPU from the bundle: $(tail -1 "$LOGS/sft-cpu-fp32.log")"
    else
      record sft SKIPPED $((SECONDS - t0)) "no GPU answers; configs/sft_tiny.textproto checks out and trains 2 CPU steps on data/sft"
    fi
    return
  fi
  sft_cpu_run
  local rc_cpu=$RC
  sft_train sft-gpu-fp32 "runtime.backend=$BACKEND" precision=FP32 checkpoint.dir=
  local rc_32=$RC
  sft_train sft-gpu-bf16 "runtime.backend=$BACKEND" "precision=$PRECISION" checkpoint.dir=
  local rc_16=$RC
  if (( rc_cpu || rc_32 || rc_16 )); then
    record sft FAIL $((SECONDS - t0)) "loom train exited CPU fp32 $rc_cpu, GPU fp32 $rc_32, GPU bf16 $rc_16 (logs sft-*.log)"
    return
  fi
  local verdict
  verdict=$(sft_verdict "$OUTDIR"/runs/sft-{cpu-fp32,gpu-fp32,gpu-bf16}/metrics.jsonl "$SFT_STEPS")
  record sft "${verdict%% *}" $((SECONDS - t0)) "$SFT_STEPS steps; ${verdict#* }"
}

# The prompts of the generate step (questions of data/demo/sft_qa.jsonl).
GEN_PROMPTS=("When was GPL-3 published?" "Who publishes Apache-2.0?")

# gen NAME BACKEND PROMPT_INDEX TOKENS: greedy text to $LOGS/NAME.txt, stderr to NAME.log.
gen() {
  set +e
  timeout "$(capped 60)" "$LOOM" generate --from "$SFT_CKPT" --template qa --prompt "${GEN_PROMPTS[$3]}" \
    --temperature 0 --max-new-tokens "$4" --no-stop --backend "$2" >"$LOGS/$1.txt" 2>"$LOGS/$1.log"
  RC=$?
  set -e
}

step_generate() {
  local t0=$SECONDS
  if [[ ! -e "$SFT_CKPT/latest" ]]; then
    record generate FAIL 0 "no checkpoint to generate from (the sft step's CPU run saves it)"
    return
  fi
  if (( NO_GPU && !DRY_RUN )); then
    gen generate-cpu-0 cpu 0 4
    if (( RC )); then
      record generate FAIL $((SECONDS - t0)) "loom generate --backend cpu exited $RC: $(tail -1 "$LOGS/generate-cpu-0.log")"
    else
      record generate SKIPPED $((SECONDS - t0)) "no GPU answers (--backend cuda needs one); the CPU half generates from the sft checkpoint"
    fi
    return
  fi
  local gen_backend=cuda i diffs=() rate=""
  if (( DRY_RUN )); then gen_backend=cpu; fi
  for i in "${!GEN_PROMPTS[@]}"; do
    gen "generate-cpu-$i" cpu "$i" "$GEN_TOKENS"
    local rc_cpu=$RC
    gen "generate-gpu-$i" "$gen_backend" "$i" "$GEN_TOKENS"
    local rc_gpu=$RC
    if (( rc_cpu || rc_gpu )); then
      record generate FAIL $((SECONDS - t0)) "prompt $i: loom generate exited CPU $rc_cpu, GPU $rc_gpu: $(tail -1 "$LOGS/generate-gpu-$i.log")"
      return
    fi
    if [[ -z "$rate" ]]; then
      rate=$(grep -oE '[0-9.]+ tokens/s' "$LOGS/generate-gpu-$i.log" | head -1 || true)
    fi
    # The byte tokenizer: one byte per token, but the end-of-text token (--no-stop goes on
    # past it) prints as "<|endoftext|>". The text follows the prompt, which is printed first.
    diffs+=("$(python3 -c '
import sys
eot = b"<|endoftext|>"
a, b = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
skip = len(sys.argv[4].encode())
n = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), None)
if n is None and len(a) != len(b): n = min(len(a), len(b))
if n is not None:
    tok = len(a[skip:n].replace(eot, b"\x00"))
    print(f"prompt {sys.argv[3]}: the texts part at new token {tok}: GPU {b[n:n+16]!r} vs CPU {a[n:n+16]!r}")
' "$LOGS/generate-cpu-$i.txt" "$LOGS/generate-gpu-$i.txt" "$i" "${GEN_PROMPTS[$i]}")")
  done
  local joined
  joined=$(printf '%s' "${diffs[@]}")
  if [[ -z "$joined" ]]; then
    record generate PASS $((SECONDS - t0)) "${#GEN_PROMPTS[@]} prompts x $GEN_TOKENS greedy tokens (KV cache, f32): GPU text equal to the CPU's${rate:+; GPU $rate}"
  else
    record generate FAIL $((SECONDS - t0)) "$(printf '%s ' "${diffs[@]}")(f32 on both; a flip at a near-tie of two logits is possible but unlikely: logs generate-*.txt)"
  fi
}

step_f() {
  if (( NO_GPU )); then
    # The GPT-2 jobs as step f runs them, on the demo data (bench step reads no data) and at
    # one sequence per micro-batch so the CPU check's memory verdict is about this machine.
    offline_check f configs/gpt2_124m.textproto data.seq_len=1024 parallel.micro_batch_size=1 \
      "data.train=data/demo/train_*.bin" "data.val=data/demo/val_*.bin"
    return
  fi
  local t0=$SECONDS model b out summary=() failed=0
  for model in gpt2_124m gpt2_350m; do
    out=""
    for b in 32 16 8 4 2 1; do
      (( $(budget_left) > 60 )) || break
      logged "f-$model-b$b" 240 "$LOOM" bench step --config "configs/$model.textproto" \
        --set precision=BF16 --set runtime.backend=CUDA --set data.seq_len=1024 \
        --set parallel.micro_batch_size=$b --set parallel.global_batch_size=$b --steps 5 --warmup 2
      if (( RC == 0 )); then out="$LOGS/f-$model-b$b.log"; break; fi
      # Too big: try half (the allocator's "out of memory", cuBLAS's ALLOC_FAILED).
      grep -qiE "out of memory|resource.?exhausted|alloc" "$LOGS/f-$model-b$b.log" || break
    done
    if [[ -n "$out" ]]; then
      cp "$out" "$LOGS/f-$model.log"
      # The planner's prediction for the same one-GPU step (H100 SXM figures, its default
      # efficiency; docs/planner.md), beside the measurement.
      local planned
      planned=$("$LOOM" plan --config "configs/$model.textproto" --set precision=BF16 \
        --set runtime.backend=CUDA --set data.seq_len=1024 --set parallel.micro_batch_size=$b \
        --set parallel.global_batch_size=$b --gpus 1 --gpu h100-sxm --max-cp 1 --top 0 \
        --max-micro-batch $b \
        --csv "$LOGS/f-$model.plan.csv" >/dev/null 2>&1 &&
        awk -F, -v b="$b" '$2==1 && $3==1 && $4==1 && $6==b && $7=="none" && $8==0 {
          printf "plan %.1f ms, %.0f MiB", $13 * 1e3, $10 / 1048576; exit }' \
          "$LOGS/f-$model.plan.csv" || echo "plan failed")
      summary+=("$model B=$b: $(grep -oE '[0-9.]+ ms/step, [0-9]+ tokens/s' "$out" | head -1), MFU $(grep -oE '= [0-9]+% of the device peak' "$out" | grep -oE '[0-9]+%'), $(grep -oE 'peak/estimate [0-9.]+' "$out"), $planned")
    else
      failed=1
      summary+=("$model: no micro-batch ran (last: $(tail -1 "$LOGS/f-$model-b$b.log"))")
    fi
  done
  record f "$( ((failed)) && echo FAIL || echo PASS)" $((SECONDS - t0)) "$(IFS=';'; echo "${summary[*]}")"
}

step_g() {
  if (( NO_GPU )); then
    record g SKIPPED 0 "no GPU answers (bench ops --device cuda needs one)"
    return
  fi
  local t0=$SECONDS
  logged g-bench-ops 240 "$LOOM" bench ops --device cuda --shapes "${BENCH_SHAPES:-all}"
  if (( RC == 0 )); then
    record g PASS $((SECONDS - t0)) "$(grep -E '^[0-9]+ rows:' "$LOGS/g-bench-ops.log" || echo ran)"
  else
    record g FAIL $((SECONDS - t0)) "exit $RC: $(tail -1 "$LOGS/g-bench-ops.log")"
  fi
}

write_report() {
  python3 - "$RESULTS" "$OUTDIR" "$1" <<'PYEOF'
import json, sys
results, outdir, header = sys.argv[1], sys.argv[2], sys.argv[3]
titles = {"0": "bundle starts without Open MPI", "a": "CUDA ops vs CPU (f32, bf16)",
          "b": "communicator_gpu_test at world size 1", "c": "train bf16 GPU vs fp32 CPU, 300 steps",
          "d": "two identical bf16 runs", "e": "checkpoint save and exact resume on the GPU",
          "f": "bench step GPT-2 124M / 350M bf16 T=1024", "g": "bench ops --device cuda",
          "sft": "SFT job (segments, loss masks): GPU fp32 / bf16 vs CPU fp32",
          "generate": "greedy generate, KV cache, GPU vs CPU (f32)"}
steps = []
for line in open(results):
    step, status, secs, detail = line.rstrip("\n").split("\t", 3)
    steps.append({"step": step, "title": titles.get(step, step), "status": status,
                  "seconds": int(secs), "detail": detail})
report = {"header": header.splitlines(), "steps": steps,
          "passed": sum(s["status"] == "PASS" for s in steps),
          "failed": sum(s["status"] == "FAIL" for s in steps),
          "skipped": sum(s["status"].startswith("SKIPPED") for s in steps)}
json.dump(report, open(f"{outdir}/report.json", "w"), indent=1)
with open(f"{outdir}/report.md", "w") as f:
    f.write("# gpu-check report\n\n" + "\n".join(f"    {h}" for h in report["header"]) + "\n\n")
    f.write("| step | what | status | s | detail |\n|---|---|---|---|---|\n")
    for s in steps:
        f.write(f"| {s['step']} | {s['title']} | {s['status']} | {s['seconds']} | "
                f"{s['detail'].replace('|', '/')} |\n")
    f.write(f"\n{report['passed']} passed, {report['failed']} failed, {report['skipped']} skipped. "
            "Logs: logs/ beside this file.\n")
PYEOF
}

run() {
  [[ -f "$BUNDLE_DIR/bundle.tar.gz" ]] || die "no bundle at $BUNDLE_DIR (run 'scripts/gpu-check.sh build' first)"
  OUTDIR="${OUT:-$ROOT/.device/logs}"
  LOGS="$OUTDIR/logs"
  mkdir -p "$LOGS"
  RESULTS="$OUTDIR/steps.tsv"
  : >"$RESULTS"
  : >"$TMP/failures"
  RUN_START=$(date +%s)
  BUDGET="${BUDGET_S:-540}"
  WORK="$TMP/bundle"
  mkdir -p "$WORK"
  tar -C "$WORK" -xzf "$BUNDLE_DIR/bundle.tar.gz"
  LOOM="$WORK/bin/loom"
  export LD_LIBRARY_PATH="$WORK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  find_cuda_libs "$WORK"/bin/*
  # The machine's libstdc++ / libgcc_s when new enough, else the packed ones.
  if ldd "$WORK"/bin/* 2>&1 | grep -q "version .* not found"; then
    echo "gpu-check: this machine's C++ runtime is older than the build's; using the packed one"
    export LD_LIBRARY_PATH="$WORK/lib-fallback:$LD_LIBRARY_PATH"
  fi
  # Open MPI from the bundle: its components, and no daemon (loom is an isolated singleton
  # when no launcher started it; parallel/world.cc).
  export OMPI_MCA_mca_base_component_path="$WORK/lib/openmpi"
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  # Every library must come from the bundle, except the C runtime and CUDA's own.
  local from_machine name_
  from_machine=$(ldd "$WORK"/bin/* | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u \
    | grep -v "^$WORK/" | xargs -r -n1 basename | sort -u | tr '\n' ' ')
  echo "libraries from this machine: $from_machine"
  for name_ in $from_machine; do
    [[ "$name_" =~ $SYSTEM_LIBS || "$name_" =~ $CUDA_LIBS || "$name_" =~ $FALLBACK_LIBS ]] \
      || die "$name_ resolves outside the bundle: the bundle is incomplete"
  done
  export LOOM_SOURCE_DIR="$ROOT"  # tests read fixtures from the working tree
  cd "$WORK"                      # the job files name data/demo relative to here
  local header version
  version=$("$LOOM" version 2>&1) || die "the bundled loom does not start: $version"
  header="gpu-check on $(hostname): $(cat "$WORK/VERSION")
$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'nvidia-smi: not available')
$(grep -E '^(loom |cuda:|mpi:)' <<<"$version")"
  echo "$header"
  NO_GPU=0
  grep -q "devices visible: [1-9]" <<<"$version" || NO_GPU=1
  # GPU_CHECK_DRY_RUN=1 (for testing this script without a GPU): steps c-e run their logic on
  # the CPU in fp32 (the "GPU" run is a CPU run; c then compares two CPU runs), over
  # TRAIN_STEPS steps (default 300; the dry run 30; TRAIN_STEPS_OVERRIDE sets it, and the
  # warmup is min(20, steps / 3)).
  DRY_RUN=0
  BACKEND=CUDA PRECISION=BF16 TRAIN_STEPS=300
  if [[ "${GPU_CHECK_DRY_RUN:-0}" == 1 ]]; then
    DRY_RUN=1 BACKEND=CPU PRECISION=FP32 TRAIN_STEPS=30
  fi
  TRAIN_STEPS="${TRAIN_STEPS_OVERRIDE:-$TRAIN_STEPS}"
  # Threads of the CPU reference runs (c, sft): at most 8, the 1.8M-parameter model's ops are
  # too small for more. Without a GPU (the dry run, on a shared test machine) one: OpenMP
  # threads spinning on a loaded machine made each step several times slower.
  CPU_THREADS=$(( $(nproc) < 8 ? $(nproc) : 8 ))
  if (( NO_GPU )); then CPU_THREADS=1; fi
  HALF=$((TRAIN_STEPS / 2))
  # The sft and generate steps: steps of the sft job, tokens generated per prompt (the prompt
  # and 90 tokens stay within the model's 128 positions), the CPU run's checkpoint.
  SFT_STEPS=60 GEN_TOKENS=90
  if (( DRY_RUN )); then SFT_STEPS=4 GEN_TOKENS=6; fi
  SFT_STEPS="${SFT_STEPS_OVERRIDE:-$SFT_STEPS}"
  SFT_CKPT="$OUTDIR/sft-ckpt"
  local s
  for s in $(cat "$WORK/steps.txt"); do
    if (( $(budget_left) < 30 )); then
      record "$s" "SKIPPED" 0 "(budget: ${BUDGET}s spent)"
      continue
    fi
    "step_$s"
    write_report "$header"  # after every step: a run cut short still leaves its report
  done
  write_report "$header"
  echo
  echo "===== gpu-check summary ====="
  echo "$header"
  column -t -s $'\t' "$RESULTS" 2>/dev/null | cut -c1-200 || cat "$RESULTS"
  grep '^# skipped' "$WORK/tests.txt" | sed 's/^# /not run: /' || true
  if [[ -s "$TMP/failures" ]]; then
    echo "failed tests:"
    head -20 "$TMP/failures"
  fi
  echo "report: $OUTDIR/report.md, $OUTDIR/report.json; logs: $LOGS"
  if grep -q $'\tFAIL\t' "$RESULTS"; then return 1; fi
  if (( NO_GPU )); then
    echo "NO GPU answers on this machine: the binaries started and skipped; steps c-g checked their inputs only"
    return 3
  fi
  return 0
}

case "${1:-}" in
  build) build ;;
  run) run ;;
  *) echo "usage: scripts/gpu-check.sh build|run" >&2; exit 2 ;;
esac
