#!/usr/bin/env bash
# Data-parallel weak scaling of `loom train` on the CPU, one thread per rank
# (benchmarks/dp_scaling.textproto: GPT-2 4 x 256, 3.3M parameters, micro-batch 4 x 128 per rank).
#
# Each round runs, one after another, the same 40 steps as
#   one   1 rank                                  (512 tokens a step)
#   dp2   2 data-parallel ranks, global batch 8   (twice the tokens, the gradients all-reduced)
#   pair  two independent 1-rank processes started together: twice the tokens with no
#         communication at all, the ceiling of dp2 on this machine (shared cores, caches,
#         memory bandwidth)
# and times each whole process (start-up included) with the shell's clock: tokens/s = tokens /
# wall. Printed: every run, the medians over the rounds, dp2/one and pair/one, the steady-state
# tokens/s from the logs (last logging interval), the data-parallel communication per step from
# dp2's log (exposed and in flight) and, for scale, the time of one blocking all-reduce of the
# gradient bytes (`loom bench comm`) against the 1-rank step.
#
#   benchmarks/dp_scaling.sh [ROUNDS]          (default 5; about 30 s a round on 2 quiet cores)
# Environment: LOOM (default build/bin/loom), BUCKET_MB (parallel.grad_bucket_mb, default 2),
# BIND (mpirun --bind-to, default none), LOOM_DP_PROGRESS_US (the gradient reducer's progress
# thread period, 0 = off; default 1000), OUT (logs, default /tmp/loom_dp_scaling).
# Numbers from a machine shared with other work are noise: the script prints the load average
# before and after; quote it with the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-5}"
LOOM="${LOOM:-build/bin/loom}"
BUCKET_MB="${BUCKET_MB:-2}"
BIND="${BIND:-none}"
OUT="${OUT:-/tmp/loom_dp_scaling}"
CONFIG=benchmarks/dp_scaling.textproto
STEPS=40
TOKENS_ONE=$((STEPS * 4 * 128))
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
[[ -x "$LOOM" ]] || { echo "dp_scaling: $LOOM not built (scripts/build.sh --target loom)" >&2; exit 1; }
if [[ ! -f data/demo/tokenizer.json ]]; then
  "$LOOM" data prepare --input /usr/share/common-licenses --out data/demo --val-fraction 0.05
