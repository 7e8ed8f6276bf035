#!/usr/bin/env bash
# Our event files read back by the real TensorBoard: FIXTURE PYTHON READ_SCRIPT OUT_DIR.
# Exits 77 (ctest: skipped) when the tensorboard package is missing.
set -euo pipefail
fixture=$1 python=$2 reader=$3 out=$4
if ! "$python" -c "import tensorboard" 2>/dev/null; then
  echo "SKIP: python package tensorboard is not installed (pip install tensorboard)"
  exit 77
fi
rm -rf "$out"
"$fixture" "$out"
# The values tensorboard_fixture.cc writes.
"$python" "$reader" "$out" --expect train/loss@1=3.5 --expect train/loss@2=3.25 \
  --expect train/loss@3=0.1 --expect train/lr@3=0.0003 --expect val/loss@3=2.75
