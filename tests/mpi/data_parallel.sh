#!/usr/bin/env bash
# Data-parallel fine-tuning under Open MPI's mpirun, as users launch it: two ranks of batch 2
# must make the updates of one process of batch 4 (the same per-update losses within 2e-5,
# relative), also when the two-rank run is stopped after its update-2 checkpoint and resumed,
# and with the contrastive (ITC) loss, its text queue and a trainable image encoder.
# Usage: tests/mpi/data_parallel.sh BIN (a visualglm built with `--features mpi`).
# Run from the repository root, with ../shared/golden present (as .ci/run does).
set -euo pipefail
bin=$(realpath "${1:?usage: tests/mpi/data_parallel.sh BIN}")
root=$(pwd)
golden=$(realpath ../shared/golden)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_MCA_btl_vader_single_copy_mechanism=none RAYON_NUM_THREADS=1
mpirun=(mpirun --allow-run-as-root --oversubscribe -np 2)

cat > "$work/train.json" <<JSON
[
 {"img": "$golden/images/chelsea.png", "prompt": "Describe the image.", "label": "a cat on a floor"},
 {"img": "$golden/images/astronaut.png", "prompt": "Describe the image.", "label": "an astronaut in a suit"},
 {"img": "$golden/images/chelsea.png", "prompt": "What animal is this?", "label": "a cat"},
 {"img": "$golden/images/astronaut.png", "prompt": "Who is this?", "label": "a person in a white space suit holding a flag"},
 {"img": "$golden/images/chelsea.png", "prompt": "Colour?", "label": "orange and brown"}
]
JSON
cat > "$work/run.toml" <<TOML
data = "$work/train.json"
model = "$golden/checkpoints/hf"
tokenizer = "$root/assets/tiny/tokenizer.model"
trainable = ["image_encoder.glm_proj", "image_encoder.qformer"]
steps = 4
lr = 3e-3
warmup_steps = 0
clip = 1.0
save_every = 2
max_source_length = 48
max_target_length = 16
english = true
TOML

# The per-update losses of a run's metrics log, one per line.
losses() { grep -o '"loss":[^,}]*' "$1/metrics.jsonl" | cut -d: -f2; }

# Fails unless two loss lists have the same length and agree within 2e-5 (relative).
same_losses() {
  paste <(losses "$1") <(losses "$2") | awk -v a="$1" -v b="$2" '
    { n++; d = $1 - $2; if (d < 0) d = -d; m = ($1 < 0 ? -$1 : $1); if (m < 1) m = 1;
      if ($2 == "" || d > 2e-5 * m) { printf "update %d: %s vs %s (%s, %s)\n", n, $1, $2, a, b; bad = 1 } }
    END { if (n != 4) { print "expected 4 updates, got " n; bad = 1 } exit bad }'
}

"$bin" train --config "$work/run.toml" --batch-size 4 --out "$work/one" 2> "$work/one.log"
"${mpirun[@]}" "$bin" train --config "$work/run.toml" --batch-size 2 --out "$work/two" \
  2> "$work/two.log" || { cat "$work/two.log"; exit 1; }
# The checkpoint records the world the run had (the ranks' stderr lines interleave).
grep -Eq '"world_size": ?2' "$work/two/$(cat "$work/two/latest")/state.json" \
  || { cat "$work/two.log"; echo "not a 2-rank run"; exit 1; }
same_losses "$work/one" "$work/two"

# Stopped after update 2 (its checkpoint is written), then resumed: the same losses.
"${mpirun[@]}" "$bin" train --config "$work/run.toml" --batch-size 2 --out "$work/resumed" \
  --stop-after 2 2> "$work/first.log" || { cat "$work/first.log"; exit 1; }
test "$(losses "$work/resumed" | wc -l)" -eq 2
"${mpirun[@]}" "$bin" train --config "$work/run.toml" --batch-size 2 --out "$work/resumed" \
  2> "$work/rest.log" || { cat "$work/rest.log"; exit 1; }
grep -q "resuming from step 2" "$work/rest.log"
same_losses "$work/one" "$work/resumed"
# AR + ITC with a text queue and a trainable image encoder: the features are gathered across
# the ranks with gradient, the queue holds the whole batch's captions.
sed 's/^trainable = .*/trainable = ["image_encoder.vit", "image_encoder.qformer", "image_encoder.glm_proj"]/' \
  "$work/run.toml" > "$work/itc.toml"
printf 'itc_weight = 0.5\nitc_dim = 16\nitc_queue = 3\n' >> "$work/itc.toml"
"$bin" train --config "$work/itc.toml" --batch-size 4 --out "$work/itc-one" 2> "$work/itc-one.log"
"${mpirun[@]}" "$bin" train --config "$work/itc.toml" --batch-size 2 --out "$work/itc-two" \
  2> "$work/itc-two.log" || { cat "$work/itc-two.log"; exit 1; }
same_losses "$work/itc-one" "$work/itc-two"
echo "data-parallel under mpirun: 2 ranks x batch 2 = 1 process x batch 4 (AR: 4 updates and after a resume; AR + ITC with queue and trainable ViT: 4 updates)"
