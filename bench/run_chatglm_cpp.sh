#!/usr/bin/env bash
# chatglm.cpp side of the issue-7 benchmark (language model only), pinned to 2 cores.
# Setup: CMAKE_POLICY_VERSION_MINIMUM=3.5 pip install chatglm-cpp==0.4.2 numpy tabulate tqdm torch
# Usage: bench/run_chatglm_cpp.sh [GLM_LAYERS]   Output: bench/results/chatglm_cpp.tsv
# PYTHON=path/to/python picks the interpreter (default: python3).
set -euo pipefail
GLM=${1:-2}
mkdir -p bench/results
out=${OUT:-bench/results/chatglm_cpp.tsv}
: > "$out"
for fmt in f32 f16 q8_0 q4_0; do
  taskset -c 0,1 "${PYTHON:-python3}" bench/chatglm_cpp_bench.py --format "$fmt" --glm-layers "$GLM" \
    --prompt-len 300 --decode-steps 16 --reps 2 2>/dev/null | grep -P '\t' | tee -a "$out"
done
