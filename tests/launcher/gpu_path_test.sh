#!/usr/bin/env bash
# The GPU's control path, run on the test device (runtime.backend TEST, runtime/test_device.h):
#   gpu_path_test.sh CASE LOOM MPIEXEC SOURCE_DIR OUT_DIR
# Each case trains a tiny model for 6 steps on the test device and on the plain CPU backend and
# requires the same losses, bit for bit (the test device runs the CPU kernels with the same
# arithmetic in the same order; only where the work runs and how the host waits differ):
#   one     1 rank (no device backend at all: the world-size-1 path)
#   dp2     2 data-parallel ranks; each rank sees only its own device through
#           LOOM_TEST_VISIBLE_DEVICES (rank 0 device 1, rank 1 device 0), every device exclusive
#           to one process (LOOM_TEST_DEVICE_LOCK_DIR), as srun --gpus-per-task=1 gives
#   tp2sp   tensor parallelism 2 with sequence parallelism
#   pp2     2 pipeline stages (1F1B, 4 micro-batches)
#   zero1   3 data-parallel ranks with the distributed optimizer (ZeRO-1) and small buckets, so
#           the buffers are padded and parameters straddle bucket boundaries
#   resume  with ZeRO-1 on 2 ranks: checkpoint at step 3, stop, resume: steps 4..6 equal the
#           uninterrupted run's
#   stall   rank 1 of 3 stalls at the start of step 3 (LOOM_FAULT=stall_start), so the others'
#           gradient all-reduce on the device never completes and their hosts block in the
#           step's read-back of device work: the job ends within the timeout (5 s) + 10 s,
#           naming the device collective, the group, the step and rank 1, as the CPU path does
# Also (every case): the host synchronisations per step stay within the budget the trainer
# states (it fails the run otherwise: runtime/test_device.h counts them); dp2 and tp2sp: the
# comm_share metric is the one made of the device's stream times.
set -uo pipefail
case_name=$1 loom=$2 mpiexec=$3 src=$4 out=$5/$1
source "$src/tests/cli_testing.sh"
rm -rf "$out" && mkdir -p "$out"

"$loom" data prepare --input "$src/launcher" --out "$out/data" --val-fraction 0 >"$out/prepare.log" \
  || { cat "$out/prepare.log"; fail "data prepare"; }
cat > "$out/job.textproto" <<JOB
model { family: GPT2 layers: 4 heads: 4 hidden: 32 vocab: 257 max_seq: 32 }
parallel { micro_batch_size: 2 global_batch_size: 8 }
optimizer { lr: 0.001 grad_clip: 1.0 }
lr_schedule { warmup_steps: 2 total_steps: 6 }
data { train: "$out/data/train_*.bin" seq_len: 32 }
logging { tensorboard: false interval: 1 }
runtime { seed: 1 collective_timeout_s: 5 }
JOB
mpi=("$mpiexec" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1)
train=("$loom" train --config "$out/job.textproto")
losses() { sed -E 's/.*"loss":([^,]*),.*/\1/' "$1"; }

# Runs the job on BACKEND with RANKS ranks into run dir NAME; extra --set flags follow.
run() {
  local name=$1 backend=$2 ranks=$3
  shift 3
  log=$out/$name.log
  if (( ranks == 1 )); then
    timeout 120 "${train[@]}" --set runtime.backend="$backend" --set "logging.run_dir=$out/$name" \
      "$@" >"$log" 2>&1 || fail "$name ($backend, $ranks rank(s)) failed"
  else
    timeout 120 "${mpi[@]}" -np "$ranks" "${train[@]}" --set runtime.backend="$backend" \
      --set "logging.run_dir=$out/$name" "$@" >"$log" 2>&1 || fail "$name ($backend, $ranks ranks) failed"
  fi
}

# The losses of two runs are the same, bit for bit (as printed: 9 significant digits).
same_losses() {
  local a=$out/$1/metrics.jsonl b=$out/$2/metrics.jsonl
  [[ -s $a && -s $b ]] || fail "no metrics for $1 or $2"
  diff <(losses "$a") <(losses "$b") >"$out/diff_$1_$2.txt" \
    || { cat "$out/diff_$1_$2.txt"; fail "$2 did not train the losses of $1"; }
  (( $(wc -l <"$a") == 6 )) || fail "$1 logged $(wc -l <"$a") steps, expected 6"
}

# Ran on the test device, and no step made the host wait on it more than the trainer's budget.
on_test_device() {
  grep -q "on test:" "$out/$1.log" || fail "$1 did not run on the test device"
  grep -q "host waits on test:.*(budget 1)" "$out/$1.log" || fail "$1: no count of host waits"
  # Every rank's count (the last pipeline stage holds the losses).
  ! grep -Eq "host waits on test:.*at most ([2-9]|[0-9]{2,}) in one" "$out/$1.log" \
    || fail "$1: a step made the host wait on the device more than once ($(grep -E 'at most ([2-9]|[0-9]{2,}) in one' "$out/$1.log" | head -1))"
}

