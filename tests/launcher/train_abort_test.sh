#!/usr/bin/env bash
# `loom train` under mpirun when one rank fails at start-up: rank 1 is given a data path that
# does not exist (MPMD: each rank its own command line), rank 0 a good job that goes on to its
# first gradient all-reduce. The failing rank must end the whole job (MPI_Abort) with its
# reason, promptly; a job left waiting for rank 1 is killed by the timeout and fails the test.
# Usage: train_abort_test.sh LOOM MPIEXEC SOURCE_DIR OUT_DIR
set -uo pipefail
loom=$1 mpiexec=$2 src=$3 out=$4
rm -rf "$out" && mkdir -p "$out"
"$loom" data prepare --input "$src/tests/data" --out "$out/data" --val-fraction 0.25 \
  --shard-tokens 4096 >"$out/prepare.log" || { cat "$out/prepare.log"; exit 1; }
common=(--config "$src/configs/tiny.textproto" --set runtime.backend=CPU
        --set "logging.run_dir=$out/run" --set "data.val=$out/data/val_*.bin"
        --set lr_schedule.total_steps=100000)
start=$(date +%s)
timeout 60 "$mpiexec" --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 \
  -np 1 "$loom" train "${common[@]}" --set "data.train=$out/data/train_*.bin" : \
  -np 1 "$loom" train "${common[@]}" --set "data.train=$out/missing/train_*.bin" \
  >"$out/train.log" 2>&1
rc=$?
took=$(( $(date +%s) - start ))
fail() { echo "FAIL: $*"; echo "---- train.log"; tail -40 "$out/train.log"; exit 1; }
(( rc == 124 )) && fail "the job was still running after 60 s: rank 0 was left waiting"
(( rc != 0 )) || fail "the job exited 0 although rank 1 could not start"
grep -q "loom train: error: rank 1: " "$out/train.log" && grep -q "data.train: .*missing" "$out/train.log" \
  || fail "rank 1's reason is not in the output"
echo "train_abort: ok (exit $rc after ${took}s)"
