#!/usr/bin/env bash
# Replaces the committed corpus tests/data/fuzz/TARGET with a minimised copy of
# fuzz/corpus/TARGET: the inputs up to MAX_BYTES (default 8192; the replay tests must stay
# fast and the repository small), plus any finding already committed there under a
# descriptive name (any name that is not a 40-hex-digit libFuzzer hash) is kept. The inputs are
# merged with libFuzzer's -merge=1 on edge coverage alone (-use_counters=0: the smallest inputs
# that together reach every edge the capped corpus reaches; hit counts are not kept apart).
# Usage: fuzz/commit_corpus.sh TARGET [MAX_BYTES]   (binaries of `cargo +nightly fuzz build`)
set -euo pipefail
cd "$(dirname "$0")/.."
target=$1; max=${2:-8192}
bin=fuzz/target/x86_64-unknown-linux-gnu/release/$target
out=tests/data/fuzz/$target
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/in" "$tmp/out" "$out"
find "fuzz/corpus/$target" -maxdepth 1 -type f -size -$((max + 1))c -exec cp {} "$tmp/in/" \;
"$bin" -merge=1 -use_counters=0 -timeout=10 -rss_limit_mb=4096 -malloc_limit_mb=2048 -max_len=1048576 \
  "$tmp/out" "$tmp/in" > "fuzz/logs/$target.commit.log" 2>&1
find "$out" -maxdepth 1 -type f -regextype posix-extended -regex '.*/[0-9a-f]{40}' -delete
cp "$tmp"/out/* "$out/"
echo "$target: $(find "$tmp/in" -type f | wc -l) inputs up to $max bytes -> $(find "$out" -type f | wc -l) files, $(du -sb "$out" | cut -f1) bytes"
