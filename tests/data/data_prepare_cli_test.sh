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
# Real tokenizers: LLaMA-3-style BPE (vocabulary 128256: 32-bit shards) on two threads, the
# tokenizer copied beside the shards; a SentencePiece model lands as tokenizer.model.
fixtures="$input/../fixtures/tokenizer"
"$loom" data prepare --input "$input" --out "$out" --overwrite --threads 2 \
  --tokenizer "$fixtures/llama3.tokenizer.json" | tee "$out.log"
grep -q '^tokenizer: bpe, vocab 128256 (32-bit ids in the shards)' "$out.log"
grep -q '^encoded .* MB/s' "$out.log"
cmp "$fixtures/llama3.tokenizer.json" "$out/tokenizer.json"
if "$loom" data prepare --input "$input" --out "$out" --overwrite \
     --tokenizer "$input/no_such_tokenizer.json" 2>"$out.err"; then
  echo "FAIL: missing tokenizer accepted"; exit 1
fi
grep -q "tokenizer: .*no_such_tokenizer.json" "$out.err"
if "$loom" data prepare --input "$input" --out "$out" --overwrite \
     --tokenizer "$fixtures/sp.model" >"$out.log" 2>"$out.err"; then
  test -s "$out/tokenizer.model"
  test ! -e "$out/tokenizer.json"
  grep -q '^tokenizer: sentencepiece, vocab 800 (16-bit ids' "$out.log"
else
  grep -q "libsentencepiece" "$out.err"  # a build without the library says so
fi
echo "data_prepare_cli: ok"
