#!/usr/bin/env bash
# Data-parallel throughput on this machine: one process of batch 8 against two MPI ranks of
# batch 4 (one thread each), the same global batch and updates, on the tiny golden model
# (../shared/golden). Prints wall seconds per update (the whole command, divided by the
# updates) and the mean time per update that rank 0 spent in collectives (`comm_seconds` of
# metrics.jsonl). At this size the update is milliseconds of compute, so this measures the
# data-parallel machinery's overhead, not scaling at the real model's size.
# Usage: bench/record.sh OUT bench/dist/throughput.sh BIN (a visualglm built with --features mpi)
set -euo pipefail
bin=$(realpath "${1:?usage: bench/dist/throughput.sh BIN}")
updates=${UPDATES:-40}
root=$(pwd)
golden=$(realpath ../shared/golden)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_MCA_btl_vader_single_copy_mechanism=none RAYON_NUM_THREADS=1
records=""
for i in $(seq 1 16); do
  img=$([ $((i % 2)) = 0 ] && echo chelsea || echo astronaut)
  records="$records{\"img\": \"$golden/images/$img.png\", \"prompt\": \"Describe the image.\", \"label\": \"caption number $i of an image\"},"
done
echo "[${records%,}]" > "$work/train.json"
cat > "$work/run.toml" <<TOML
data = "$work/train.json"
model = "$golden/checkpoints/hf"
tokenizer = "$root/assets/tiny/tokenizer.model"
trainable = ["image_encoder.glm_proj", "image_encoder.qformer"]
steps = $updates
warmup_steps = 0
save_every = 0
export = false
max_source_length = 48
max_target_length = 16
english = true
TOML
per_update() { awk -v s="$1" -v n="$updates" 'BEGIN { printf "%.4f", s / n }'; }
mean_comm() {
  grep -o '"comm_seconds":[^,}]*' "$1/metrics.jsonl" | cut -d: -f2 \
    | awk '{ s += $1; n++ } END { if (n) printf "%.4f", s / n; else printf "n/a" }'
}
start=$(date +%s.%N)
"$bin" train --config "$work/run.toml" --batch-size 8 --out "$work/one" 2> /dev/null
one=$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { print a - b }')
start=$(date +%s.%N)
mpirun --allow-run-as-root --oversubscribe -np 2 "$bin" train --config "$work/run.toml" \
  --batch-size 4 --out "$work/two" 2> /dev/null
two=$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { print a - b }')
echo "updates: $updates of global batch 8 (tiny golden model, one thread per process)"
echo "1 process  x batch 8: $(per_update "$one") s per update (wall, with start-up)"
echo "2 MPI ranks x batch 4: $(per_update "$two") s per update (wall, with start-up and mpirun), of which $(mean_comm "$work/two") s in collectives (rank 0 mean)"
