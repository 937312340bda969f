#!/usr/bin/env bash
# Runs one fuzz target for SECONDS (default 600) or RUNS executions (default 1,000,000),
# whichever comes first, with a corpus seeded from ../shared/golden, fuzz/seeds/TARGET and the
# committed corpus tests/data/fuzz/TARGET.
# Usage: fuzz/run.sh TARGET [SECONDS] [RUNS]   (needs `cargo install cargo-fuzz` and a nightly toolchain)
# One job, one process: the limits below turn hangs (10 s), OOM (4 GiB RSS) and single
# allocations over 2 GiB into findings under fuzz/artifacts/TARGET; the whole log goes to
# fuzz/logs/TARGET.log. NO_BUILD=1 runs the binary already built by `cargo +nightly fuzz build`;
# FUZZ_ARGS adds libFuzzer flags.
set -euo pipefail
cd "$(dirname "$0")/.."
target=$1; secs=${2:-600}; runs=${3:-1000000}; golden=../shared/golden
corpus=fuzz/corpus/$target; mkdir -p "$corpus" fuzz/logs "fuzz/artifacts/$target"
case $target in
  image_decode) seeds=("$golden/images" assets/shapes/examples) ;;
  spm_model) seeds=("$golden/tokenizer" assets/shapes/tokenizer.model assets/tiny/tokenizer.model) ;;
  checkpoint_file) seeds=("$golden/model" "$golden/checkpoints/hf" assets/shapes/itc.safetensors) ;;
  config_json) seeds=("$golden/checkpoints/hf" "$golden/checkpoints/sat/visualglm-tiny") ;;
  data_jsonl) seeds=("$golden/eval") ;;
  eval_retrieval) seeds=("$golden/eval/retrieval.json") ;;
  *) seeds=() ;;
esac
# Hand-written seeds (fuzz/seeds/TARGET) and the committed minimised corpus
# (tests/data/fuzz/TARGET), when there are any.
for d in fuzz/seeds/$target tests/data/fuzz/$target; do [[ -d $d ]] && seeds+=("$d"); done
for s in "${seeds[@]}"; do find "$s" -maxdepth 1 -type f -size -2M -exec cp -n {} "$corpus/" \; ; done
args=(-runs="$runs" -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -malloc_limit_mb=2048
  -max_len=1048576 -print_final_stats=1)
if [[ -f fuzz/dicts/$target.dict ]]; then args+=(-dict="fuzz/dicts/$target.dict"); fi
# More libFuzzer flags, e.g. FUZZ_ARGS="-fork=1 -ignore_crashes=1" to go on past a known crash.
# shellcheck disable=SC2206
args+=(${FUZZ_ARGS:-})
if [[ -n ${NO_BUILD:-} ]]; then
  # Run the binary `cargo +nightly fuzz build` left, so that edits others make to the crate
  # meanwhile do not trigger a rebuild before each run.
  fuzz/target/x86_64-unknown-linux-gnu/release/"$target" -artifact_prefix="fuzz/artifacts/$target/" \
    "${args[@]}" "$corpus" 2>&1 | tee "fuzz/logs/$target.log" | tail -40
else
  cargo +nightly fuzz run "$target" "$corpus" -- "${args[@]}" 2>&1 | tee "fuzz/logs/$target.log" | tail -40
fi
