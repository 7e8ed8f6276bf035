#!/usr/bin/env bash
# `loom train` under mpirun when the network or a rank misbehaves (issue 11):
#   train_faults_test.sh LOOM MPIEXEC SOURCE_DIR OUT_DIR
# - TCP: 2 data-parallel ranks with `--mca pml ob1 --mca btl tcp,self` (the network transport,
#   not shared memory, carries every message) train the same losses as 1 rank (1e-5 relative);
# - stall: LOOM_FAULT=stall on rank 1 of 3 at step 3 (it sleeps, no MPI): the job ends non-zero
#   within runtime.collective_timeout_s (5 s) + 10 s of the stall, a waiting rank naming the
#   operation, the group, the step, the other waiting rank and rank 1 as the one that did not
#   arrive;
# - exit: LOOM_FAULT=exit on rank 1 at step 2 (_exit, no MPI_Finalize): the job ends non-zero
#   without a hang;
# - nan: LOOM_FAULT=nan on rank 1 at step 2: both ranks skip step 2 and train to the end (exit
#   0, metrics.jsonl counts it); with runtime.max_nonfinite_steps=1 the job ends non-zero naming
#   step 2;
# - time limit: runtime.max_duration_s=6 on 2 ranks: both stop at the same step before it, exit 0.
# - both faulty runs save a checkpoint every step: afterwards `loom ckpt verify` accepts the one
#   `latest` names, it is at most one interval (1 step) behind the faulting step, and the job
#   resumed from it trains to the end.
set -uo pipefail
loom=$1 mpiexec=$2 src=$3 out=$4
source "$src/tests/cli_testing.sh"
rm -rf "$out" && mkdir -p "$out"

"$loom" data prepare --input "$src/launcher" --out "$out/data" --val-fraction 0 >"$out/prepare.log" \
  || { cat "$out/prepare.log"; fail "data prepare"; }
cat > "$out/job.textproto" <<JOB
model { family: GPT2 layers: 2 heads: 2 hidden: 32 vocab: 257 max_seq: 32 }
parallel { micro_batch_size: 2 global_batch_size: 4 }
optimizer { lr: 0.001 }
lr_schedule { total_steps: 6 }
data { train: "$out/data/train_*.bin" seq_len: 32 }
logging { tensorboard: false }
runtime { backend: CPU seed: 1 collective_timeout_s: 5 }
JOB
mpi=("$mpiexec" -np 2 --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1)
mpi3=("$mpiexec" -np 3 --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1)
train=("$loom" train --config "$out/job.textproto")

# The losses of metrics.jsonl, one per line.
losses() { sed -E 's/.*"loss":([^,]*),.*/\1/' "$1"; }

# --- TCP carries the traffic; the losses are those of one rank -------------------------------
log=$out/one.log
"${train[@]}" --set "logging.run_dir=$out/one" >"$log" 2>&1 || fail "1-rank run"
log=$out/tcp.log
"${mpi[@]}" --mca pml ob1 --mca btl tcp,self "${train[@]}" --set "logging.run_dir=$out/tcp" \
  >"$log" 2>&1 || fail "2 ranks over TCP"
paste <(losses "$out/one/metrics.jsonl") <(losses "$out/tcp/metrics.jsonl") | awk '
  { n++; d = $1 - $2; if (d < 0) d = -d; if (d > 1e-5 * ($1 < 0 ? -$1 : $1)) bad = bad " step " n ": " $1 " vs " $2 }
  END { if (n != 6 || bad != "") { print "loss mismatch (" n " steps):" bad; exit 1 } }' \
  || fail "2 ranks over TCP did not train the 1-rank losses"
echo "tcp: 2 ranks over btl tcp,self match the 1-rank losses for 6 steps"

# --- a rank stalls in compute ----------------------------------------------------------------
log=$out/stall.log
start=$(now)
LOOM_FAULT=stall LOOM_FAULT_RANK=1 LOOM_FAULT_STEP=3 timeout 90 "${mpi3[@]}" \
  -x LOOM_FAULT -x LOOM_FAULT_RANK -x LOOM_FAULT_STEP "${train[@]}" \
  --set parallel.global_batch_size=6 --set "checkpoint.dir=$out/ckpt_stall" \
  --set checkpoint.interval=1 >"$log" 2>&1 &
