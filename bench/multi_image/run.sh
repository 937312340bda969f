#!/usr/bin/env bash
# The two-image task of docs/multi-image.md: "Which image has more shapes?" (one image holds one
# shape, the other two; chance 50 %). Exact match on 300 held-out pairs of the shipped shapes
# model (which saw one image per prompt), then of a 300-step fine-tune of its language model and
# glm_proj on 2 700 pairs, then of the fine-tune with every pair's images swapped (the answers
# must follow the images, not the order).
# Usage: bench/multi_image/run.sh [BIN] [WORKDIR]   (BIN default: target/release/visualglm)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$root/target/release/visualglm}
work=${2:-/tmp/visualglm-multi-image}
mkdir -p "$work" && cd "$work"
"$bin" data synth --pairs --out data --count 3000 --val-fraction 0.1 --size 112 --seed 2
python3 - <<'PY'
import json
v = json.load(open("data/val.json"))
flip = {"the first": "the second", "the second": "the first"}
swapped = [{"img": r["img"][::-1], "prompt": r["prompt"], "label": flip[r["label"]]} for r in v]
json.dump(swapped, open("data/val_swapped.json", "w"), indent=1)
PY
cat > run.toml <<TOML
data = "data/train.json"
val_data = "data/val.json"
model = "$root/assets/shapes"
out = "run"
trainable = ["transformer.", "lm_head.", "image_encoder.glm_proj"]
steps = 300
batch_size = 16
lr = 1e-3
warmup_steps = 20
min_lr_ratio = 0.1
weight_decay = 0.01
clip = 1.0
save_every = 100000
val_every = 100
max_source_length = 110
max_target_length = 12
english = true
TOML
score() { "$bin" eval captions --model "$1" --data "$2" --predictions-out "$3" --batch-size 32 \
  2>/dev/null | grep exact_match; cut -d'"' -f4 "$3" | sort | uniq -c | sort -rn | head -3; }
echo "== before: the shipped shapes model"
score "$root/assets/shapes" data/val.json before.jsonl
echo "== fine-tune"
rm -rf run
start=$(date +%s)
"$bin" train --config run.toml 2>&1 | grep -E "val_loss|updates"
echo "fine-tune wall time: $(( $(date +%s) - start )) s"
echo "== after"
score run/model data/val.json after.jsonl
echo "== after, each pair's images swapped (labels flipped)"
score run/model data/val_swapped.json swapped.jsonl
