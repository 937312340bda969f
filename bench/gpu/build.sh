#!/usr/bin/env bash
# Builds what bench/gpu/run.sh needs on the GPU machine, here (no GPU or nvcc needed): the
# release `visualglm` with `--features cuda`, stripped (about 50 MB; the carry limit is 64 MiB),
# and the golden model fixtures, both under target/gpu-carry/. A cold build takes about 15
# minutes on 2 cores (nvcc compiling candle's kernels), an incremental one a few.
#   bench/gpu/build.sh            # then, with the device tool:
#   run carry=["target/gpu-carry"] command="bench/gpu/run.sh target/gpu-carry/visualglm target/gpu-carry/golden"
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${SHARED:-../shared}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target-cuda}
cargo fetch --locked
eval "$("$SHARED/tools/setup-cuda-toolchain.sh")"
cargo build --release --locked --features cuda --bin visualglm
mkdir -p target/gpu-carry/golden
strip -o target/gpu-carry/visualglm "$CARGO_TARGET_DIR/release/visualglm"
cp -r "$SHARED/golden/model" target/gpu-carry/golden/
du -sh target/gpu-carry
