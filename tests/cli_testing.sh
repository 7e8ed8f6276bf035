# Shared by the shell tests that drive `loom` as a process (sourced, not run):
#   fail MSG          print FAIL (and the tail of $log when set) and exit 1
#   lines FILE        lines in FILE, 0 when it does not exist
#   now / secs A B    wall-clock stamps and the seconds between two of them
#   expect_stall_reported PID   after a `LOOM_FAULT=stall*` rank 1 at step 3 of a 3-rank dp job
#                     writing to $log: the job ends within 15 s of the stall, not 0, and its
#                     watchdog names the all-reduce, the dp group, the step, the silent rank and
#                     the other waiting rank (the same report on the CPU and on a device).
# Tests set OMP/OpenBLAS to one thread and allow mpirun as root here.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
fail() {
  echo "FAIL${case_name:+ ($case_name)}: $*"
  [[ -n ${log:-} && -f $log ]] && { echo "---- $log"; tail -30 "$log"; }
  exit 1
}
lines() { if [[ -f $1 ]]; then wc -l < "$1"; else echo 0; fi; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

expect_stall_reported() {
  local pid=$1 stalled=
  for _ in $(seq 900); do
    grep -q "LOOM_FAULT: rank 1 stalls at step 3" "$log" && { stalled=$(now); break; }
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  wait "$pid"
  rc=$?
  ended=$(now)
  [[ -n $stalled ]] || fail "rank 1 never stalled"
  (( rc == 124 )) && fail "the job hung (still running after 90 s)"
  (( rc != 0 )) || fail "a job with a stalled rank exited 0"
  took=$(secs "$stalled" "$ended")
  awk -v t="$took" 'BEGIN { exit !(t <= 15) }' || fail "the job ended ${took} s after the stall (limit 5 + 10 s)"
  grep -Eq "rank [02]: all_reduce.* on dp \[0,1,2\] did not complete within 5s at step 3" "$log" \
    || fail "no message naming the collective, the group and the step"
  grep -q "did not arrive (no answer: stalled in compute, crashed or hung outside communication): rank 1$" "$log" \
    || fail "the stalled rank is not named"
  grep -Eq "^  rank [02]: step 3: waiting in all_reduce" "$log" \
    || fail "the roll call does not show the other waiting rank"
}
