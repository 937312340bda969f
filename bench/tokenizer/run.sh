#!/usr/bin/env bash
# Tokenizer benchmark: Python sentencepiece vs visualglm's Rust tokenizer on the same 10 MB
# text, with each stand-in model; the Rust side also checks it produced identical ids.
# Needs: pip install sentencepiece protobuf.
# Usage: bench/tokenizer/run.sh [MEGABYTES] [uniform|zipf]   (see make_text.py)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
golden="$root/../shared/golden/tokenizer"
work="${TMPDIR:-/tmp}/visualglm-tokenizer-bench"
mkdir -p "$work"
python3 "$root/bench/tokenizer/make_text.py" "$golden/standin_bpe.model" "$work/text.txt" "${1:-10}" "${2:-uniform}"
(cd "$root" && cargo build --release -q -p visualglm-tokenizer --example bench_tokenizer)
for kind in bpe unigram; do
  python3 "$root/bench/tokenizer/bench_sentencepiece.py" "$golden/standin_$kind.model" "$work/text.txt" "$work/$kind.ids" 3
  "$root/target/release/examples/bench_tokenizer" "$golden/standin_$kind.model" "$work/text.txt" "$work/$kind.ids" 3
done
