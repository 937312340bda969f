#!/usr/bin/env bash
# Runs one fuzz target for SECONDS (default 600) with a corpus seeded from ../shared/golden.
# Usage: fuzz/run.sh TARGET [SECONDS]      (needs `cargo install cargo-fuzz` and a nightly toolchain)
set -euo pipefail
cd "$(dirname "$0")/.."
target=$1; secs=${2:-600}; golden=../shared/golden
corpus=fuzz/corpus/$target; mkdir -p "$corpus"
case $target in
  image_decode) seeds=("$golden/images") ;;
  spm_model) seeds=("$golden/tokenizer") ;;
  checkpoint_file) seeds=("$golden/model" "$golden/checkpoints/hf") ;;
  config_json) seeds=("$golden/checkpoints/hf" "$golden/checkpoints/sat/visualglm-tiny") ;;
  data_jsonl) seeds=("$golden/eval") ;;
  *) seeds=() ;;
esac
for s in "${seeds[@]}"; do find "$s" -maxdepth 1 -type f -size -2M -exec cp -n {} "$corpus/" \; ; done
cargo +nightly fuzz run "$target" "$corpus" -- -max_total_time="$secs" -rss_limit_mb=4096 -max_len=1048576 2>&1 | tail -20
