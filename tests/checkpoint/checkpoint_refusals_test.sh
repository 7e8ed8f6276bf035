#!/usr/bin/env bash
# The ways issue 19 found to lose, overwrite or escape a run, as a user meets them:
#   LOOM SOURCE_DIR WORK_DIR MPIEXEC
# - a lost `latest`: the job resumes from the newest complete step and says so; a fresh start
#   over the checkpoints needs checkpoint.resume NONE plus --overwrite;
# - two jobs on one checkpoint.dir: the second is refused naming the first (host, pid, start);
#   the lock of a SIGKILLed job is taken over with a warning;
# - a resume into a run_dir holding another run's metrics is refused (they would be cut);
# - checkpoint.dir under a regular file, a missing model.init_from, stop_at_step below the
#   resume step, bad token data, an unreadable checkpoint: `config check` and `train` give the
#   same verdict, exit code 2, before step 1;
# - `loom export` refuses an output inside a checkpoint or over its input.
set -uo pipefail
loom=$1 src=$2 work=$3 mpiexec=$4
source "$src/tests/cli_testing.sh"
source "$src/tests/checkpoint/checkpoint_cli_testing.sh"
# both CMD... : `config check` and `train` with the same arguments both exit 2 and print $want.
both() {
  local want=$1 name=$2
  shift 2
  for cmd in "config check" train; do
    "$loom" $cmd "$@" > "$work/$name.log" 2>&1
    local rc=$?
    (( rc == 2 )) || fail "$name: loom $cmd exit $rc, expected 2: $(tail -5 "$work/$name.log")"
    grep -q -- "$want" "$work/$name.log" || fail "$name: loom $cmd: $(cat "$work/$name.log")"
  done
}

# --- 1. a lost `latest` -----------------------------------------------------------------------
cfg=$(job l 6 "interval: 2")
"$loom" train --config "$cfg" --set runtime.stop_at_step=4 > "$work/l1.log" 2>&1 \
  || fail "l1: $(tail -5 "$work/l1.log")"
grep -q "stopped at step 4 of 6 (runtime.stop_at_step)" "$work/l1.log" || fail "l1: no stop line: $(tail -3 "$work/l1.log")"
rm "$work/l.ck/latest"
"$loom" train --config "$cfg" > "$work/l2.log" 2>&1 || fail "l2: $(tail -5 "$work/l2.log")"
grep -q "has no 'latest' file: using the newest complete checkpoint, $work/l.ck/step_00000004" \
  "$work/l2.log" || fail "l2 did not say it fell back: $(head -20 "$work/l2.log")"
grep -q "resumed from $work/l.ck/step_00000004 at step 4" "$work/l2.log" || fail "l2 did not resume"
(( $(lines "$work/l.run/metrics.jsonl") == 6 )) || fail "metrics: $(lines "$work/l.run/metrics.jsonl") lines"
both "checkpoint.resume NONE, but checkpoint.dir $work/l.ck holds checkpoints" fresh \
  --config "$cfg" --set checkpoint.resume=NONE
"$loom" train --config "$cfg" --set checkpoint.resume=NONE --overwrite > "$work/l3.log" 2>&1 \
  || fail "NONE + --overwrite: $(tail -5 "$work/l3.log")"
grep -q "done: 6 steps" "$work/l3.log" || fail "l3: $(tail -3 "$work/l3.log")"
grep -q "resumed from" "$work/l3.log" && fail "l3 resumed"
echo "ok: a lost latest resumes from the newest complete step; NONE needs --overwrite"

# --- 5. one job per directory -----------------------------------------------------------------
cfg=$(job k 100000)
"$loom" train --config "$cfg" > "$work/k1.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  (( $(lines "$work/k.run/metrics.jsonl") >= 2 )) && break
  kill -0 $pid 2>/dev/null || fail "k1 ended early: $(tail -5 "$work/k1.log")"
  sleep 0.1
done
"$loom" train --config "$cfg" > "$work/k2.log" 2>&1
rc=$?
(( rc == 2 )) || { kill -9 $pid; fail "a second job on the same dirs: exit $rc: $(tail -5 "$work/k2.log")"; }
grep -q "checkpoint.dir $work/k.ck is in use by another job (host .* pid $pid started " "$work/k2.log" \
  || { kill -9 $pid; fail "k2: $(cat "$work/k2.log")"; }
