#!/usr/bin/env bash
# The one command that passes the tests on a fresh machine: setup, configure, build (Release,
# parallel), then ctest (multi-rank tests run under mpirun; GPU tests skip with their reason
# when no GPU answers, reported by ctest as Skipped; with nvcc, the GPU check's build and run
# halves too, see tests/gpu_check_test.sh); then the sanitizer stages (scripts/sanitize.sh all:
# the CPU suite under ASan + UBSan with the fuzz targets run by libFuzzer, the threaded tests
# under TSan; docs/testing.md). Every test runs in one stage: the ordinary ctest runs those the
# ASan stage does not. LOOM_SANITIZERS=0 skips the sanitizer stages for a quick local run (the
# ordinary ctest then runs every test); CI runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
start=$(date +%s)
scripts/build.sh
echo "test.sh: build took $(( $(date +%s) - start ))s"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Each CPU test runs once: when the sanitizer stages follow, the ordinary build's ctest leaves
# out the tests the ASan + UBSan stage runs (scripts/sanitize.sh covered: its own build's list,
# so a test only the CUDA build registers, a GPU test, a `release_only` one and the fuzz
# replay run here, whatever their name). LOOM_SANITIZERS=0: every test runs here.
skip=()
if [[ "${LOOM_SANITIZERS:-1}" != "0" ]]; then
  covered=$(scripts/sanitize.sh covered)
  [[ -n "$covered" ]] || { echo "test.sh: scripts/sanitize.sh covered listed no test" >&2; exit 1; }
  skip=(-E "^($(paste -sd'|' <<<"$covered"))\$")
  echo "test.sh: $(wc -l <<<"$covered") CPU tests run in the ASan + UBSan stage, not here"
fi
test_start=$(date +%s)
(cd "${BUILD_DIR:-build}" && ctest --output-on-failure -j "${TEST_JOBS:-2}" "${skip[@]}" "$@")
echo "test.sh: ordinary tests took $(( $(date +%s) - test_start ))s"
# With nvcc the build above is a CUDA build: check that scripts/gpu-check.sh builds and packs a
# working bundle from it (reusing its objects, so nothing compiles twice) and that the bundle
# runs here, every binary reporting itself skipped, so a rare GPU session works the first time.
if [[ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" && "${LOOM_CUDA:-AUTO}" != "OFF" ]]; then
  gpu_check_start=$(date +%s)
  tests/gpu_check_test.sh "${BUILD_DIR:-build}"
  echo "test.sh: gpu_check_test took $(( $(date +%s) - gpu_check_start ))s"
fi
if [[ "${LOOM_SANITIZERS:-1}" != "0" ]]; then
  sanitize_start=$(date +%s)
  scripts/sanitize.sh all
  echo "test.sh: sanitizer stages took $(( $(date +%s) - sanitize_start ))s"
fi
echo "test.sh: total $(( $(date +%s) - start ))s"
