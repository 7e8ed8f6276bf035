#!/usr/bin/env bash
# `loom bench scaling` end to end: a strong and a weak sweep over 1 and 2 ranks of a tiny job
# write a table, CSV (one row per point), JSON and an SVG that parse; a bad --mode is refused.
#   bench_scaling_test.sh LOOM SOURCE_DIR OUT_DIR
set -uo pipefail
loom=$1 src=$2 out=$3
rm -rf "$out" && mkdir -p "$out"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
fail() { echo "FAIL: $*"; exit 1; }
"$loom" data prepare --input "$src/launcher" --out "$out/data" --val-fraction 0 >/dev/null \
  || fail "data prepare"
cat > "$out/job.textproto" <<JOB
model { family: GPT2 layers: 2 heads: 2 hidden: 32 vocab: 257 max_seq: 32 }
parallel { micro_batch_size: 2 global_batch_size: 4 }
optimizer { lr: 0.001 }
lr_schedule { total_steps: 100 }
data { train: "$out/data/train_*.bin" seq_len: 32 }
runtime { backend: CPU seed: 1 }
JOB
for mode in strong weak; do
  dir=$out/$mode
  "$loom" bench scaling --config "$out/job.textproto" --ranks 1,2 --mode $mode --steps 4 \
    --warmup 1 --out "$dir" >"$dir.txt" 2>&1 || { cat "$dir.txt"; fail "$mode sweep"; }
  cat "$dir.txt"
  grep -Eq "^ +2  dp2 tp1 pp1 " "$dir.txt" || fail "$mode: no table row for 2 ranks"
  (( $(wc -l < "$dir/scaling.csv") == 3 )) || fail "$mode: scaling.csv has not 2 rows"
  want=$([[ $mode == strong ]] && echo 4 || echo 8)
  [[ $(sed -n 3p "$dir/scaling.csv" | cut -d, -f5) == "$want" ]] \
    || fail "$mode: the 2-rank point's global batch is not $want"
  python3 - "$dir" <<'PY' || fail "$mode: JSON or SVG does not parse"
import json, sys, xml.etree.ElementTree as ET
d = sys.argv[1]
j = json.load(open(d + "/scaling.json"))
assert [p["ranks"] for p in j["points"]] == [1, 2], j
assert j["points"][0]["efficiency"] == 1
svg = ET.parse(d + "/scaling.svg").getroot()
assert len(svg.findall("{http://www.w3.org/2000/svg}polyline")) == 4
PY
done
"$loom" bench scaling --config "$out/job.textproto" --ranks 1,2 --mode medium >"$out/bad.txt" 2>&1
(( $? != 0 )) && grep -q "mode expects weak or strong" "$out/bad.txt" || fail "--mode medium accepted"
echo PASS
