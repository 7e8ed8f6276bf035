#!/usr/bin/env bash
# The layout planner against published runs (docs/planner.md, "Checked against published runs"):
# for each published configuration, `loom plan` on the published machine prints its top layout
# and predicted MFU, and its best prediction at the published degrees (tp, pp, dp; the other
# knobs its own), beside the published MFU. No data and no GPU are needed.
#   tools/plan_published.sh [BUILD_DIR] [OUT_DIR]
# Published MFU as the sources report it; Megatron's "% of peak" counts the recomputed forward
# (hardware flops) and non-causal attention, so it is also given in loom's model flops
# (6N + 6*L*C*T per token, no recomputation): tokens/s from the reported TFLOP/s per GPU and
# Megatron's formula 96*B*s*l*h^2*(1 + s/(6h) + V/(16*l*h)), times loom's flops per token.
set -euo pipefail
build=${1:-build}
out=${2:-/tmp/loom_plan_published}
loom=$build/bin/loom
mkdir -p "$out"

# name | gpu preset | gpus | published tp pp dp recompute | published MFU (%, or =TFLOP/s per
# GPU as Megatron reports it) | model | batch, seq
runs=(
  "tinyllama-1.1b|a100-40gb|16|1 1 16 none|56|LLAMA 22 2048 32 4 5632 32000|1024 2048"
  "megatron-1.7b|a100-80gb|32|1 1 32 full|=137|GPT2 24 2304 24 24 9216 51200|512 2048"
  "megatron-18.4b|a100-80gb|256|8 1 32 full|=135|GPT2 40 6144 48 48 24576 51200|1024 2048"
  "megatron-145.6b|a100-80gb|1536|8 8 24 full|=148|GPT2 80 12288 96 96 49152 51200|2304 2048"
  "megatron-529.6b|a100-80gb|2520|8 35 9 full|=163|GPT2 105 20480 128 128 81920 51200|2520 2048"
  "megatron-1t|a100-80gb|3072|8 64 6 full|=163|GPT2 128 25600 160 160 102400 51200|3072 2048"
  "llama3-405b-8k|h100-sxm|8192|8 16 64 any|43|LLAMA 126 16384 128 8 53248 128256|2048 8192"
  "llama3-405b-16k|h100-sxm|16384|8 16 128 any|41|LLAMA 126 16384 128 8 53248 128256|2048 8192"
)
# The efficiency calibrated on the first Megatron row (its published MFU over the prediction at
# its published layout, times the preset's efficiency): the 2021 software, one free figure.
calibrated=
printf "| run | GPUs | published tp/pp/dp | published MFU | planner at published degrees | MFU | "
printf "MFU, efficiency calibrated | planner's top layout | MFU | memory |\n"
printf "|---|---|---|---|---|---|---|---|---|---|\n"
for r in "${runs[@]}"; do
  IFS='|' read -r name gpu gpus degrees pub model batch <<<"$r"
  read -r ptp ppp pdp prc <<<"$degrees"
  read -r family layers hidden heads kv ffn vocab <<<"$model"
  read -r global seq <<<"$batch"
  tied=$([[ $family == GPT2 ]] && echo true || echo false)
  cat > "$out/$name.textproto" <<JOB
model { family: $family layers: $layers hidden: $hidden heads: $heads kv_heads: $kv
        ffn_hidden: $ffn vocab: $vocab max_seq: $seq tied_embeddings: $tied }
