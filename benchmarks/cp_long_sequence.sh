#!/usr/bin/env bash
# Context parallelism's sequence-length demonstration: `loom train` at T = 4096
# (benchmarks/cp_long_sequence.textproto, GPT-2 4 x 128) on cp 1, 2 and 4 ranks, printing per
# layout the memory estimate's activations (`loom config check`), the measured peak of the
# allocator on rank 0 (the log's `mem` column: weights, gradients, moments and activations, the
# ranks of a cp group hold the same shapes) and the last step's loss and tokens/s. The losses
# agree (the layout does not change the math); the peak falls with cp as the activations do.
#
#   benchmarks/cp_long_sequence.sh [CP ...]        (default 1 2 4)
# Environment: LOOM (default build/bin/loom), DATA (default data/demo, made by `loom data
# prepare` when missing), OUT (logs, default /tmp/loom_cp_long_sequence).
set -euo pipefail
cd "$(dirname "$0")/.."
LOOM="${LOOM:-build/bin/loom}"
DATA="${DATA:-data/demo}"
OUT="${OUT:-/tmp/loom_cp_long_sequence}"
CONFIG=benchmarks/cp_long_sequence.textproto
LAYOUTS=("${@:-1 2 4}")
[[ $# -eq 0 ]] && LAYOUTS=(1 2 4)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
[[ -x "$LOOM" ]] || { echo "cp_long_sequence: $LOOM not built" >&2; exit 1; }
if [[ ! -f "$DATA/tokenizer.json" ]]; then
  "$LOOM" data prepare --input /usr/share/common-licenses --out "$DATA" --val-fraction 0.05
fi
mkdir -p "$OUT"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-4s %-14s %-14s %-14s %-10s %s\n' cp "est. activ." "est. total" "measured peak" loss tok/s
for cp in "${LAYOUTS[@]}"; do
  sets=(--set "parallel.cp=$cp" --set "data.train=$DATA/train_*.bin")
  check=$("$LOOM" config check --config "$CONFIG" "${sets[@]}")
  act=$(grep -m1 "^#  *activations " <<<"$check" | sed 's/.*activations *//')
  total=$(grep -m1 "^#  *total " <<<"$check" | sed 's/.*total *\([0-9.]* [KMG]iB\).*/\1/')
  log="$OUT/cp$cp.log"
  mpirun -np "$cp" --oversubscribe --bind-to none "$LOOM" train --config "$CONFIG" "${sets[@]}" \
    >"$log" 2>&1 || { echo "cp_long_sequence: cp $cp failed, see $log" >&2; exit 1; }
  last=$(grep "step .*/" "$log" | tail -1)
  mem=$(sed 's/.*| mem \([^|]*\) |.*/\1/' <<<"$last")
  loss=$(sed 's/.*| loss \([^ ]*\) .*/\1/' <<<"$last")
  tps=$(sed 's/.*| \([^|]*tok\/s\) |.*/\1/' <<<"$last")
  printf '%-4s %-14s %-14s %-14s %-10s %s\n' "$cp" "$act" "$total" "$mem" "$loss" "$tps"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
