#!/usr/bin/env bash
# Quickstart: set up, build, prepare the demo corpus (the licence texts in
# /usr/share/common-licenses) and train a small byte-level GPT-2 on it with two data-parallel
# ranks. Takes a few minutes on 2 cores; watch the loss fall and the samples turn into words.
# Extra arguments go to `loom train` (e.g. --set lr_schedule.total_steps=50).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh --target loom
LOOM=build/bin/loom
if [[ ! -f data/demo/tokenizer.json ]]; then
  "$LOOM" data prepare --input /usr/share/common-licenses --out data/demo --val-fraction 0.05
fi
RANKS="${RANKS:-2}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun -np "$RANKS" --oversubscribe --bind-to none "$LOOM" train \
  --config configs/quickstart.textproto "$@"
echo "quickstart: metrics in runs/quickstart/metrics.jsonl (TensorBoard: tensorboard --logdir runs/quickstart)"
