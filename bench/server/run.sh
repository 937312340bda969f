#!/usr/bin/env bash
# Server throughput with batching vs one request at a time (issue 8).
# Serves the tiny golden model in-process on a free 127.0.0.1 port; see examples/server_load.rs.
# Extra arguments go to the example, e.g. --model DIR --tokenizer FILE --device cuda.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo run --release --example server_load -- --requests 64 --max-tokens 32 --max-batch 1,16,64 "$@"
