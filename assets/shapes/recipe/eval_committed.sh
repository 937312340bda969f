#!/usr/bin/env bash
# Evaluates the committed model (assets/shapes) on the recipe's held-out split, as train.sh's
# last two steps do, and writes the reports with their provenance to assets/shapes/eval/.
# Usage: assets/shapes/recipe/eval_committed.sh [WORK_DIR]   env: VISUALGLM (binary)
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
work=${1:-${TMPDIR:-/tmp}/shapes-eval}
bin=${VISUALGLM:-visualglm}
out="$root/assets/shapes/eval"
mkdir -p "$work" "$out"
cd "$work"
# The same data as train.sh: 8000 scenes, seed 1, 10 % held out (800 scenes never trained on).
[ -f data/val.json ] || "$bin" data synth --out data --count 8000 --size 112 --seed 1
"$bin" eval captions --model "$root/assets/shapes" --data data/val.json --english --greedy \
    --repetition-penalty 1.0 --predictions-out "$out/val_predictions.jsonl" \
    --out "$out/val_captions.json"
"$bin" eval retrieval --model "$root/assets/shapes" --data data/val.json \
    --out "$out/val_retrieval.json"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git -C "$root" rev-parse HEAD)$(git -C "$root" diff --quiet -- assets src || echo ' (tree modified)')"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p')"
  echo "vector isa: $(grep -o -w 'avx2\|avx512f\|avx512_vnni\|fma\|f16c' /proc/cpuinfo | sort -u | tr '\n' ' ')"
  echo "binary: $bin"
  echo "command: assets/shapes/recipe/eval_committed.sh $work"
  echo "data: visualglm data synth --out data --count 8000 --size 112 --seed 1 (val.json: $(grep -c '"img"' data/val.json || true) records)"
} > "$out/run.txt"
cat "$out/run.txt"
