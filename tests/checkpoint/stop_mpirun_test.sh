#!/usr/bin/env bash
# A clean stop under mpirun and under a Slurm batch script, with a save slower than Open MPI's
# 1 s between SIGTERM and SIGKILL (checkpoint.async with LOOM_CKPT_TEST_ASYNC_DELAY_MS=3000
# holds the save at the stop for 3 s):
#   LOOM SOURCE_DIR WORK_DIR MPIEXEC
# - SIGUSR1 to mpirun: forwarded to both ranks, which stop at one step, save it (latest names it,
#   verify accepts it, no .tmp is left) and exit 0, as does mpirun;
# - scripts/train.sbatch run by bash as Slurm runs it, SIGUSR1 to the script (what
#   `#SBATCH --signal=B:USR1@N` sends): the same, exit 0;
# - a SIGTERM to a rank prints the advice (SIGUSR1 to mpirun, the batch script);
# - a slow save is not a stall: with runtime.collective_timeout_s=1, rank 0's writes held back
#   2.5 s (LOOM_CKPT_TEST_WRITE_DELAY_MS=0:2500) at every save, the job saves and ends, exit 0
#   (the ranks exchange a heartbeat while a save is written instead of waiting in one
#   collective).
set -uo pipefail
loom=$1 src=$2 work=$3 mpiexec=$4
source "$src/tests/cli_testing.sh"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 LOOM_CKPT_TEST_ASYNC_DELAY_MS=3000
source "$src/tests/checkpoint/checkpoint_cli_testing.sh"
mpi_args=(-np 2 --oversubscribe --bind-to none -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS
          -x LOOM_CKPT_TEST_ASYNC_DELAY_MS)
# wait_steps NAME PID: until NAME's metrics hold 3 steps.
wait_steps() {
  for _ in $(seq 600); do
    (( $(lines "$work/$1.run/metrics.jsonl") >= 3 )) && return
    kill -0 "$2" 2>/dev/null || fail "$1 ended early: $(tail -5 "$work/$1.log")"
    sleep 0.1
  done
  fail "$1: no steps"
}
# stopped NAME RC: exit 0, one stop line, latest names that step, it verifies, no .tmp.
stopped() {
  (( $2 == 0 )) || fail "$1: exit $2: $(tail -8 "$work/$1.log")"
  local n
  n=$(grep -o "stopped at step [0-9]* of 1000000 (SIGUSR1)" "$work/$1.log" | grep -o "[0-9]*" | head -1)
  [[ -n $n ]] || fail "$1: no stop line: $(tail -5 "$work/$1.log")"
  grep -q "checkpoint saved: $work/$1.ck/$(printf 'step_%08d' "$n"), .* in [3-9]\.[0-9]* s" \
    "$work/$1.log" || fail "$1: no slow save of step $n: $(grep saved "$work/$1.log")"
  [[ $(cat "$work/$1.ck/latest") == $(printf 'step_%08d' "$n") ]] || fail "$1: latest $(cat "$work/$1.ck/latest")"
  compgen -G "$work/$1.ck/*.tmp" >/dev/null && fail "$1: a .tmp was left: $(ls "$work/$1.ck")"
  "$loom" ckpt verify "$work/$1.ck" >/dev/null 2>&1 || fail "$1: the checkpoint does not verify"
  echo "$1: stopped at step $n, a 3 s save, exit 0"
}

# --- SIGUSR1 to mpirun ------------------------------------------------------------------------
cfg=$(job usr1 1000000 "async: true")
"$mpiexec" "${mpi_args[@]}" "$loom" train --config "$cfg" > "$work/usr1.log" 2>&1 &
pid=$!
wait_steps usr1 $pid
kill -USR1 $pid
wait $pid
stopped usr1 $?

# --- the Slurm batch script, signalled as --signal=B:USR1@N does ------------------------------
cfg=$(job sbatch 1000000 "async: true")
MPIRUN="$mpiexec" MPIRUN_ARGS="${mpi_args[*]}" LOOM="$loom" \
  bash "$src/scripts/train.sbatch" "$cfg" > "$work/sbatch.log" 2>&1 &
pid=$!
wait_steps sbatch $pid
kill -USR1 $pid
wait $pid
stopped sbatch $?
grep -q "train.sbatch: SIGUSR1: asking loom" "$work/sbatch.log" || fail "sbatch: the trap did not run"

# --- the advice printed when a rank gets SIGTERM ------------------------------------------------
cfg=$(job term 1000000 "async: true")
"$mpiexec" "${mpi_args[@]}" "$loom" train --config "$cfg" > "$work/term.log" 2>&1 &
pid=$!
wait_steps term $pid
rank=$(pgrep -P "$pid" -f "loom train" | head -1)
[[ -n $rank ]] || rank=$(pgrep -f "$loom train --config $cfg" | grep -v "^$pid$" | head -1)
kill -TERM "$rank"
wait $pid
rc=$?
(( rc == 0 )) || fail "term: exit $rc: $(tail -5 "$work/term.log")"
grep -q "Under mpirun send SIGUSR1 to mpirun instead of SIGTERM" "$work/term.log" \
  || fail "term: no advice printed: $(tail -5 "$work/term.log")"
echo "term: a SIGTERM to a rank stops the job (exit 0) and prints the advice"

# --- a slow save is not a stall -----------------------------------------------------------------
cfg=$(job slow 1000000 "async: true")
LOOM_CKPT_TEST_WRITE_DELAY_MS=0:2500 "$mpiexec" "${mpi_args[@]}" -x LOOM_CKPT_TEST_WRITE_DELAY_MS \
  "$loom" train --config "$cfg" --set lr_schedule.total_steps=4 --set checkpoint.interval=2 \
  --set checkpoint.async=false --set runtime.collective_timeout_s=1 > "$work/slow.log" 2>&1
rc=$?
(( rc == 0 )) || fail "slow save: exit $rc: $(grep -v '^\[r' "$work/slow.log" | tail -5)"
for n in 2 4; do
  grep -q "checkpoint saved: $work/slow.ck/$(printf 'step_%08d' "$n"), .* in [2-9]\.[0-9]* s" \
    "$work/slow.log" || fail "slow save: step $n: $(grep saved "$work/slow.log")"
done
grep -q "done: 4 steps" "$work/slow.log" || fail "slow save: $(tail -3 "$work/slow.log")"
echo "slow: 2.5 s saves under a 1 s collective timeout, exit 0"
