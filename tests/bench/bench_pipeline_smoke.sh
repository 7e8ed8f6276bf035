#!/usr/bin/env bash
# Smoke test of `loom bench pipeline` at 2 ranks (pp 2) on a tiny model: it must print the
# per-stage table for both recomputation modes asked for, with full recomputation holding less
# activation memory on stage 0 than none (stage 0 keeps 2 micro-batches in flight). Then the
# same job under --schedules 1f1b,zero_bubble: both sections and the side-by-side table, the
# simulated bubble of zero_bubble below 1f1b's (the measured one is printed, not judged).
# usage: bench_pipeline_smoke.sh LOOM MPIEXEC WORKDIR
set -uo pipefail
loom=$1 mpiexec=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
fail() { echo "bench_pipeline_smoke: $*" >&2; exit 1; }
"$loom" data prepare --input /usr/share/common-licenses --out "$work/data" --val-fraction 0.05 \
  >"$work/prepare.log" 2>&1 || fail "data prepare failed: $(tail -3 "$work/prepare.log")"
cat >"$work/job.textproto" <<JOB
model { family: GPT2 layers: 4 heads: 4 hidden: 64 vocab: 257 max_seq: 64 }
parallel { pp: 2 micro_batch_size: 2 global_batch_size: 8 }
optimizer { lr: 0.001 }
lr_schedule { total_steps: 10 }
data { train: "$work/data/train_*.bin" seq_len: 64 }
runtime { backend: CPU threads_per_rank: 1 }
JOB
"$mpiexec" -np 2 --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 \
  "$loom" bench pipeline --config "$work/job.textproto" --steps 1 --warmup 1 \
  --recompute none,full >"$work/out.log" 2>&1 || fail "bench failed: $(tail -20 "$work/out.log")"
grep -v " I " "$work/out.log"
for mode in none full; do
  grep -q "^recompute $mode: .* ms/step" "$work/out.log" || fail "no '$mode' section"
done
(( $(grep -cE "^ +[01] +[0-9.]+ +[0-9.]+ +[0-9.]+ +-?[0-9.]+ +[0-9.]+% +[0-9.]+% " "$work/out.log") == 4 )) \
  || fail "expected 2 stage rows per mode"
act() { grep -A3 "^recompute $1:" "$work/out.log" | grep -E "^ +0 " | awk '{print $(NF-2)}'; }
none=$(act none) full=$(act full)
awk -v a="$full" -v b="$none" 'BEGIN { exit !(a < b) }' \
  || fail "full recomputation should hold less on stage 0 ($full MiB) than none ($none MiB)"
"$mpiexec" -np 2 --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 \
  "$loom" bench pipeline --config "$work/job.textproto" --steps 1 --warmup 1 \
  --recompute none --schedules 1f1b,zero_bubble >"$work/zb.log" 2>&1 \
  || fail "bench --schedules failed: $(tail -20 "$work/zb.log")"
grep -v " I " "$work/zb.log"
grep -q "schedule zero_bubble" "$work/zb.log" || fail "no zero_bubble section"
sim() { grep -A4 "^side by side" "$work/zb.log" | grep -E "^  $1 " | awk '{print $4}' | tr -d %; }
one=$(sim 1f1b) zb=$(sim zero_bubble)
[[ -n "$one" && -n "$zb" ]] || fail "no side-by-side table"
awk -v a="$zb" -v b="$one" 'BEGIN { exit !(a < b) }' \
  || fail "zero_bubble's simulated bubble ($zb%) should be below 1f1b's ($one%)"
echo "bench_pipeline_smoke: ok (stage 0 activations: none $none MiB, full $full MiB;" \
  "simulated bubble 1f1b $one%, zero_bubble $zb%)"
