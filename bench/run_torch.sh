#!/usr/bin/env bash
# PyTorch eager (CPU, 2 threads) side of the issue-7 benchmark, one process per format.
# Usage: bench/run_torch.sh [GLM_LAYERS] [VIT_LAYERS]   (needs `pip install torch`)
# Output: bench/results/torch.tsv. PYTHON=path/to/python picks the interpreter (default: python3).
set -euo pipefail
GLM=${1:-2}
VIT=${2:-4}
mkdir -p bench/results
out=${OUT:-bench/results/torch.tsv}
: > "$out"
for fmt in f32 bf16 int8dyn; do
  "${PYTHON:-python3}" bench/torch_bench.py --format "$fmt" --glm-layers "$GLM" --vit-layers "$VIT" \
    --prompt-len 300 --decode-steps 16 --image-batch 1,8 --reps 2 --threads 2 2>/dev/null | tee -a "$out"
done
