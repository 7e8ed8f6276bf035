#!/usr/bin/env bash
# `loom train` as a user runs it, with real signals and a real (small) disk:
#   LOOM SOURCE_DIR WORK_DIR [MPIEXEC]
# - SIGTERM / SIGINT mid-run: "stopped at step N", exit code 0, metrics.jsonl holds exactly
#   steps 1..N, each a whole JSON line;
# - a second run into the same run dir is refused (exit 2) and leaves the metrics alone;
#   --overwrite replaces them;
# - under mpirun: a SIGTERM to one rank stops both at the same step (exit 0); a bad job is
#   listed by rank 0 only, the other rank says one line;
# - a run dir on a tmpfs that fills up mid-run (skipped where tmpfs cannot be mounted): the run
#   finishes, warns once per sink, and the metrics end in a whole line.
set -uo pipefail
loom=$1 src=$2 work=$3 mpiexec=${4:-}
source "$src/tests/cli_testing.sh"
rm -rf "$work"
mkdir -p "$work"

# Lines of a file (0 when missing).

# Waits until $1 has at least $2 lines while process $3 runs.
wait_lines() {
  for _ in $(seq 600); do
    (( $(lines "$1") >= $2 )) && return 0
    kill -0 "$3" 2>/dev/null || fail "the run ended before logging $2 steps: $(tail -5 "$4")"
    sleep 0.1
  done
  fail "no $2 metrics lines in 60 s"
}

