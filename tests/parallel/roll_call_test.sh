#!/usr/bin/env bash
# roll_call_main under mpirun (3 ranks): rank 0 must print ROLLCALL_OK and the job must end
# through its MPI_Abort within 20 s (the stalled rank sleeps 60 s).
set -u
bin=$1
start=$(date +%s)
out=$(timeout 60 mpirun -np 3 --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 "$bin" 2>&1)
rc=$?
elapsed=$(( $(date +%s) - start ))
echo "$out"
echo "mpirun exit $rc after ${elapsed}s"
if [[ $rc -eq 124 ]]; then echo "FAIL: the job hung"; exit 1; fi
if ! grep -q ROLLCALL_OK <<<"$out"; then echo "FAIL: the roll call did not find rank 1 waiting and rank 2 silent"; exit 1; fi
if (( elapsed > 20 )); then echo "FAIL: the job took ${elapsed}s"; exit 1; fi
echo PASS
