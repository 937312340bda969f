#!/usr/bin/env bash
# A/B of two visualglm binaries on q4_0 decode (2 GLM layers at full width, q4_0 lm_head, no
# vision), alternating which runs first, PAIRS pairs; prints each run's decode lines and the
# per-pair ratios (before / after: above 1 means the second binary is faster).
# Usage: bench/gemv_q4_0_avx2/ab.sh BEFORE_BIN AFTER_BIN [PAIRS]
set -euo pipefail
before=${1:?usage: ab.sh BEFORE AFTER [PAIRS]}; after=${2:?}; pairs=${3:-3}
run() { "$1" bench --format q4_0 --lm-head --no-vision --reps 3 2>&1 |
  awk -v who="$2" '/CPU kernels/ {print "# " who ": " $0} $2 ~ /^decode_(ms_per_token|lm_head_ms|ms_per_glm_layer)$/ {print who "\t" $2 "\t" $3}'; }
log=$(mktemp)
for i in $(seq 1 "$pairs"); do
  if (( i % 2 )); then run "$before" before; run "$after" after; else run "$after" after; run "$before" before; fi
done > "$log"
cat "$log"
python3 - "$log" <<'PY'

import sys, statistics
runs = {}
for line in open(sys.argv[1]):
    if line.startswith("#"): continue
    who, key, val = line.split("\t")
    runs.setdefault((who, key), []).append(float(val))
for key in ["decode_ms_per_token", "decode_ms_per_glm_layer", "decode_lm_head_ms"]:
    b, a = runs[("before", key)], runs[("after", key)]
    ratios = [x / y for x, y in zip(b, a)]
    each = ", ".join("%.3f" % r for r in ratios)
    print("%s: before median %.2f ms, after median %.2f ms, per-pair ratio median %.3f (pairs: %s)"
          % (key, statistics.median(b), statistics.median(a), statistics.median(ratios), each))
PY
rm -f "$log"