# metrics.jsonl holds exactly the steps 1..$2, each line a whole JSON object.
check_metrics() {
  local file=$1 n=$2
  (( $(lines "$file") == n )) || fail "$file has $(lines "$file") lines, expected $n"
  [[ ! -s $file || $(tail -c1 "$file" | od -An -c | tr -d ' ') == '\n' ]] \
    || fail "$file ends inside a line"
  local i=0
  while IFS= read -r line; do
    i=$((i + 1))
    [[ $line =~ ^\{\"step\":$i,\"loss\":[-0-9.e]+,.*\"peak_bytes\":[0-9]+\}$ ]] \
      || fail "$file line $i is not a whole metrics line: $line"
  done < "$file"
}

"$loom" data prepare --input "$src/launcher" --out "$work/data" --val-fraction 0 >/dev/null \
  || fail "data prepare"
cat > "$work/job.textproto" <<JOB
model { family: GPT2 layers: 2 heads: 2 hidden: 32 vocab: 257 max_seq: 32 }
parallel { micro_batch_size: 2 global_batch_size: 4 }
optimizer { lr: 0.001 }
lr_schedule { total_steps: 100000 }
data { train: "$work/data/train_*.bin" seq_len: 32 }
logging { run_dir: "$work/run" }
runtime { backend: CPU seed: 1 }
JOB

# --- one process, SIGTERM and SIGINT -----------------------------------------------------------
for sig in TERM INT; do
  run="$work/run_$sig"
  "$loom" train --config "$work/job.textproto" --set "logging.run_dir=$run" >"$run.log" 2>&1 &
  pid=$!
  wait_lines "$run/metrics.jsonl" 3 "$pid" "$run.log"
  kill -s "$sig" "$pid"
  wait "$pid"
  rc=$?
  [[ $rc == 0 ]] || fail "SIG$sig: exit code $rc, expected 0: $(tail -5 "$run.log")"
  stop=$(grep -o "stopped at step [0-9]* of 100000 (SIG$sig)" "$run.log") \
    || fail "SIG$sig: no stop line in $(tail -5 "$run.log")"
  n=${stop#stopped at step }
  n=${n%% *}
  check_metrics "$run/metrics.jsonl" "$n"
  echo "SIG$sig: stopped at step $n, exit 0, $n whole metrics lines"
done

# --- a reused run dir ------------------------------------------------------------------------
run="$work/run_TERM"
before=$(lines "$run/metrics.jsonl")
"$loom" train --config "$work/job.textproto" --set "logging.run_dir=$run" \
  --set lr_schedule.total_steps=2 >"$work/reuse.log" 2>&1
rc=$?
[[ $rc == 2 ]] || fail "a reused run dir: exit code $rc, expected 2"
grep -q "already holds an earlier run's metrics" "$work/reuse.log" || fail "no reason given"
(( $(lines "$run/metrics.jsonl") == before )) || fail "the refused run touched the old metrics"
"$loom" train --config "$work/job.textproto" --set "logging.run_dir=$run" \
  --set lr_schedule.total_steps=2 --overwrite >"$work/overwrite.log" 2>&1 \
  || fail "--overwrite: $(tail -3 "$work/overwrite.log")"
check_metrics "$run/metrics.jsonl" 2
(( $(ls "$run" | grep -c '^events.out.tfevents') == 1 )) || fail "old event files were kept"
echo "reused run dir: refused with exit 2, --overwrite replaced the metrics"

# --- mpirun ----------------------------------------------------------------------------------
if [[ -n $mpiexec ]]; then
  mpi=("$mpiexec" -np 2 --oversubscribe --bind-to none -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS)
  run="$work/run_mpi"
  "${mpi[@]}" "$loom" train --config "$work/job.textproto" --set "logging.run_dir=$run" \
    >"$run.log" 2>&1 &
  mpid=$!
  wait_lines "$run/metrics.jsonl" 3 "$mpid" "$run.log"
  ranks=($(pgrep -P "$mpid"))
  (( ${#ranks[@]} == 2 )) || fail "expected 2 rank processes under mpirun, found ${ranks[*]}"
  kill -TERM "${ranks[1]}"  # one rank only, as a scheduler signalling one node would
  wait "$mpid"
  rc=$?
  [[ $rc == 0 ]] || fail "mpirun after SIGTERM to one rank: exit code $rc: $(tail -5 "$run.log")"
  (( $(grep -c "stopped at step" "$run.log") == 1 )) || fail "expected one stop line (rank 0)"
  stop=$(grep -o "stopped at step [0-9]*" "$run.log")
  check_metrics "$run/metrics.jsonl" "${stop#stopped at step }"
  echo "mpirun: SIGTERM to one rank, both stopped at step ${stop#stopped at step }, exit 0"

  "${mpi[@]}" "$loom" train --config "$work/job.textproto" --set "logging.run_dir=$work/run_bad" \
    --set parallel.tp=3 >"$work/bad.log" 2>&1
  rc=$?
  [[ $rc == 2 ]] || fail "mpirun with a bad job: exit code $rc, expected 2: $(cat "$work/bad.log")"
  (( $(grep -c "  - world size 2 is not divisible by parallel.tp (3)" "$work/bad.log") == 1 )) \
    || fail "the problem list should be printed once (rank 0): $(cat "$work/bad.log")"
  grep -q "rank 1: the job is refused (2 rank(s) found problems; rank 0 lists them)" \
    "$work/bad.log" || fail "rank 1 should say one line: $(cat "$work/bad.log")"
  echo "mpirun: a bad job is listed once, by rank 0, exit 2"
fi

# --- a disk that fills up --------------------------------------------------------------------
disk="$work/small_disk"
mkdir -p "$disk"
if [[ $(id -u) == 0 ]] && mount -t tmpfs -o size=16k tmpfs "$disk" 2>/dev/null; then
  trap 'umount "$disk" 2>/dev/null' EXIT
  "$loom" train --config "$work/job.textproto" --set "logging.run_dir=$disk/run" \
    --set lr_schedule.total_steps=200 >"$work/full.log" 2>&1
  rc=$?
  [[ $rc == 0 ]] || fail "full disk: exit code $rc: $(tail -5 "$work/full.log")"
  grep -q "done: 200 steps" "$work/full.log" || fail "full disk: the run did not finish"
  (( $(grep -c "No space left on device" "$work/full.log") == 2 )) \
    || fail "full disk: expected one warning per sink: $(grep -i space "$work/full.log")"
  n=$(lines "$disk/run/metrics.jsonl")
  (( n > 0 && n < 200 )) || fail "full disk: $n metrics lines"
  check_metrics "$disk/run/metrics.jsonl" "$n"
  echo "full disk: the run finished 200 steps, metrics.jsonl kept $n whole lines"
else
  echo "full disk: skipped (cannot mount a tmpfs here; the injected-failure tests cover it)"
fi
echo "train_cli: ok"
