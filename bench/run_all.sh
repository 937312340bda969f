#!/usr/bin/env bash
# All three runtimes of the issue-7 benchmark, one after the other, then the markdown table.
# Usage (repository root): BIN=target/release/visualglm bench/run_all.sh [GLM_LAYERS] [VIT_LAYERS]
# PYTHON=path/to/python runs the Python sides with that interpreter (default: python3).
set -euo pipefail
GLM=${1:-2}
VIT=${2:-4}
D=${RESULTS:-bench/results}
mkdir -p "$D"
OUT=$D/rust.tsv bench/run_rust.sh "$GLM" "$VIT"
OUT=$D/torch.tsv bench/run_torch.sh "$GLM" "$VIT"
OUT=$D/chatglm_cpp.tsv bench/run_chatglm_cpp.sh "$GLM"
"${PYTHON:-python3}" bench/summarize.py "$D/rust.tsv" "$D/torch.tsv" "$D/chatglm_cpp.tsv" | tee "$D/table.md"