# comm_share on the device comes from its stream times (StepProgress::AddDeviceComm): rank 0
# logs the device's communication per group each step with the comm_share made of it, and the
# metrics record carries that same value, within 0..1. GROUP must appear in the device line.
device_comm_share() {
  local name=$1 group=$2 log=$out/$1.log jsonl=$out/$1/metrics.jsonl
  grep '^\[r0 ' "$log" | grep -E "stream events\): .*$group [0-9.]+ ms.*; comm_share " \
    | sed -E 's/.*comm_share ([0-9.e+-]+).*/\1/' >"$out/$name.share_log"
  grep -o '"comm_share":[^,}]*' "$jsonl" | cut -d: -f2 >"$out/$name.share_metrics"
  (( $(wc -l <"$out/$name.share_log") == 6 )) \
    || fail "$name: no device communication line naming $group with comm_share for each step"
  paste "$out/$name.share_log" "$out/$name.share_metrics" | awk '
    NF != 2 || $1 < 0 || $1 > 1 || ($1 - $2 > 1e-6 || $2 - $1 > 1e-6) { bad = 1 }
    END { exit bad }' || fail "$name: comm_share is not the device's ($(paste -d' ' "$out/$name.share_log" "$out/$name.share_metrics" | tr '\n' ';'))"
}

case $case_name in
  one)
    run cpu CPU 1
    run dev TEST 1
    on_test_device dev
    same_losses cpu dev
    ;;
  dp2)
    run cpu CPU 2
    mkdir -p "$out/locks"
    log=$out/dev.log
    # MPMD: each rank its own visibility list (one device each, in reverse order).
    timeout 120 "$mpiexec" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1 \
      -x LOOM_TEST_DEVICE_LOCK_DIR="$out/locks" \
      -np 1 -x LOOM_TEST_VISIBLE_DEVICES=1 "${train[@]}" --set runtime.backend=TEST --set "logging.run_dir=$out/dev" : \
      -np 1 -x LOOM_TEST_VISIBLE_DEVICES=0 "${train[@]}" --set runtime.backend=TEST --set "logging.run_dir=$out/dev" \
      >"$log" 2>&1 || fail "dp 2 on one visible test device per rank failed"
    grep -q "test:0 (test device 1)" "$log" || fail "rank 0 did not use the one device it sees (physical 1)"
    on_test_device dev
    same_losses cpu dev
    device_comm_share dev "dp exposed"
    # Both ranks on one exclusive device (every rank seeing only device 0) is refused, by name.
    log=$out/clash.log
    rm -rf "$out/locks" && mkdir -p "$out/locks"
    timeout 60 "${mpi[@]}" -np 2 -x LOOM_TEST_DEVICE_LOCK_DIR="$out/locks" -x LOOM_TEST_VISIBLE_DEVICES=0 \
      "${train[@]}" --set runtime.backend=TEST --set "logging.run_dir=$out/clash" >"$log" 2>&1 \
      && fail "two ranks shared one exclusive test device"
    grep -q "in use by another process" "$log" || fail "the device clash is not named"
    ;;
  tp2sp)
    run cpu CPU 2 --set parallel.tp=2 --set parallel.sequence_parallel=true
    run dev TEST 2 --set parallel.tp=2 --set parallel.sequence_parallel=true
    on_test_device dev
    same_losses cpu dev
    device_comm_share dev tp
    ;;
  pp2)
    run cpu CPU 2 --set parallel.pp=2
    run dev TEST 2 --set parallel.pp=2
    on_test_device dev
    same_losses cpu dev
    ;;
  zero1)
    zero=(--set parallel.distributed_optimizer=true --set parallel.global_batch_size=6
          --set parallel.grad_bucket_mb=0.05)
    run cpu CPU 3 "${zero[@]}"
    run dev TEST 3 "${zero[@]}"
    on_test_device dev
    same_losses cpu dev
    ;;
  resume)
    run cpu CPU 2 --set parallel.distributed_optimizer=true
    run dev TEST 2 --set parallel.distributed_optimizer=true --set "checkpoint.dir=$out/ckpt" \
      --set checkpoint.interval=3 --set runtime.stop_at_step=3
    grep -q "checkpoint saved: .*step_00000003" "$log" || fail "the first half saved no checkpoint at step 3"
    run dev TEST 2 --set parallel.distributed_optimizer=true --set "checkpoint.dir=$out/ckpt" \
      --set checkpoint.interval=3
    grep -q "resumed from .*step_0*3 at step 3" "$log" || fail "did not resume from step 3"
    on_test_device dev
    same_losses cpu dev
    ;;
  stall)
    log=$out/stall.log
    start=$(now)
    LOOM_FAULT=stall_start LOOM_FAULT_RANK=1 LOOM_FAULT_STEP=3 timeout 90 "$mpiexec" -np 3 --oversubscribe \
      --bind-to none -x OMP_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1 \
      -x LOOM_FAULT -x LOOM_FAULT_RANK -x LOOM_FAULT_STEP "${train[@]}" --set runtime.backend=TEST \
      --set parallel.global_batch_size=6 --set "logging.run_dir=$out/stall" >"$log" 2>&1 &
    expect_stall_reported $!
    # On the device the collective is named exactly: the gradients' all-reduce, its size and type.
    grep -Eq "rank [02]: all_reduce\(avg\) of [0-9]+ bytes \([0-9]+ x f32\) on dp \[0,1,2\] did not complete within 5s at step 3" "$log" \
      || fail "no message naming the device collective, its size, the group and the step"
    grep -Eq "^  rank [02]: step 3: waiting in all_reduce\(avg\) of [0-9]+ bytes" "$log" \
      || fail "the roll call does not show the other rank waiting in the device collective"
    echo "stall: the job ended ${took} s after rank 1 of 3 stalled (exit $rc)"
    ;;
  *)
    fail "unknown case (one, dp2, tp2sp, pp2, zero1, resume, stall)"
    ;;
esac
echo "gpu_path $case_name: ok"
