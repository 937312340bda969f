#!/usr/bin/env python3
"""Ratios of the issue-7 targets per round of bench/run_side_by_side.sh (one TSV per round).

Usage: python3 bench/compare.py bench/results/side_by_side/round*.tsv
Prints, for each target pair, the ratio in every round (>1: candle better) and each side's
values, then a markdown table of every metric per round.
"""
import sys

PAIRS = [
    # (label, candle run, other run, metric, higher is better)
    ("decode vs chatglm.cpp, q4_0 (tied lm_head quantized on both)", "candle-q4_0+emb", "chatglm.cpp-q4_0", "decode_ms_per_token", False),
    ("decode vs chatglm.cpp, f16", "candle-f16", "chatglm.cpp-f16", "decode_ms_per_token", False),
    ("decode vs chatglm.cpp, q8_0", "candle-q8_0+emb", "chatglm.cpp-q8_0", "decode_ms_per_token", False),
    ("decode candle q4k+emb vs chatglm.cpp q4_0", "candle-q4k+emb", "chatglm.cpp-q4_0", "decode_ms_per_token", False),
    ("decode candle q4_0+emb vs PyTorch f32", "candle-q4_0+emb", "torch-f32", "decode_ms_per_token", False),
    ("decode candle f32 vs PyTorch f32", "candle-f32", "torch-f32", "decode_ms_per_token", False),
    ("prefill vs chatglm.cpp, q4_0", "candle-q4_0+emb", "chatglm.cpp-q4_0", "prefill_tok_per_s", True),
    ("prefill candle q4k+emb vs chatglm.cpp q4_0", "candle-q4k+emb", "chatglm.cpp-q4_0", "prefill_tok_per_s", True),
    ("image encode b=1, f32 vs PyTorch f32", "candle-f32", "torch-f32", "image_encode_b1_ms_per_image", False),
    ("image encode b=8, f32 vs PyTorch f32", "candle-f32", "torch-f32", "image_encode_b8_ms_per_image", False),
]


def read(path):
    runs = {}
    for line in open(path):
        parts = line.rstrip("\n").split("\t")
        if len(parts) == 4:
            runs.setdefault(parts[0], {})[parts[1]] = float(parts[2])
    return runs


def main():
    rounds = [read(p) for p in sys.argv[1:]]
    for label, a, b, key, higher in PAIRS:
        cells = []
        for r in rounds:
            va, vb = r.get(a, {}).get(key), r.get(b, {}).get(key)
            if va is None or vb is None:
                cells.append("–")
                continue
            ratio = va / vb if higher else vb / va
            cells.append(f"{ratio:.2f}× ({va:.1f} vs {vb:.1f})")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
