#!/usr/bin/env bash
# GPU check in two halves, for a GPU machine that has CUDA 13 (toolkit, libraries, driver) but
# no MPI, protobuf, Abseil or OpenBLAS and no package access.
#
#   scripts/gpu-check.sh build   (here) configures build-gpu/ for sm_90, builds `loom` and every
#                                gpu-labelled test binary, and packs them with the shared
#                                libraries the GPU machine lacks into .device/bundle/ (git-ignored)
#                                as one compressed archive plus a manifest. CUDA's own libraries
#                                (cudart, cuBLAS/cuBLASLt, NCCL, the driver) are never packed:
#                                the GPU machine has its own. Prints the bundle's size and the
#                                exact device `run` call to make.
#   scripts/gpu-check.sh run     (there, or here to test the packing) unpacks the bundle into a
#                                temporary folder, finds CUDA's libraries on the machine, runs
#                                every gpu test binary and `loom bench ops --device cuda`, and
#                                prints one summary. Logs go to $OUT when it is set (the device
#                                tool brings $OUT back), else to .device/logs/. Exit status: 0
#                                every test binary passed and the benchmark ran; 1 something
#                                failed; 3 no GPU answered (tests skipped, no benchmark).
#
# Environment: BUILD_DIR (default build-gpu; scripts/test.sh passes its own CUDA build dir so
# nothing is compiled twice), LOOM_CUDA_ARCHS (default 90), JOBS (default 2), BENCH_SHAPES
# (default all), STEP_TIMEOUT seconds per binary (default 240), GPU_CHECK_BUNDLE (default
# .device/bundle; tests/gpu_check_test.sh packs into a temporary one).
# A gpu test binary that exits 77 ran nothing (tests/gpu_test_main.cc: no CUDA device answers):
# `run` reports it SKIPPED without a GPU and FAIL where a GPU answers.
# Multi-rank GPU tests need mpirun, which the GPU machine lacks: `build` lists them as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUNDLE_DIR="${GPU_CHECK_BUNDLE:-$ROOT/.device/bundle}"
BUILD_DIR="${BUILD_DIR:-build-gpu}"
MAX_BUNDLE_MIB=60

# Libraries never packed: the C runtime (the GPU machine has its own, newer one), and CUDA's
# libraries and driver (large, and they must match the machine's driver).
SYSTEM_LIBS='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libresolv|libutil)\.so'
CUDA_LIBS='^(libcuda|libcudart|libcublas|libcublasLt|libnccl|libnvidia-[a-z-]+|libnvrtc|libnvJitLink|libcusparse|libcufft|libcurand|libcusolver|libcudnn[a-z_]*)\.so'
# Packed apart and used only when the GPU machine's own copies are too old for the binaries.
FALLBACK_LIBS='^(libstdc\+\+|libgcc_s)\.so'

