#!/usr/bin/env bash
# `loom data prepare` through the CLI: LOOM INPUT_DIR OUT_DIR.
set -euo pipefail
loom=$1 input=$2 out=$3
rm -rf "$out"
"$loom" data prepare --input "$input" --out "$out" --val-fraction 0.25 --shard-tokens 4096 \
  | tee "$out.log"
grep -q '^documents: ' "$out.log"
test -s "$out/train_000000.bin"
test -s "$out/val_000000.bin"
grep -q '"vocab_size":257' "$out/tokenizer.json"
# A second run into the same directory must refuse, naming the directory ...
if "$loom" data prepare --input "$input" --out "$out" 2>"$out.err"; then
  echo "FAIL: second run without --overwrite succeeded"; exit 1
fi
grep -q "already holds shards" "$out.err"
# ... and a missing input is named.
if "$loom" data prepare --input "$input/no_such_file" --out "$out" --overwrite 2>"$out.err"; then
  echo "FAIL: missing input accepted"; exit 1
fi
grep -q "no_such_file does not exist" "$out.err"
"$loom" data prepare --input "$input" --out "$out" --overwrite --shard-tokens 4096 >/dev/null
echo "data_prepare_cli: ok"
