#!/usr/bin/env bash
# A sanitizer build (CPU only) and a run of tests under it:
#   scripts/sanitize.sh [address,undefined | thread] [ctest -R regex]
# Builds into build-asan (or build-tsan) with LOOM_SANITIZE and runs the tests whose names match
# the regex (default: the checkpoint, metrics and fuzz tests of issue 19, about 3 minutes of
# building on 2 cores from a warm ccache and under a minute of running). Leaks are not checked
# (MPI and OpenBLAS keep their allocations until exit).
set -euo pipefail
cd "$(dirname "$0")/.."
sanitize=${1:-address,undefined}
regex=${2:-"^(checkpoint_faults_test|checkpoint_manifest_test|manifest_fuzz|metrics_test)$"}
dir=build-asan
[[ $sanitize == thread ]] && dir=build-tsan
args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOOM_CUDA=OFF -DLOOM_SANITIZE="$sanitize")
command -v ccache >/dev/null && args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$dir" "${args[@]}" >/dev/null
targets=()
for t in $(cd "$dir" && ctest -N -R "$regex" | sed -n 's/^ *Test *#[0-9]*: //p'); do
  case $t in
    manifest_fuzz) targets+=(manifest_fuzz) ;;
    *_cli_test | checkpoint_refusals_test | stop_mpirun_test) targets+=(loom) ;;
    *) targets+=("$t") ;;
  esac
done
cmake --build "$dir" -j "${JOBS:-$(nproc)}" --target "${targets[@]}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
(cd "$dir" && ctest --output-on-failure -R "$regex")