fi
mkdir -p "$OUT"
rm -f "$OUT"/*.log

train() {  # train RANKS GLOBAL_BATCH LOG
  mpirun -np "$1" --oversubscribe --bind-to "$BIND" "$LOOM" train --config "$CONFIG" \
    --set "parallel.global_batch_size=$2" --set "parallel.grad_bucket_mb=$BUCKET_MB" \
    --set "lr_schedule.total_steps=$STEPS" >>"$3" 2>&1
}
now() { date +%s.%N; }
timed() {  # timed NAME CMD...: prints the wall seconds of CMD
  local t0 t1
  t0=$(now)
  "${@:2}" || { echo "dp_scaling: $1 failed, see $OUT" >&2; exit 1; }
  t1=$(now)
  echo "$t1 - $t0" | bc -l
}
pair() {
  train 1 4 "$OUT/pair_a.log" &
  local a=$!
  train 1 4 "$OUT/pair_b.log" &
  local b=$!
  wait "$a" && wait "$b"
}
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
train 1 4 "$OUT/warmup.log"  # page cache, the cached sgemm peak
declare -a W_ONE W_DP2 W_PAIR
for ((r = 1; r <= ROUNDS; ++r)); do
  W_ONE[r]=$(timed one train 1 4 "$OUT/one.log")
  W_DP2[r]=$(timed dp2 train 2 8 "$OUT/dp2.log")
  W_PAIR[r]=$(timed pair pair)
  printf 'round %d: wall one %.2f s, dp2 %.2f s, pair %.2f s -> dp2/one %.3fx, pair/one %.3fx\n' \
    "$r" "${W_ONE[r]}" "${W_DP2[r]}" "${W_PAIR[r]}" \
    "$(echo "2 * ${W_ONE[r]} / ${W_DP2[r]}" | bc -l)" "$(echo "2 * ${W_ONE[r]} / ${W_PAIR[r]}" | bc -l)"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

m_one=$(printf '%s\n' "${W_ONE[@]}" | median)
m_dp2=$(printf '%s\n' "${W_DP2[@]}" | median)
m_pair=$(printf '%s\n' "${W_PAIR[@]}" | median)
printf '\nwhole process, median of %d rounds (tokens / wall):\n' "$ROUNDS"
printf '  1 rank      %6.2f s  %6.0f tokens/s\n' "$m_one" "$(echo "$TOKENS_ONE / $m_one" | bc -l)"
printf '  dp 2        %6.2f s  %6.0f tokens/s  %.3fx\n' "$m_dp2" \
  "$(echo "2 * $TOKENS_ONE / $m_dp2" | bc -l)" "$(echo "2 * $m_one / $m_dp2" | bc -l)"
printf '  2 x 1 rank  %6.2f s  %6.0f tokens/s  %.3fx  (independent processes: the ceiling)\n' \
  "$m_pair" "$(echo "2 * $TOKENS_ONE / $m_pair" | bc -l)" "$(echo "2 * $m_one / $m_pair" | bc -l)"

# Steady state from the logs: tokens/s of the last logging interval of each run (rank 0).
last_tps() {  # FILE: one figure per run
  awk '/step [0-9]+\/[0-9]+ .*tok\/s/ {
         for (i = 1; i <= NF; ++i) if ($(i + 1) == "tok/s") {
           v = $i; if (v ~ /k$/) { sub(/k$/, "", v); v *= 1000 } }
         if ($0 ~ "step '"$STEPS"'/") print v }' "$1"
}
s_one=$(last_tps "$OUT/one.log" | median)
s_dp2=$(last_tps "$OUT/dp2.log" | median)
s_pa=$(last_tps "$OUT/pair_a.log" | median)
s_pb=$(last_tps "$OUT/pair_b.log" | median)
printf '\nsteady state from the logs (median of the last interval): 1 rank %.0f, dp 2 %.0f tokens/s (%.3fx), 2 x 1 rank %.0f + %.0f (%.3fx)\n' \
  "$s_one" "$s_dp2" "$(echo "$s_dp2 / $s_one" | bc -l)" "$s_pa" "$s_pb" \
  "$(echo "($s_pa + $s_pb) / $s_one" | bc -l)"

# Communication per step from dp2's log, intervals after the first (start-up).
awk '/data-parallel .* exposed of/ {
       n += 1; if (n % 4 == 1) next
       for (i = 1; i <= NF; ++i) {
         if ($i == "data-parallel") e += $(i + 1)
         if ($i == "exposed") f += $(i + 2)
         if ($(i + 1) == "of" && $(i + 2) == "the") { p = $i; gsub(/[(%]/, "", p); s += p }
       }
       k += 1 }
     END { if (k) printf "dp 2 data-parallel communication per step: %.1f ms exposed of %.1f ms in flight (%.1f%% of the step), mean of %d intervals\n", e / k, f / k, s / k, k }' \
  "$OUT/dp2.log"
# The reduction alone, blocking, for scale: one all-reduce of the gradient bytes at 2 ranks.
bytes=$(awk '/parameters, on/ { for (i = 1; i <= NF; ++i) if ($(i + 1) == "parameters,") print $i * 4; exit }' "$OUT/one.log")
mpirun -np 2 --oversubscribe --bind-to "$BIND" "$LOOM" bench comm --op all_reduce -b "$bytes" -e "$bytes" \
  --iters 10 >"$OUT/comm.log" 2>&1
us=$(awk -v b="$bytes" '$1 == b { print $5; exit }' "$OUT/comm.log")
step_ms=$(echo "4 * 128 / $s_one * 1000" | bc -l)
printf 'one blocking all-reduce of the %d gradient bytes: %.1f ms = %.1f%% of the 1-rank step (%.1f ms)\n' \
  "$bytes" "$(echo "$us / 1000" | bc -l)" "$(echo "$us / 10 / $step_ms" | bc -l)" "$step_ms"
echo "logs in $OUT"
