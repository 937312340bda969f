"""Python `sentencepiece` side of the tokenizer benchmark.

Encodes every line of TEXT with the ChatGLM pre-processing (`\\n`, tab, space runs) applied
first, like the official tokenizer. Only the `sp.encode` calls are timed (pre-processing in
Python is excluded, which favours Python). Writes all ids (little-endian u32, lines
concatenated) to IDS_OUT so the Rust side can check it produces exactly the same ids.

usage: python3 bench_sentencepiece.py MODEL TEXT IDS_OUT [REPEATS]
"""
import array
import sys
import time

import sentencepiece as spm


def preprocess(text):
    text = text.replace("\n", "<n>").replace("\t", "<|tab|>")
    for i in range(80, 1, -1):
        text = text.replace(" " * i, f"<|blank_{i}|>")
    return text


def main():
    model, text_path, ids_out = sys.argv[1:4]
    repeats = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    sp = spm.SentencePieceProcessor(model_file=model)
    with open(text_path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    nbytes = sum(len(line.encode("utf-8")) for line in lines)
    pre = [preprocess(line) for line in lines]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        ids = [sp.encode(line) for line in pre]
        best = min(best, time.perf_counter() - start)
    total = sum(len(x) for x in ids)
    flat = array.array("I")
    for x in ids:
        flat.extend(x)
    with open(ids_out, "wb") as f:
        flat.tofile(f)
    print(
        f"python sentencepiece {spm.__version__}: {len(lines)} lines, {nbytes / 1e6:.2f} MB, "
        f"{total} ids, best of {repeats}: {best:.3f} s = {nbytes / 1e6 / best:.2f} MB/s (1 thread)"
    )


if __name__ == "__main__":
    main()
