#!/usr/bin/env bash
# The one GPU check (issues 24, 18, 19), run on the lent GPU machine in a single call of under
# 8 minutes, from the repository root, with the binary bench/gpu/build.sh made and carried:
#   bench/gpu/run.sh BIN GOLDEN [OUT]
# BIN: the stripped `visualglm` built with `--features cuda`; GOLDEN: the golden fixtures folder
# (`../shared/golden`, carried as e.g. target/gpu-carry/golden); OUT: where logs go ($OUT of the
# device tool, else bench/results/gpu/DATE). Each step has its own time limit, logs to
# OUT/STEP.log with its exit status, and a failing step does not stop the others.
#
# Steps: the machine (nvidia-smi, CPU flags); CUDA parity of every model stage against the
# official code's outputs, f32 and f16 (`visualglm selftest`); the same on the CPU (the
# AVX-512 path where the host has it, and the AVX2 one); a tiny LoRA and QLoRA fine-tune on
# CUDA; the CPU decode bench on the AVX-512, AVX2 and scalar paths and at 1, 4 and 16 threads.
# GPU memory is sampled every 200 ms into OUT/gpu-memory.csv for the whole run.
set -uo pipefail
BIN=${1:?usage: bench/gpu/run.sh BIN GOLDEN [OUT]}
GOLDEN=${2:?usage: bench/gpu/run.sh BIN GOLDEN [OUT]}
OUT=${3:-${OUT:-bench/results/gpu/$(date -u +%F)}}
mkdir -p "$OUT"
T0=$(date +%s)

step() { # NAME LIMIT_S COMMAND...: runs COMMAND with a time limit, logging to OUT/NAME.log
  local name=$1 limit=$2; shift 2
  local t=$(date +%s)
  echo "== $name (limit ${limit}s): $*"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "rc $rc, $(( $(date +%s) - t )) s" | tee -a "$OUT/$name.log"
  tail -n 15 "$OUT/$name.log"
}

{ date -u; uname -a; nvidia-smi; grep -m1 'model name' /proc/cpuinfo; nproc
  grep -m1 -o 'avx512[a-z_]*' /proc/cpuinfo | sort -u | tr '\n' ' '; echo; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv -lms 200 \
  > "$OUT/gpu-memory.csv" 2>/dev/null &
SAMPLER=$!

step selftest-cuda-f32 90 "$BIN" selftest --device cuda --golden "$GOLDEN"
step selftest-cuda-f16 90 "$BIN" selftest --device cuda --dtype f16 --golden "$GOLDEN"
step selftest-cpu 60 "$BIN" selftest --device cpu --golden "$GOLDEN"
step selftest-cpu-avx2 60 env VISUALGLM_CPU=avx2 "$BIN" selftest --device cpu --golden "$GOLDEN"

DATA=$(mktemp -d)
step synth 30 "$BIN" data synth --out "$DATA/shapes" --count 64
step train-lora-cuda 90 "$BIN" train --device cuda --model assets/shapes --data "$DATA/shapes/train.json" \
  --out "$DATA/run-lora" --steps 8 --lora-rank 4
step train-qlora-cuda 90 "$BIN" train --device cuda --model assets/shapes --data "$DATA/shapes/train.json" \
  --out "$DATA/run-qlora" --steps 8 --lora-rank 4 --base-quantize q4_0

for path in avx512 avx2 scalar; do
  step "bench-cpu-$path" 60 env VISUALGLM_CPU=$path "$BIN" bench --format q4_0 --embeddings --no-vision \
    --glm-layers 2 --decode-steps 4 --reps 1
done
for threads in 1 4 16; do
  step "bench-cpu-threads-$threads" 60 env RAYON_NUM_THREADS=$threads "$BIN" bench --format q4_0 \
    --embeddings --no-vision --glm-layers 2 --decode-steps 4 --reps 1
done

kill "$SAMPLER" 2>/dev/null
echo "peak GPU memory (MiB): $(awk -F', ' 'NR > 1 { v = $2 + 0; if (v > m) m = v } END { print m + 0 }' "$OUT/gpu-memory.csv")" \
  | tee "$OUT/summary.txt"
grep -H '^rc ' "$OUT"/*.log | tee -a "$OUT/summary.txt"
echo "total $(( $(date +%s) - T0 )) s" | tee -a "$OUT/summary.txt"
