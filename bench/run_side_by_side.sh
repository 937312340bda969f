#!/usr/bin/env bash
# Issue-7 targets measured side by side: the runtimes alternate within each round, so every
# ratio compares runs made minutes apart on the same machine state.
# Usage: bench/run_side_by_side.sh [ROUNDS] [GLM_LAYERS] [VIT_LAYERS]   (repository root)
# Needs: cargo build --release --bin visualglm; torch and chatglm-cpp (see bench/README.md).
# Output: a fresh dated folder bench/results/side_by_side/<UTC time>/round{N}.tsv (RESULTS=DIR
# writes there instead; committed result folders are never overwritten), then bench/compare.py
# prints the ratios. ONLY="f16 q4_0" runs just those groups (f16, q4_0, q8_0, q4k, f32).
# PYTHON=path/to/python runs the Python sides with that interpreter (default: python3).
set -euo pipefail
ROUNDS=${1:-2}
GLM=${2:-2}
VIT=${3:-4}
BIN=${BIN:-./target/release/visualglm}
export RAYON_NUM_THREADS=2
PYTHON=${PYTHON:-python3}
dir=${RESULTS:-bench/results/side_by_side/$(date -u +%Y-%m-%dT%H%M%SZ)}
mkdir -p "$dir"
echo "results: $dir" >&2
common=(--glm-layers "$GLM" --prompt-len 300 --decode-steps 16 --reps 2)
candle() { # label, bench flags...
  local label=$1; shift
  "$BIN" bench "$@" "${common[@]}" | sed "s/^[^\t]*\t/candle-$label\t/"
}
cpp() { taskset -c 0,1 "$PYTHON" bench/chatglm_cpp_bench.py --format "$1" "${common[@]}" 2>/dev/null | grep -P '\t'; }
ONLY=${ONLY:-f16 q4_0 q8_0 q4k f32}
want() { [[ " $ONLY " == *" $1 "* ]]; }
for r in $(seq 1 "$ROUNDS"); do
  out="$dir/round$r.tsv"
  : > "$out"
  {
    if want f16; then candle f16 --format f16 --no-vision; cpp f16; fi
    if want q4_0; then candle q4_0+emb --format q4_0 --embeddings --no-vision; cpp q4_0; fi
    if want q8_0; then candle q8_0+emb --format q8_0 --embeddings --no-vision; cpp q8_0; fi
    if want q4k; then candle q4k+emb --format q4k --embeddings --no-vision; fi
    if want f32; then
      candle f32 --format f32 --vit-layers "$VIT" --image-batch 1,8
      "$PYTHON" bench/torch_bench.py --format f32 --vit-layers "$VIT" --image-batch 1,8 --threads 2 \
        "${common[@]}" 2>/dev/null | grep -P '\t'
    fi
  } | tee -a "$out"
done
"$PYTHON" bench/compare.py "$dir"/round*.tsv
