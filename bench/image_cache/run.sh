#!/usr/bin/env bash
# A repeated image with and without the image-embedding cache, at the released image encoder's
# size: a model with the real ViT-g/14 (39 layers, 1408 wide) and Q-Former (12 layers, 768),
# random weights, and the shipped shapes model's tiny language model. `batch` captions three
# copies of one image (different file names, so `batch` does not merge them), one per chunk:
# with the cache the encoder runs once, without it three times.
# Usage: bench/image_cache/run.sh [BIN] [WORKDIR]   (BIN default: target/release/visualglm)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${1:-$root/target/release/visualglm}
work=${2:-/tmp/visualglm-image-cache-bench}
mkdir -p "$work"
if [ ! -f "$work/model/model.safetensors" ]; then
  python3 - "$root/assets/shapes/config.json" "$work/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["eva_config"].update(hidden_size=1408, num_layers=39, num_attention_heads=16,
                       inner_hidden_size=6144, image_size=[224, 224], patch_size=14)
c["qformer_config"].update(hidden_size=768, num_layers=12, num_attention_heads=12,
                           cross_attn_hidden_size=1408, is_decoder=[i % 2 == 0 for i in range(12)])
json.dump(c, open(sys.argv[2], "w"), indent=1)
PY
  "$bin" init --config "$work/config.json" --tokenizer "$root/assets/shapes/tokenizer.model" \
    --out "$work/model"
fi
for i in 1 2 3; do cp "$root/assets/shapes/examples/shapes-0.png" "$work/copy-$i.png"; done
printf '%s\n' "$work"/copy-{1,2,3}.png > "$work/list.txt"
for mb in 256 0; do
  rm -f "$work/out-$mb.jsonl" "$work/out-$mb.jsonl.meta.json"
  echo "== --image-cache-mb $mb"
  "$bin" -v batch "$work/list.txt" --out "$work/out-$mb.jsonl" -m "$work/model" \
    --batch-size 1 --max-new-tokens 4 --image-cache-mb "$mb" 2>&1 | grep -E "encode|image cache|captioned"
done
