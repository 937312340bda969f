#!/usr/bin/env bash
# Trains the tiny "shapes" VisualGLM from scratch on CPU, as committed in assets/shapes:
#   synthetic data -> tokenizer -> random init -> stage 1 (language model on the captions)
#   -> stage 2 (language model frozen; ViT + Q-Former + glm_proj + LoRA, AR + ITC)
#   -> evaluation on the held-out split (caption exact match, image->text Recall@1).
# Usage: assets/shapes/recipe/train.sh WORK_DIR
#   env: VISUALGLM (binary), COUNT (scenes), STEPS1, STEPS2, ITC (λ, default 0.04, ramped up from
#        0 over stage 2), ITC_QUEUE (earlier captions ranked as extra negatives, default 512),
#        ITC_DETACH=true for the AR-only baseline (the ITC heads then train as a probe on detached
#        image features), BASE_QUANTIZE (e.g. q8_0: stage 2 holds the frozen ChatGLM linears in
#        that GGML type, QLoRA-style; default: f32)
set -euo pipefail
recipe=$(cd "$(dirname "$0")" && pwd)
work=${1:?usage: train.sh WORK_DIR}
bin=${VISUALGLM:-visualglm}
count=${COUNT:-8000}; steps1=${STEPS1:-200}; steps2=${STEPS2:-1600}; itc=${ITC:-0.04}
queue=${ITC_QUEUE:-512}
detach=${ITC_DETACH:-false}
base_quantize=${BASE_QUANTIZE:+base_quantize = \"$BASE_QUANTIZE\"}
mkdir -p "$work" && cd "$work"
"$bin" data synth --out data --count "$count" --size 112 --seed 1
"$bin" tokenizer train --data data/train.json --vocab-size 150 --out tokenizer/tokenizer.model
"$bin" init --config "$recipe/config.json" --tokenizer tokenizer/tokenizer.model --out init --seed 0
common="data = \"data/train.json\"
val_data = \"data/val.json\"
batch_size = 16
warmup_steps = 20
min_lr_ratio = 0.1
weight_decay = 0.01
save_every = 100000
max_source_length = 64
max_target_length = 40
english = true"
cat > stage1.toml <<TOML
$common
model = "init"
out = "stage1"
trainable = ["transformer.", "lm_head."]
clip = 1.0
steps = $steps1
lr = 3e-3
val_every = 100
TOML
cat > stage2.toml <<TOML
$common
model = "stage1/model"
out = "stage2"
trainable = ["image_encoder."]
lora_rank = 16
lora_alpha = 64.0
# No clipping: the ITC gradient is 15-40x the AR one (logits scaled by 1/0.07), and a global
# clip then leaves the encoder only the ITC direction, which does not need the shapes.
clip = 0.0
steps = $steps2
lr = 1e-3
val_every = 800
# λ ramps from 0 to ITC over the whole stage: the encoder learns the shapes from the AR loss
# first; a larger λ (0.05 and up, measured) makes ITC pull it off them.
itc_weight = $itc
itc_ramp_steps = $steps2
# Earlier batches' captions as extra image->text negatives: captions that differ only in a
# shape rarely meet within a batch of 16.
itc_queue = $queue
itc_detach = $detach
itc_dim = 64
$base_quantize
TOML
time "$bin" train --config stage1.toml --device cpu
time "$bin" train --config stage2.toml --device cpu
"$bin" eval captions --model stage2/model --data data/val.json --english --greedy \
    --repetition-penalty 1.0 --predictions-out val_captions.jsonl --out val_captions.json
"$bin" eval retrieval --model stage2/model --data data/val.json --out val_retrieval.json
