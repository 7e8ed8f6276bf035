#!/usr/bin/env bash
# The fine-tuning path end to end on the demo corpus, on the CPU:
#   1. pretrain the quickstart model with a checkpoint (skipped when checkpoints/quickstart
#      exists; PRETRAIN_STEPS=N shortens it, default the quickstart's 800 steps);
#   2. `loom data sft`: data/demo/sft_qa.jsonl -> data/demo/sft/ (shards with loss masks);
#   3. answers before: `loom generate --template qa` on a few of the questions;
#   4. fine-tune: configs/sft_tiny.textproto (150 steps, init_from the pretrained checkpoint);
#   5. answers after, then `loom export` of the fine-tuned model to out/sft_tiny.bin.
# Extra arguments go to the fine-tuning `loom train`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh --target loom
LOOM=build/bin/loom
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
if [[ ! -f data/demo/tokenizer.json ]]; then
  "$LOOM" data prepare --input /usr/share/common-licenses --out data/demo --val-fraction 0.05
fi
if [[ ! -e checkpoints/quickstart/latest ]]; then
  echo "== pretraining the quickstart model (checkpoints/quickstart)"
  mpirun -np 2 --oversubscribe --bind-to none "$LOOM" train --config configs/quickstart.textproto \
    --set checkpoint.dir=checkpoints/quickstart --set logging.sample_interval=0 --overwrite \
    ${PRETRAIN_STEPS:+--set lr_schedule.total_steps=$PRETRAIN_STEPS}
fi
echo "== loom data sft"
# Examples packed back to back: each restarts the positions at 0 (data.reset_position_ids), so it
# trains at the positions a prompt has when generating.
"$LOOM" data sft --input data/demo/sft_qa.jsonl --out data/demo/sft --seq-len 128 \
  --val-fraction 0 --template qa --overwrite
QUESTIONS=("When was GPL-3 published?" "Who publishes Apache-2.0?" "What is LGPL-2.1?"
           "Who publishes MPL-2.0?")
ask() {  # $1: checkpoint
  for q in "${QUESTIONS[@]}"; do
    a=$("$LOOM" generate --from "$1" --template qa --prompt "$q" --temperature 0 \
      --max-new-tokens 60 --quiet)
    echo "  Q: $q -> A: ${a//$'\n'/\\n}"
  done
}
echo "== answers before fine-tuning"
ask checkpoints/quickstart
echo "== fine-tuning (configs/sft_tiny.textproto)"
"$LOOM" train --config configs/sft_tiny.textproto --overwrite "$@"
echo "== answers after fine-tuning"
ask checkpoints/sft_tiny
mkdir -p out
"$LOOM" export --from checkpoints/sft_tiny --format loom --out out/sft_tiny.bin
echo "sft_demo: fine-tuned model in checkpoints/sft_tiny and out/sft_tiny.bin"
