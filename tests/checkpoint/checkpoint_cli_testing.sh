# Shared by the checkpoint shell tests that drive `loom` (sourced after tests/cli_testing.sh,
# with $loom, $src and $work set): a fresh $work holding the demo corpus as token shards
# ($work/data), and
#   job NAME TOTAL_STEPS EXTRA...   writes $work/NAME.textproto and prints its path: a 2-layer
#                                   GPT-2 on the CPU, metrics in $work/NAME.run (no TensorBoard
#                                   events), checkpoints in $work/NAME.ck with EXTRA inside
#                                   `checkpoint { }` (interval, keep_last, async...).
rm -rf "$work"
mkdir -p "$work"

"$loom" data prepare --input "$src/launcher" --out "$work/data" --val-fraction 0 >/dev/null \
  || fail "data prepare"
job() {  # job NAME TOTAL_STEPS EXTRA...
  local name=$1 total=$2
  shift 2
  cat > "$work/$name.textproto" <<JOB
model { family: GPT2 layers: 2 heads: 2 hidden: 32 vocab: 257 max_seq: 32 }
parallel { micro_batch_size: 2 global_batch_size: 4 }
optimizer { lr: 0.001 }
lr_schedule { total_steps: $total }
data { train: "$work/data/train_*.bin" seq_len: 32 }
logging { run_dir: "$work/$name.run" tensorboard: false }
runtime { backend: CPU seed: 1 }
checkpoint { dir: "$work/$name.ck" $* }
JOB
  echo "$work/$name.textproto"
}
