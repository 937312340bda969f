#!/usr/bin/env python3
"""Turns the TSV lines of run_rust.sh / run_torch.sh / run_chatglm_cpp.sh into markdown tables.

Usage: python3 bench/summarize.py bench/results/rust.tsv bench/results/torch.tsv \
         bench/results/chatglm_cpp.tsv
Ratios are against candle f32 of the same metric (>1 = better than candle f32: for times the
ratio is candle_f32 / x, for throughputs x / candle_f32).
"""
import sys
from collections import OrderedDict

METRICS = [
    ("image_encode_b1_ms_per_image", "image encode b=1 (ms/img)", False),
    ("image_encode_b8_ms_per_image", "image encode b=8 (ms/img)", False),
    ("prefill_tok_per_s", "prefill 300 tok (tok/s)", True),
    ("decode_ms_per_token", "decode (ms/tok)", False),
    ("decode_ms_per_glm_layer", "decode per GLM layer (ms)", False),
    ("decode_lm_head_ms", "decode lm_head (ms)", False),
    ("decode_ms_per_token_28_layers_est", "decode, 28 layers est. (ms/tok)", False),
    ("rss_after_build_mib", "RSS after build (MiB)", False),
    ("peak_rss_mib", "peak RSS (MiB)", False),
]


def main():
    runs = OrderedDict()
    for path in sys.argv[1:]:
        for line in open(path):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 4:
                continue
            fmt, key, val, _ = parts
            name = fmt if "-" in fmt else f"candle-{fmt}"
            runs.setdefault(name, {})[key] = float(val)
    base = runs.get("candle-f32", {})
    names = list(runs)
    print("| metric | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for key, label, higher_better in METRICS:
        cells = []
        for n in names:
            v = runs[n].get(key)
            if v is None:
                cells.append("–")
                continue
            b = base.get(key)
            if b and "rss" not in key:
                r = v / b if higher_better else b / v
                cells.append(f"{v:.0f} ({r:.2f}×)" if v >= 10 else f"{v:.1f} ({r:.2f}×)")
            else:
                cells.append(f"{v:.0f}")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
