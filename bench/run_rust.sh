#!/usr/bin/env bash
# candle side of the issue-7 benchmark: one fresh process per weight format so peak RSS is
# per format. Usage: bench/run_rust.sh [GLM_LAYERS] [VIT_LAYERS]   (from the repository root)
# Needs `cargo build --release --bin visualglm` first (or BIN=path/to/visualglm). Output: bench/results/rust.tsv
set -euo pipefail
GLM=${1:-2}
VIT=${2:-4}
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-2}
mkdir -p bench/results
out=${OUT:-bench/results/rust.tsv}
: > "$out"
for fmt in f32 f16 q8_0 q4_0 q4k; do
  "${BIN:-./target/release/visualglm}" bench --format "$fmt" --glm-layers "$GLM" --vit-layers "$VIT" \
    --prompt-len 300 --decode-steps 16 --image-batch 1,8 --reps 2 | tee -a "$out"
done
