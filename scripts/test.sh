#!/usr/bin/env bash
# The one command that passes the tests on a fresh machine: setup, configure, build (Release,
# parallel), then every test with ctest (multi-rank tests run under mpirun; GPU tests skip
# with their reason when no GPU answers).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
start=$(date +%s)
scripts/build.sh
echo "test.sh: build took $(( $(date +%s) - start ))s"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j "${TEST_JOBS:-2}" "$@"
echo "test.sh: total $(( $(date +%s) - start ))s"
