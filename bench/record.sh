#!/usr/bin/env bash
# Runs a benchmark command and writes its output to OUT under a provenance header (date, commit,
# CPU model, vector ISA, thread setting, command), so every committed result file says where it
# came from. Header lines start with '#'; the command's stdout and stderr follow.
# Usage: bench/record.sh OUT COMMAND [ARGS...]
set -euo pipefail
out=${1:?usage: bench/record.sh OUT COMMAND [ARGS...]}; shift
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$(dirname "$out")"
tmp="$out.tmp.$$"
{
  echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "# commit: $(git -C "$root" rev-parse HEAD)$(git -C "$root" diff --quiet HEAD -- src core server allocator nn tokenizer weights files language vision qformer train eval testing examples Cargo.toml Cargo.lock || echo ' (with uncommitted changes)')"
  echo "# cpu: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) threads)"
  echo "# vector isa: $(grep -o -w 'sse4_2\|avx\|avx2\|fma\|f16c\|avx512f\|avx512bw\|avx512_vnni\|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
  echo "# RAYON_NUM_THREADS: ${RAYON_NUM_THREADS:-unset}"
  printf '# command:'; printf ' %q' "$@"; echo
} > "$tmp"
status=0
"$@" >> "$tmp" 2>&1 || status=$?
mv "$tmp" "$out"
tail -n 20 "$out"
exit "$status"
