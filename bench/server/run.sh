#!/usr/bin/env bash
# Server throughput with batching vs one request at a time (issue 8; BENCHMARKS.md).
# Serves the tiny golden model in-process on a free 127.0.0.1 port, 64 concurrent greedy chat
# completions of 128 new tokens per run; see examples/server_load.rs. Extra arguments go to
# every run, e.g. --model DIR --tokenizer FILE --device cuda.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --example server_load
run() { target/release/examples/server_load --requests 64 --max-tokens 128 --max-batch 1,16,64 "$@"; }
run --text-only "$@"
run --image-batch 0 "$@"
run --image-batch 1 "$@"