die() { echo "gpu-check: $*" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# Prints one line per gpu-labelled test of $BUILD_DIR: "run NAME BINARY [ARGS...]" or
# "skip NAME (why)".
gpu_test_plan() {
  (cd "$BUILD_DIR" && ctest -L gpu --show-only=json-v1 2>/dev/null) | python3 -c '
import json, os, sys
for t in json.load(sys.stdin).get("tests", []):
    cmd = t.get("command") or [t["name"]]  # not built yet: the target is named like the test
    exe = os.path.basename(cmd[0])
    if exe.startswith(("mpiexec", "mpirun")):
        print("skip", t["name"], "(needs mpirun, which the GPU machine lacks)")
    elif exe == "loom":
        print("skip", t["name"], "(the full loom bench ops --device cuda runs instead)")
    else:
        print("run", t["name"], " ".join([exe] + cmd[1:]))
'
}

build() {
  local nvcc="${CUDA_HOME:-/usr/local/cuda}/bin/nvcc"
  [[ -x "$nvcc" ]] || die "no nvcc at $nvcc (set CUDA_HOME)"
  echo "== configure $BUILD_DIR (CUDA archs ${LOOM_CUDA_ARCHS:-90})"
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="${BUILD_TYPE:-Release}" -DLOOM_CUDA=ON \
    -DLOOM_CUDA_ARCHS="${LOOM_CUDA_ARCHS:-90}" -DCMAKE_CUDA_COMPILER="$nvcc" >/dev/null

  # Which binaries the gpu-labelled tests run, from ctest's own description of them. ctest
  # resolves a test's command only once its binary exists: `loom` is built first, so the tests
  # that run `loom` are recognised as such; a test whose binary is not built yet shows its own
  # name, which loom_add_test makes the name of its target. Only names that are targets are
  # built; anything else is an error naming the test.
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
  local stage="$TMP/stage"
  mkdir -p "$stage/bin" "$stage/lib" "$stage/lib-fallback"
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

  # Every shared library the binaries load, resolved here, minus the ones the GPU machine has.
  local lib name packed=() left=()
  while read -r lib; do
    name=$(basename "$lib")
    if [[ "$name" =~ $SYSTEM_LIBS || "$name" =~ $CUDA_LIBS ]]; then
      left+=("$name")
    elif [[ "$name" =~ $FALLBACK_LIBS ]]; then
      cp -L "$lib" "$stage/lib-fallback/"
    else
      cp -L "$lib" "$stage/lib/"
      packed+=("$name")
    fi
  done < <(ldd "$stage"/bin/* | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u)
  if ldd "$stage"/bin/* | grep -q "not found"; then
    ldd "$stage"/bin/* | grep "not found" >&2
    die "some libraries do not resolve here either"
  fi
  echo "packed: ${packed[*]}"
  echo "left to the GPU machine: ${left[*]}"
  echo "loom $(git rev-parse --short=12 HEAD) built $(date -u +%Y-%m-%dT%H:%MZ) for sm_${LOOM_CUDA_ARCHS:-90}" \
    >"$stage/VERSION"

  rm -rf "$BUNDLE_DIR"
  mkdir -p "$BUNDLE_DIR"
  tar -C "$stage" -czf "$BUNDLE_DIR/bundle.tar.gz" .
  cp "$stage/tests.txt" "$stage/VERSION" "$BUNDLE_DIR/"
  local bytes mib
  bytes=$(du -sb "$BUNDLE_DIR" | cut -f1)
  mib=$(( (bytes + 1048575) / 1048576 ))
  echo "bundle: $BUNDLE_DIR, $bytes bytes (~${mib} MiB; unpacked $(du -sh "$stage" | cut -f1))"
  (( mib < MAX_BUNDLE_MIB )) || die "bundle is ${mib} MiB, over the ${MAX_BUNDLE_MIB} MiB limit"
  cat <<EOF

Device call (from the repo root; the working tree travels, the bundle is carried):
  run(command="scripts/gpu-check.sh run", carry=[".device/bundle"], timeout_s=540)
Then read the summary at the end of output_tail; full logs come back as files under \$OUT.
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

run() {
  [[ -f "$BUNDLE_DIR/bundle.tar.gz" ]] || die "no bundle at $BUNDLE_DIR (run 'scripts/gpu-check.sh build' first)"
  local logs="${OUT:-$ROOT/.device/logs}"
  mkdir -p "$logs"
  local work="$TMP/bundle"
  mkdir -p "$work"
  tar -C "$work" -xzf "$BUNDLE_DIR/bundle.tar.gz"
  export LD_LIBRARY_PATH="$work/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  find_cuda_libs "$work"/bin/*
  # The machine's libstdc++ / libgcc_s when new enough, else the packed ones.
  if ldd "$work"/bin/* 2>&1 | grep -q "version .* not found"; then
    echo "gpu-check: this machine's C++ runtime is older than the build's; using the packed one"
    export LD_LIBRARY_PATH="$work/lib-fallback:$LD_LIBRARY_PATH"
  fi
  # Every library must come from the bundle, except the C runtime and CUDA's own.
  local from_machine
  from_machine=$(ldd "$work"/bin/* | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u \
    | grep -v "^$work/" | xargs -r -n1 basename | sort -u | tr '\n' ' ')
  echo "libraries from this machine: $from_machine"
  local name_
  for name_ in $from_machine; do
    [[ "$name_" =~ $SYSTEM_LIBS || "$name_" =~ $CUDA_LIBS || "$name_" =~ $FALLBACK_LIBS ]] \
      || die "$name_ resolves outside the bundle: the bundle is incomplete"
  done
  export LOOM_SOURCE_DIR="$ROOT"  # tests read fixtures from the working tree
  local step_timeout="${STEP_TIMEOUT:-240}"
  local summary="$logs/summary.txt" tests_log="$logs/gpu-tests.log" bench_log="$logs/bench-ops-cuda.log"
  : >"$tests_log"
  {
    echo "gpu-check on $(hostname): $(cat "$work/VERSION")"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null \
      || echo "nvidia-smi: not available"
  } | tee "$summary"
  # Loading `loom` proves the bundle's libraries resolve; it also says whether a GPU answers.
  local version
  version=$("$work/bin/loom" version 2>&1) || die "the bundled loom does not start: $version"
  echo "$version" | tee -a "$summary"
  local no_gpu=0
  grep -q "devices visible: [1-9]" <<<"$version" || no_gpu=1
  local failed=0 name exe args rc start
  while read -r name exe args; do
    [[ -z "$name" || "$name" == "#" ]] && continue
    start=$(date +%s)
    set +e
    # shellcheck disable=SC2086
    timeout "$step_timeout" "$work/bin/$exe" $args >"$TMP/$name.log" 2>&1
    rc=$?
    set -e
    cat "$TMP/$name.log" >>"$tests_log"
    local verdict="PASS"
    if (( rc == 124 )); then verdict="FAIL (timed out after ${step_timeout}s)"; failed=1
    elif (( rc == 77 && no_gpu )); then verdict="SKIPPED (no GPU answers)"
    elif (( rc == 77 )); then verdict="FAIL (ran nothing although a GPU answers)"; failed=1
    elif (( rc != 0 )); then verdict="FAIL (exit $rc)"; failed=1; fi
    local tally
    # (A binary that skipped as a whole printed no gtest tally: grep finds nothing.)
    tally=$(grep -E '^\[  (PASSED|FAILED|SKIPPED) *\] [0-9]+ tests?' "$TMP/$name.log" \
      | sed -E 's/^\[ *([A-Z]+) *\] ([0-9]+) tests?.*/\2 \1/' | tr '\n' ' ' || true)
    if (( rc == 77 )); then tally=$(grep -m1 '^SKIPPED: ' "$TMP/$name.log" || true); fi
    grep -E '^\[  FAILED  \] .* \([0-9]+ ms\)$' "$TMP/$name.log" | sed 's/^/  /' \
      >>"$TMP/failures" || true
    echo "test $name: $verdict in $(( $(date +%s) - start ))s (${tally% })" | tee -a "$summary"
  done < <(grep -v '^#' "$work/tests.txt")
  grep '^# skipped' "$work/tests.txt" | sed 's/^# //' | tee -a "$summary" || true
  if [[ -s "$TMP/failures" ]]; then
    echo "failed tests:" | tee -a "$summary"
    head -40 "$TMP/failures" | tee -a "$summary"
  fi

  if (( no_gpu )); then
    echo "NO GPU answers on this machine: the gpu tests skipped and bench ops did not run" \
      | tee -a "$summary"
    echo
    echo "===== gpu-check summary ====="
    cat "$summary"
    return $(( failed ? 1 : 3 ))
  fi
  start=$(date +%s)
  set +e
  timeout "$step_timeout" "$work/bin/loom" bench ops --device cuda --shapes "${BENCH_SHAPES:-all}" \
    >"$bench_log" 2>&1
  rc=$?
  set -e
  cat "$bench_log"
  if (( rc != 0 )); then
    echo "bench ops --device cuda: FAIL (exit $rc)" | tee -a "$summary"
    failed=1
  else
    echo "bench ops --device cuda: ran in $(( $(date +%s) - start ))s; $(grep -E '^[0-9]+ rows:' "$bench_log")" \
      | tee -a "$summary"
  fi
  echo
  echo "===== gpu-check summary ====="
  cat "$summary"
  echo "logs: $logs"
  return $failed
}

case "${1:-}" in
  build) build ;;
  run) run ;;
  *) echo "usage: scripts/gpu-check.sh build|run" >&2; exit 2 ;;
esac
