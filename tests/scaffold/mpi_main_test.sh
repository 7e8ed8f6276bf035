#!/usr/bin/env bash
# The multi-rank main (tests/mpi_test_main.cc) on a fixture binary at 2 ranks: a pass exits 0
# with one report (rank 0's); a failure planted on rank 1 only fails the run, and the failure is
# printed with "[rank 1]"; a hang past LOOM_TEST_DEADLINE_S ends the job naming the test.
#   mpi_main_test.sh MPIEXEC FIXTURE
set -uo pipefail
mpiexec=$1 fixture=$2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
fail() { echo "FAIL: $*"; exit 1; }
run() { "$mpiexec" -np 2 --oversubscribe --bind-to none "$fixture" 2>&1; }

out=$(MPI_MAIN_FIXTURE= run); rc=$?
(( rc == 0 )) || fail "a passing run exited $rc: $out"
(( $(grep -c "PASSED" <<<"$out") == 1 )) || fail "expected rank 0's report only: $out"

out=$(MPI_MAIN_FIXTURE=fail_rank1 run); rc=$?
(( rc != 0 )) || fail "a failure on rank 1 only passed: $out"
grep -q "^\[rank 1\] .*mpi_main_fixture.cc:[0-9]*: Failure" <<<"$out" || fail "rank 1's failure is not printed: $out"
grep -q "^\[rank 1\]   planted failure on rank 1" <<<"$out" || fail "rank 1's message is not printed: $out"
grep -q "another rank failed" <<<"$out" || fail "rank 0 does not say another rank failed: $out"

start=$(date +%s)
out=$(MPI_MAIN_FIXTURE=hang LOOM_TEST_DEADLINE_S=3 run); rc=$?
took=$(( $(date +%s) - start ))
(( rc != 0 )) || fail "a hang past the deadline passed: $out"
(( took < 40 )) || fail "the deadline of 3 s ended the hang only after ${took} s"
grep -q "DEADLINE: .* in MpiMainFixture.HangsWhenAsked" <<<"$out" || fail "the deadline does not name the test: $out"
echo "mpi_main_test: ok (hang ended after ${took} s, exit $rc)"
