#!/usr/bin/env bash
# `loom export --format hf` read back by the transformers library (tools/check_hf_export.py):
# each exported directory loads with AutoModelForCausalLM as the architecture and dtype it
# claims, and its loss on a fixture's batch equals the loss of an independent reference:
#   - the PyTorch golden models (tests/fixtures/model: GPT-2 from its llm.c file, LLaMA from its
#     loom file, both padded to 128 rows) exported as f32: the golden loss;
#   - a job whose model.init_from is transformers' own GPT-2 directory (default padding),
#     exported as bf16 in shards: the loss transformers computed for its bf16 directory;
#   - transformers' LLaMA (f32) converted to f16 shards: the loss of its f16 directory.
# Exits 77 (ctest: skipped) when no python3 given has torch and transformers.
# Usage: hf_export_test.sh LOOM SOURCE_DIR OUT_DIR PYTHON...
set -uo pipefail
loom=$1 src=$2 out=$3
shift 3
py=""
for p in "$@" /usr/bin/python3; do
  if "$p" -c "import torch, transformers" 2>/dev/null; then py=$p; break; fi
done
[[ -n "$py" ]] || { echo "skipped: no python3 with torch and transformers"; exit 77; }
rm -rf "$out" && mkdir -p "$out"
fail() { echo "FAIL: $*"; exit 1; }
cases=()
check() { cases+=("$1,$2,$3,$4"); }  # DIR FIXTURE ARCH DTYPE, checked at the end in one python
fx=$src/tests/fixtures

"$loom" export --format hf --from "$fx/model/gpt2.llmc.bin" --out "$out/gpt2" >/dev/null \
  || fail "export gpt2"
check "$out/gpt2" "$fx/model/gpt2.bin" GPT2LMHeadModel float32
"$loom" export --format hf --from "$fx/model/llama.loom.bin" --out "$out/llama" >/dev/null \
  || fail "export llama"
check "$out/llama" "$fx/model/llama.bin" LlamaForCausalLM float32

cat >"$out/job.textproto" <<JOB
model { family: GPT2 layers: 2 heads: 4 hidden: 32 vocab: 64 max_seq: 16
        init_from: "$fx/hf/gpt2_f32" }
JOB
"$loom" export --format hf --config "$out/job.textproto" --dtype bf16 --max-shard-mb 0.02 \
  --out "$out/gpt2_bf16" >/dev/null || fail "export the job's model"
[[ -f "$out/gpt2_bf16/model.safetensors.index.json" ]] || fail "no shards index"
check "$out/gpt2_bf16" "$fx/hf/gpt2_bf16_sharded.bin" GPT2LMHeadModel bfloat16

"$loom" export --format hf --from "$fx/hf/llama_f32" --dtype f16 --max-shard-mb 0.02 \
  --out "$out/llama_f16" >/dev/null || fail "export llama f16"
check "$out/llama_f16" "$fx/hf/llama_f16_sharded.bin" LlamaForCausalLM float16
"$py" "$src/tools/check_hf_export.py" "${cases[@]}" 2>"$out/py.err" \
  || { tail -20 "$out/py.err"; fail "transformers does not read loom's exports as it should"; }
echo "hf_export: transformers reads loom's exports with the reference losses"
