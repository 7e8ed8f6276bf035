#!/usr/bin/env bash
# Quickstart: set up, build, and (once training lands) train a small GPT-2 on demo text.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh --target loom
build/bin/loom --help
