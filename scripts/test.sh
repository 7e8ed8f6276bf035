#!/usr/bin/env bash
# The one command that passes the tests on a fresh machine: setup, configure, build (Release,
# parallel), then every test with ctest (multi-rank tests run under mpirun; GPU tests skip
# with their reason when no GPU answers, reported by ctest as Skipped; with nvcc, the GPU check's
# build and run halves too, see tests/gpu_check_test.sh); then the sanitizer stages
# (scripts/sanitize.sh all: the CPU suite under ASan + UBSan with the fuzz targets run by
# libFuzzer, the threaded tests under TSan; docs/testing.md). LOOM_SANITIZERS=0 skips those for
# a quick local run; CI runs them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
start=$(date +%s)
scripts/build.sh
echo "test.sh: build took $(( $(date +%s) - start ))s"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
(cd "${BUILD_DIR:-build}" && ctest --output-on-failure -j "${TEST_JOBS:-2}" "$@")
# With nvcc the build above is a CUDA build: check that scripts/gpu-check.sh builds and packs a
# working bundle from it (reusing its objects, so nothing compiles twice) and that the bundle
# runs here, every binary reporting itself skipped, so a rare GPU session works the first time.
if [[ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" && "${LOOM_CUDA:-AUTO}" != "OFF" ]]; then
  tests/gpu_check_test.sh "${BUILD_DIR:-build}"
fi
if [[ "${LOOM_SANITIZERS:-1}" != "0" ]]; then
  sanitize_start=$(date +%s)
  scripts/sanitize.sh all
  echo "test.sh: sanitizer stages took $(( $(date +%s) - sanitize_start ))s"
fi
echo "test.sh: total $(( $(date +%s) - start ))s"
