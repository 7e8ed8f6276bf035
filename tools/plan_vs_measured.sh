#!/usr/bin/env bash
# The layout planner against measurement on the CPU: for several layouts of one small job, the
# memory `loom plan` predicts per rank (memory_bytes of its CSV, without the reserve) beside the
# allocator peak `loom train` reports in metrics.jsonl (peak_bytes, rank 0), and the predicted
# step time beside the measured one (tokens/s of the last logged step).
#   tools/plan_vs_measured.sh [BUILD_DIR] [OUT_DIR]
# --gpu-tflops is calibrated on the first layout (1 rank): the rate that makes its predicted
# compute time its measured step time, so the times compare the model's communication and
# layout terms, not the sgemm peak against a tiny model's GEMMs (it is given as the peak too:
# efficiency 1). Even stages only, so each row of the CSV is one trained layout. Every rank runs
# one thread; the times mean little with more ranks than free cores.
set -euo pipefail
build=${1:-build}
out=${2:-/tmp/loom_plan_check}
loom=$build/bin/loom
src=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$out" && mkdir -p "$out"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
"$loom" data prepare --input "$src/launcher" --out "$out/data" --val-fraction 0 >/dev/null
cat > "$out/job.textproto" <<JOB
model { family: GPT2 layers: 4 heads: 4 hidden: 128 vocab: 257 max_seq: 64 }
parallel { micro_batch_size: 1 global_batch_size: 16 }
optimizer { lr: 0.001 }
lr_schedule { total_steps: 8 }
data { train: "$out/data/train_*.bin" seq_len: 64 }
logging { tensorboard: false }
runtime { backend: CPU seed: 1 threads_per_rank: 1 }
JOB
# ranks | dp tp micro zero1 cp pp schedule (sequence parallelism on with tp > 1, as the planner
# assumes; the last three default to 1 1 1f1b)
layouts=(
  "1 1 1 4 0" "1 1 1 16 0" "2 2 1 4 0" "2 2 1 8 1" "2 1 2 4 0" "2 1 2 16 0" "4 2 2 4 0" "4 4 1 2 1"
  "2 1 1 4 0 2" "4 1 2 4 0 2" "4 2 1 4 1 2" "2 1 1 4 0 1 2 1f1b" "2 1 1 4 0 1 2 zb"
)
printf "%-24s %12s %12s %7s | %10s %10s\n" layout "plan MiB" "peak MiB" "error" "plan ms" "measured ms"
for l in "${layouts[@]}"; do
  read -r n dp tp micro zero cp pp sched <<<"$l"
  cp=${cp:-1} pp=${pp:-1} sched=${sched:-1f1b}
  sets=(--set "parallel.tp=$tp" --set "parallel.micro_batch_size=$micro" --set "parallel.cp=$cp"
        --set "parallel.pp=$pp"
        --set "parallel.schedule=$([[ $sched == zb ]] && echo ZERO_BUBBLE || echo ONE_F_ONE_B)"
        --set "parallel.sequence_parallel=$([[ $tp -gt 1 ]] && echo true || echo false)"
        --set "parallel.distributed_optimizer=$([[ $zero == 1 ]] && echo true || echo false)")
  run=$out/run_${n}_${dp}_${tp}_${micro}_${zero}_${cp}_${pp}_${sched}
  mpirun -np "$n" --oversubscribe --bind-to none -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS \
    "$loom" train --config "$out/job.textproto" "${sets[@]}" --set "logging.run_dir=$run" \
    >"$run.log" 2>&1 || { echo "train failed: $run.log"; tail -5 "$run.log"; exit 1; }
  peak=$(tail -1 "$run/metrics.jsonl" | sed -E 's/.*"peak_bytes":([0-9]+).*/\1/')
  tps=$(tail -1 "$run/metrics.jsonl" | sed -E 's/.*"tokens_per_s":([0-9.e+]+).*/\1/')
  if [[ -z ${tflops:-} ]]; then
    # flop/token from the log, times the tokens of a step, over the measured step time.
    fpt=$(grep -o "= [0-9.e+]* flop/token" "$run.log" | head -1 | awk '{print $2}')
    tflops=$(awk -v f="$fpt" -v t="$tps" 'BEGIN { printf "%.6g", f * t / 1e12 }')
    echo "# calibrated --gpu-tflops $tflops (1 rank, measured)"
  fi
  "$loom" plan --config "$out/job.textproto" "${sets[@]}" --gpus "$n" --gpus-per-node "$n" \
    --gpu-tflops "$tflops" --peak-tflops "$tflops" --gpu-memory-gib 64 --intra-node-gbps 40 \
    --inter-node-gbps 40 --uneven-stages=false --csv "$run.plan.csv" >/dev/null
  row=$(awk -F, -v dp="$dp" -v tp="$tp" -v mb="$micro" -v z="$zero" -v cp="$cp" -v pp="$pp" \
    -v s="$sched" '$2==dp && $3==tp && $4==pp && $5==1 && $6==mb && $7=="none" && $8==z &&
                   $21==cp && $22==s' "$run.plan.csv")
  [[ -n $row ]] || { echo "no plan row for $l"; exit 1; }
  mem=$(cut -d, -f10 <<<"$row")
  step=$(cut -d, -f13 <<<"$row")
  name="np$n dp$dp tp$tp"
  if [[ $cp -gt 1 ]]; then name+=" cp$cp"; fi
  if [[ $pp -gt 1 ]]; then name+=" pp$pp $sched"; fi
  awk -v name="$name mb$micro$([[ $zero == 1 ]] && echo ' zero1')" -v m="$mem" -v p="$peak" \
      -v s="$step" -v t="$tps" 'BEGIN {
    printf "%-24s %12.2f %12.2f %+6.1f%% | %10.1f %10.1f\n", name, m / 1048576, p / 1048576,
           100 * (m - p) / p, s * 1e3, 16 * 64 / t * 1e3 }'
done
