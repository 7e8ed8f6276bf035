#!/usr/bin/env bash
# Side by side: loom vs PyTorch eager on the CPU, the same GPT-2 124M training step
# (B=4, T=64, fp32, 2 threads each, run one after the other so they do not share cores).
# Prints both and the tokens/s ratio. Needs Debian's python3-torch (LOOM_SETUP_TORCH=1
# scripts/setup.sh installs it) and a built loom (scripts/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-2}"
STEPS="${STEPS:-3}"
LOOM="${LOOM:-build/bin/loom}"
[[ -x "$LOOM" ]] || { echo "bench_vs_torch: $LOOM not built (run scripts/build.sh)"; exit 1; }
PY=/usr/bin/python3
$PY -c "import torch" 2>/dev/null || { echo "bench_vs_torch: PyTorch missing (LOOM_SETUP_TORCH=1 scripts/setup.sh)"; exit 1; }

echo "== loom =="
loom_out=$(OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS "$LOOM" bench step \
  --config configs/gpt2_124m.textproto --set parallel.micro_batch_size=4 --set data.seq_len=64 \
  --set runtime.backend=CPU --set precision=FP32 --steps "$STEPS" --warmup 1)
echo "$loom_out"
echo "== PyTorch eager =="
torch_out=$(OMP_NUM_THREADS=$THREADS $PY tools/torch_gpt2_step.py --batch 4 --seq 64 \
  --threads "$THREADS" --steps "$STEPS" --warmup 1)
echo "$torch_out"
loom_tps=$(echo "$loom_out" | grep -o '[0-9.]* tokens/s' | head -1 | cut -d' ' -f1)
torch_tps=$(echo "$torch_out" | grep -o '[0-9.]* tokens/s' | head -1 | cut -d' ' -f1)
echo "== ratio =="
python3 -c "print(f'loom / torch tokens/s: {float($loom_tps) / float($torch_tps):.2f}x (target >= 4x)')"