kill -9 $pid
wait $pid 2>/dev/null
"$loom" train --config "$cfg" --set runtime.stop_at_step=1 --set checkpoint.resume=NONE --overwrite \
  > "$work/k3.log" 2>&1 || fail "after the holder died: $(tail -5 "$work/k3.log")"
grep -q "taking over the lock left by host .* pid $pid " "$work/k3.log" || fail "k3: no take-over warning"
echo "ok: a second job is refused naming the holder; a dead holder's lock is taken over"

# --- 6. another run's metrics -----------------------------------------------------------------
cfg_a=$(job ra 8)
"$loom" train --config "$cfg_a" > "$work/ra.log" 2>&1 || fail "ra: $(tail -5 "$work/ra.log")"
cfg_b=$(job rb 8)
"$loom" train --config "$cfg_b" --set runtime.stop_at_step=3 > "$work/rb.log" 2>&1 || fail "rb"
both "logging.run_dir $work/ra.run holds the metrics of run .*, but the checkpoint resumed is of run" \
  other_run --config "$cfg_b" --set "logging.run_dir=$work/ra.run"
(( $(lines "$work/ra.run/metrics.jsonl") == 8 )) || fail "ra's metrics were cut"
echo "ok: a resume into another run's run_dir is refused"

# --- 8, 9. config check and train agree, before step 1 ------------------------------------------
cfg=$(job c 4)
echo "a file" > "$work/afile"
both "checkpoint.dir: '$work/afile/ck' lies under '$work/afile', which is not a directory" \
  under_file --config "$cfg" --set "checkpoint.dir=$work/afile/ck"
both "logging.run_dir: '$work/afile' exists and is not a directory" run_file --config "$cfg" \
  --set "logging.run_dir=$work/afile"
both "model.init_from: '$work/missing.bin' cannot be read" init_from --config "$cfg" \
  --set "model.init_from=$work/missing.bin"
both "is at step 3, past this run's last step 2" stop_below --config "$cfg_b" \
  --set runtime.stop_at_step=2
mkdir -p "$work/baddata" && head -c 3000 /dev/urandom > "$work/baddata/train_000.bin"
both "data.train: " bad_data --config "$cfg" --set "data.train=$work/baddata/train_*.bin"
cp -r "$work/rb.ck" "$work/rb_bad.ck"
truncate -s 100 "$work/rb_bad.ck/step_00000003/rank_00000.bin"
both "rank_00000.bin has 100 bytes, the manifest records" bad_ckpt --config "$cfg_b" \
  --set "checkpoint.resume=$work/rb_bad.ck"
[[ ! -e $work/c.run/metrics.jsonl ]] || fail "a refused job wrote metrics"
echo "ok: config check and train refuse the same jobs with exit 2"

# --- 10. export never writes into a checkpoint or over its input -------------------------------
victim=$work/rb.ck/step_00000003/rank_00000.bin
cp "$victim" "$work/victim.copy"
for out in "$victim" "$work/rb.ck/step_00000003/model.bin" "$work/rb.ck/model.bin"; do
  "$loom" export --from "$work/rb.ck" --format loom --out "$out" > "$work/export.log" 2>&1
  rc=$?
  (( rc == 2 )) || fail "export --out $out: exit $rc: $(cat "$work/export.log")"
  grep -q "lies inside\|is the input" "$work/export.log" || fail "export: $(cat "$work/export.log")"
done
cmp -s "$victim" "$work/victim.copy" || fail "export changed the checkpoint"
"$loom" export --from "$work/rb.ck" --format loom --out "$work/model.bin" > "$work/export.log" 2>&1 \
  || fail "export: $(cat "$work/export.log")"
"$loom" export --from "$work/model.bin" --format loom --out "$work/model.bin" > "$work/export.log" 2>&1
(( $? == 2 )) && grep -q "is the input" "$work/export.log" || fail "export over its input: $(cat "$work/export.log")"
"$loom" ckpt verify "$work/rb.ck" > /dev/null 2>&1 || fail "rb.ck no longer verifies"
echo "ok: export refuses outputs inside a checkpoint or over its input"
