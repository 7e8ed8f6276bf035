#!/usr/bin/env bash
# A stalled rank: the others must report the timed-out all-reduce (DEADLINE_OK from each) and
# the job must end through MPI_Abort well before the stalled rank's 120 s sleep is over.
set -u
bin=$1
ranks=${2:-3}
start=$(date +%s)
out=$(timeout 60 mpirun -np "$ranks" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 "$bin" 2>&1)
rc=$?
elapsed=$(( $(date +%s) - start ))
echo "$out"
echo "mpirun exit $rc after ${elapsed}s"
if [[ $rc -eq 124 ]]; then echo "FAIL: the job hung"; exit 1; fi
n=$(grep -c DEADLINE_OK <<<"$out")
if [[ $n -ne $(( ranks - 1 )) ]]; then echo "FAIL: $n of $(( ranks - 1 )) waiting ranks saw the deadline"; exit 1; fi
if [[ $rc -eq 0 ]]; then echo "FAIL: an aborted job exited 0"; exit 1; fi
echo PASS