parallel { micro_batch_size: 1 global_batch_size: $global }
optimizer { lr: 0.0001 }
lr_schedule { total_steps: 1000 }
data { seq_len: $seq }
precision: BF16
runtime { backend: CUDA }
JOB
  "$loom" plan --config "$out/$name.textproto" --gpus "$gpus" --gpu "$gpu" --top 1 \
    --csv "$out/$name.csv" > "$out/$name.txt"
  # loom's model flops per token, from any row: MFU * GPUs * peak / tokens per second.
  peak=$(grep -o "^# peak [0-9.e+]*" "$out/$name.txt" | awk '{print $3}')
  fpt=$(awk -F, -v g="$gpus" -v p="$peak" 'NR==2 { printf "%.6g", $20 * g * p * 1e12 / $19 }' \
    "$out/$name.csv")
  if [[ $pub == =* ]]; then
    # Megatron: reported TFLOP/s per GPU (hardware flops: recomputation, non-causal attention)
    # -> tokens/s per GPU by Megatron's formula -> MFU in loom's flops.
    pub=$(awk -v t="${pub#=}" -v l="$layers" -v h="$hidden" -v s="$seq" -v V="$vocab" \
      -v f="$fpt" -v p="$peak" 'BEGIN {
        per_token = 96 * l * h * h * (1 + s / (6 * h) + V / (16 * l * h));
        printf "%.1f%% (%.0f%% of peak as reported)", 100 * t * 1e12 / per_token * f / (p * 1e12),
               100 * t / p }')
  else
    pub="$pub%"
  fi
  # Best fitting row at the published degrees (and recomputation, where published; cp 1, a
  # schedule loom runs today).
  published_row() {
    awk -F, -v tp="$ptp" -v pp="$ppp" -v dp="$pdp" -v rc="$prc" \
      '$9==1 && $2==dp && $3==tp && $4==pp && $21==1 && $22!="zb" && (rc=="any" || $7==rc) {
         print; exit }' "$1"
  }
  at=$(published_row "$out/$name.csv")
  top=$(awk -F, '$1==1 { print; exit }' "$out/$name.csv")
  pub_mfu=$(grep -o "^[0-9.]*" <<<"$pub")
  cal=-
  if [[ $name == megatron-* && -n $at ]]; then
    if [[ -z $calibrated ]]; then
      eff=$(grep -o "assumed achievable: [0-9.]*" "$out/$name.txt" | awk '{print $3}')
      calibrated=$(awk -F, -v e="$eff" -v p="$pub_mfu" '{ printf "%.4f", e * p / 100 / $20 }' <<<"$at")
      echo "# Megatron efficiency calibrated on $name: $calibrated" >&2
    fi
    "$loom" plan --config "$out/$name.textproto" --gpus "$gpus" --gpu "$gpu" --top 0 \
      --efficiency "$calibrated" --max-cp 1 --zero-bubble=false --csv "$out/$name.cal.csv" >/dev/null
    cal=$(published_row "$out/$name.cal.csv" | awk -F, -v e="$calibrated" \
      '{ printf "%.1f%% (e = %s)", 100 * $20, e }')
  fi
  describe() {
    # Stages as runs of equal layer counts ("7,8*14,7"), as loom plan prints them.
    awk -F, '{ n = split($23, a, " "); split("", runs); out = ""
               for (i = 1; i <= n; i = j) {
                 for (j = i; j <= n && a[j] == a[i]; ++j) {}
                 out = out (out == "" ? "" : ",") a[i] (j - i > 1 ? "*" (j - i) : "") }
               printf "dp%s tp%s%s pp%s v%s mb%s %s%s%s [%s]", $2, $3, ($21 > 1 ? " cp" $21 : ""),
                 $4, $5, $6, $7, ($8 == 1 ? " zero1" : ""), ($22 == "zb" ? " zb" : ""), out }' <<<"$1"
  }
  mfu() { awk -F, '{ printf "%.1f%%", 100 * $20 }' <<<"$1"; }
  echo "$name: $(describe "$top") $(mfu "$top")" >&2
  printf "| %s | %s %s | %s | %s | %s | %s | %s | %s | %s | %s |\n" "$name" "$gpus" "$gpu" \
    "$ptp/$ppp/$pdp $prc" "$pub" "$( [[ -n $at ]] && describe "$at" || echo 'none fits')" \
    "$( [[ -n $at ]] && mfu "$at" || echo -)" "$cal" "$(describe "$top")" "$(mfu "$top")" \
    "$(awk -F, '{ printf "%.1f GiB", $10 / 1073741824 }' <<<"$top")"
done