expect_stall_reported $!
echo "stall: the job ended ${took} s after rank 1 of 3 stalled (exit $rc), naming step 3, rank 1 and the waiting rank"
# After a fault: the checkpoint `latest` names verifies, is at most one interval (1 step) behind
# the faulting step, and the job resumes from it to the end.
check_resume() {  # NAME CKPT_DIR FAULT_STEP MPI-ARRAY-NAME EXTRA_SETS...
  local name=$1 dir=$2 fault_step=$3 mpiname=$4
  shift 4
  local -n runner=$mpiname
  log=$out/verify_$name.log
  "$loom" ckpt verify "$dir" >"$log" 2>&1 || fail "$name: the latest checkpoint does not verify"
  local saved
  saved=$(readlink "$dir/latest" 2>/dev/null || cat "$dir/latest")
  saved=${saved##*step_}
  saved=$((10#${saved%%[!0-9]*}))
  (( saved >= fault_step - 1 )) || fail "$name: latest is step $saved, more than one interval before step $fault_step"
  log=$out/resume_$name.log
  timeout 90 "${runner[@]}" "${train[@]}" "$@" --set "checkpoint.dir=$dir" >"$log" 2>&1 \
    || fail "$name: resuming from the latest checkpoint failed"
  grep -q "resumed from .*step_0*${saved} at step ${saved}" "$log" || fail "$name: did not resume from step $saved"
  grep -q "done: 6 steps" "$log" || fail "$name: the resumed run did not finish"
  echo "$name: latest checkpoint (step $saved) verifies; resumed from it to step 6"
}
check_resume stall "$out/ckpt_stall" 3 mpi3 --set parallel.global_batch_size=6

# --- a rank exits abruptly -------------------------------------------------------------------
log=$out/exit.log
LOOM_FAULT=exit LOOM_FAULT_RANK=1 LOOM_FAULT_STEP=2 timeout 60 "${mpi[@]}" \
  -x LOOM_FAULT -x LOOM_FAULT_RANK -x LOOM_FAULT_STEP "${train[@]}" \
  --set "checkpoint.dir=$out/ckpt_exit" --set checkpoint.interval=1 >"$log" 2>&1 &
pid=$!
exited=
for _ in $(seq 600); do
  grep -q "LOOM_FAULT: rank 1 exits at step 2" "$log" && { exited=$(now); break; }
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
wait "$pid"
rc=$?
ended=$(now)
[[ -n $exited ]] || grep -q "LOOM_FAULT: rank 1 exits at step 2" "$log" || fail "rank 1 did not exit"
(( rc == 124 )) && fail "the job hung after rank 1 exited"
(( rc != 0 )) || fail "a job whose rank exited exited 0"
took=$(secs "${exited:-$ended}" "$ended")
awk -v t="$took" 'BEGIN { exit !(t <= 10) }' || fail "the job ended ${took} s after rank 1 exited"
echo "exit: the job ended ${took} s after rank 1 exited at step 2 (exit $rc)"
check_resume exit "$out/ckpt_exit" 2 mpi

# --- a non-finite loss on one rank -----------------------------------------------------------
log=$out/nan.log
LOOM_FAULT=nan LOOM_FAULT_RANK=1 LOOM_FAULT_STEP=2 timeout 60 "${mpi[@]}" \
  -x LOOM_FAULT -x LOOM_FAULT_RANK -x LOOM_FAULT_STEP "${train[@]}" \
  --set "logging.run_dir=$out/nan" >"$log" 2>&1 || fail "a skipped step ended the job"
m=$out/nan/metrics.jsonl
(( $(wc -l < "$m") == 6 )) || fail "$m does not hold 6 steps"
sed -n 2p "$m" | grep -q '"loss":null.*"skipped_steps":1' || fail "step 2 is not logged as skipped"
sed -n 3p "$m" | grep -q '"loss":[0-9]' || fail "step 3 did not train"
grep -q "step 2: training loss nan.*non-finite on 2 of 2 rank(s)): step skipped" "$log" \
  || fail "no warning naming the skipped step"
log=$out/nan1.log
LOOM_FAULT=nan LOOM_FAULT_RANK=1 LOOM_FAULT_STEP=2 timeout 60 "${mpi[@]}" \
  -x LOOM_FAULT -x LOOM_FAULT_RANK -x LOOM_FAULT_STEP "${train[@]}" \
  --set runtime.max_nonfinite_steps=1 >"$log" 2>&1
rc=$?
(( rc != 0 && rc != 124 )) || fail "max_nonfinite_steps=1: exit $rc, expected an error"
grep -q "step 2: training loss nan.*runtime.max_nonfinite_steps = 1" "$log" \
  || fail "max_nonfinite_steps=1: the error does not name step 2"
echo "nan: step 2 skipped and counted, training went on; with max_nonfinite_steps=1 the job ended (exit $rc)"

# --- a time limit --------------------------------------------------------------------------
log=$out/time.log
start=$(now)
timeout 60 "${mpi[@]}" "${train[@]}" --set lr_schedule.total_steps=1000000 \
  --set runtime.max_duration_s=6 --set runtime.stop_margin_s=1 >"$log" 2>&1 \
  || fail "the time limit did not end the run cleanly"
took=$(secs "$start" "$(now)")
# Rank 0 logs the stop; the exit code 0 shows rank 1 stopped at the same step (a rank that went
# on would wait in the next step's all-reduce until the 5 s deadline aborted the job).
# Rank 0 names its own limit, or a peer's when that rank's clock (started a little earlier on a
# loaded machine) ran out first: both stop every rank at the same step.
grep -Eq "stopped at step [0-9]* of 1000000 \((a peer rank's )?time limit" "$log" \
  || fail "no stop at the time limit: $(grep -m1 "stopped at" "$log")"
# The limit counts from the trainer's start (its first log line) to the stop line; the whole
# mpirun also holds MPI's start-up and shutdown, slow on a loaded machine.
clock() { sed -E 's/^\[[^]]*\] I ([0-9:.]+) .*/\1/' | awk -F: '{ print $1 * 3600 + $2 * 60 + $3 }'; }
t0=$(grep -m1 "^\[r0 .*\] I " "$log" | clock)
t1=$(grep -m1 "stopped at step" "$log" | clock)
ran=$(secs "$t0" "$t1")
awk -v t="$ran" 'BEGIN { exit !(t >= 0 && t < 6) }' || fail "the trainer ran ${ran} s with max_duration_s=6"
echo "time limit: $(grep -o "stopped at step [0-9]*" "$log") ${ran} s after the trainer started, exit 0 (${took} s in all)"
echo PASS
