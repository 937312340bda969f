#!/usr/bin/env python3
"""Our runtime against another one with the two taking turns, one unit of work at a time.

This VM's memory bandwidth switches between two levels (about 35 and 50-60 GB/s) for seconds
to minutes at a time, so runs made a minute apart can land in different levels and a per-run
ratio measures the machine as much as the code. Here both runtimes are started once (the same
random-weight setup as bench/run_side_by_side.sh) and then work in lockstep: one unit from one,
one from the other, alternating which goes first, each timed. Each pair is close in time, so
both see the same machine state.

Start order: an A/A run (the same build in both slots) showed the runtime whose process started
first ~6 % slower. So by default the pairs are split into --rounds rounds (default 2), each
starting both runtimes afresh, and which runtime starts first alternates from round to round
(--start-first alternate); the summary also gives the median per-pair ratio of the rounds where
ours started first and of those where theirs did. --start-first ours --rounds 1 is the old
behaviour (ours started first, once).

Tasks:
  decode  one decode step after a --prompt-len prompt, against chatglm.cpp (--against torch:
          PyTorch eager f32); --format f16|q4_0|q8_0 (quantized formats share the quantized
          table with lm_head, as chatglm.cpp stores it; ours keeps an f16 KV cache, as chatglm.cpp
          does; --peer-cache DIR converts chatglm.cpp's file once);
  prefill one --prompt-len prompt from an empty KV cache and its last row's logits (the next
          token), against chatglm.cpp, with the same --format and settings as decode;
  encode  one batch of --image-batch images through --vit-layers ViT layers and the Q-Former,
          f32, against PyTorch eager (MKL); ms per image.

Prints the median of each runtime, the ratio of the medians and the spread of the per-pair
ratios (theirs / ours: above 1 means ours is faster), and writes every pair to --out (with the
round and which runtime started first).

With --against visualglm --baseline-bin PATH, the other runtime is another build of ours (an
A/B of a change: build the earlier commit into another target directory).

Usage (repository root, after `cargo build --release --bin visualglm`):
  python3 bench/lockstep.py --task decode --format f16 [--pairs 200] [--prompt-len 300] [--rounds 2]
  python3 bench/lockstep.py --task prefill --format q4_0 --pairs 40
  python3 bench/lockstep.py --task encode --vit-layers 39 --image-batch 1 --pairs 20
  python3 bench/lockstep.py --task encode --image-batch 8 --against visualglm --baseline-bin /tmp/old/release/visualglm
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def start(cmd, env=None):
    p = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    for line in p.stdout:
        if line.strip() == "ready":
            return p
    sys.exit(f"{cmd[0]} ended before it was ready (exit {p.wait()})")


def step(p):
    p.stdin.write("step\n")
    p.stdin.flush()
    line = p.stdout.readline()
    if not line:
        sys.exit("a runtime ended early")
    return float(line)


def quantile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="decode", choices=["decode", "prefill", "encode"])
    ap.add_argument(
        "--against",
        choices=["chatglm.cpp", "torch", "visualglm"],
        help="default: chatglm.cpp for decode, torch for encode; visualglm: another build of ours (--baseline-bin)",
    )
    ap.add_argument("--baseline-bin", help="the other build for --against visualglm (e.g. one of an earlier commit)")
    ap.add_argument("--format", default="f16", choices=["f32", "f16", "q4_0", "q8_0"], help="decode only")
    ap.add_argument("--glm-layers", type=int, default=2)
    ap.add_argument("--prompt-len", type=int, default=300)
    ap.add_argument("--vit-layers", type=int, default=4)
    ap.add_argument("--image-batch", type=int, default=1)
    ap.add_argument("--pairs", type=int, default=200, help="timed pairs, after --warmup pairs")
    ap.add_argument("--warmup", type=int, default=4)
    ap.add_argument("--bin", default="target/release/visualglm")
    ap.add_argument(
        "--peer-cache",
        help="keep chatglm.cpp's converted GGML file in this folder and reuse it in later rounds and runs "
        "(converting 28 layers takes minutes)",
    )
    ap.add_argument("--out", help="TSV of every pair (ours_ms, theirs_ms, round, started_first)")
    ap.add_argument(
        "--start-first",
        default="alternate",
        choices=["alternate", "ours", "theirs"],
        help="which runtime's process starts first in each round (alternate: ours in rounds 1, 3, ...)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="rounds, each starting both runtimes afresh; the pairs are split among them (default 2)",
    )
    a = ap.parse_args()
    if a.rounds < 1 or a.pairs < a.rounds:
        sys.exit("--rounds must be at least 1 and at most --pairs")
    text = a.task in ("decode", "prefill")
    against = a.against or ("chatglm.cpp" if text else "torch")
    fmt = a.format if text else "f32"
    if against == "chatglm.cpp" and a.task == "encode":
        sys.exit("chatglm.cpp has no image encoder: use --against torch")
    if against == "torch" and a.task == "prefill":
        sys.exit("torch_bench.py has no prefill lockstep: use --against chatglm.cpp or visualglm")
    if (against == "visualglm") != (a.baseline_bin is not None):
        sys.exit("--baseline-bin goes with --against visualglm, and only with it")
    # An encode run builds (but does not time) one GLM layer.
    glm_layers = a.glm_layers if text else 1
    common = ["--glm-layers", str(glm_layers), "--reps", "1", "--lockstep", a.task]
    if text:
        common += ["--prompt-len", str(a.prompt_len), "--decode-steps", "1"]
        ours_cmd = [a.bin, "bench", "--format", fmt, "--no-vision"]
        if fmt not in ("f32", "f16"):
            # Tied lm_head quantized with the layers, as chatglm.cpp stores it.
            ours_cmd.append("--embeddings")
        if against == "chatglm.cpp":
            # chatglm.cpp keeps its KV cache in f16 (chatglm.h: k_cache, v_cache GGML_TYPE_F16).
            ours_cmd += ["--kv-cache-dtype", "f16"]
    else:
        common += ["--prompt-len", "3", "--vit-layers", str(a.vit_layers), "--image-batch", str(a.image_batch)]
        ours_cmd = [a.bin, "bench", "--format", fmt]
    if against == "visualglm":
        theirs_cmd = [a.baseline_bin] + ours_cmd[1:]
    elif against == "chatglm.cpp":
        theirs_cmd = ["taskset", "-c", "0,1", sys.executable, str(here / "chatglm_cpp_bench.py"), "--format", fmt]
        if a.peer_cache:
            os.makedirs(a.peer_cache, exist_ok=True)
            theirs_cmd += ["--keep", os.path.join(a.peer_cache, f"chatglm-{fmt}-{a.glm_layers}-layers.bin")]
    else:
        theirs_cmd = [sys.executable, str(here / "torch_bench.py"), "--format", fmt, "--threads", "2"]
        if text:
            theirs_cmd.append("--no-vision")
    env = dict(os.environ, RAYON_NUM_THREADS="2")
    theirs_env = env if against == "visualglm" else None
    pairs = []  # (ours_ms, theirs_ms, round, which started first)
    for r in range(a.rounds):
        if a.start_first == "alternate":
            first = "ours" if r % 2 == 0 else "theirs"
        else:
            first = a.start_first
        if first == "ours":
            ours = start(ours_cmd + common, env)
            theirs = start(theirs_cmd + common, theirs_env)
        else:
            theirs = start(theirs_cmd + common, theirs_env)
            ours = start(ours_cmd + common, env)
        # The pairs split as evenly as possible among the rounds, each after its own warm-up.
        n = a.pairs // a.rounds + (1 if r < a.pairs % a.rounds else 0)
        for i in range(n + a.warmup):
            time.sleep(0.005)  # let the other runtime's threads go idle
            if i % 2 == 0:
                o, t = step(ours), step(theirs)
            else:
                t, o = step(theirs), step(ours)
            if i >= a.warmup:
                pairs.append((o, t, r + 1, first))
        for p in (ours, theirs):
            p.stdin.write("quit\n")
            p.stdin.close()
            p.wait()
    if a.out:
        with open(a.out, "w") as f:
            f.write(f"ours_ms\t{against}_ms\tround\tstarted_first\n")
            for o, t, r, first in pairs:
                f.write(f"{o:.3f}\t{t:.3f}\t{r}\t{first}\n")
    o_med = statistics.median(p[0] for p in pairs)
    t_med = statistics.median(p[1] for p in pairs)
    ratios = [t / o for o, t, _, _ in pairs]
    what = (
        f"{a.task}, {fmt}, {a.glm_layers} GLM layers, prompt {a.prompt_len}"
        if text
        else f"image encode, f32, {a.vit_layers} ViT layers + Q-Former, batch {a.image_batch} (ms per image)"
    )
    print(f"lockstep {what}, against {against}, {len(pairs)} pairs in {a.rounds} round(s), start order: {a.start_first}")
    print(f"median: ours {o_med:.2f} ms, {against} {t_med:.2f} ms, ratio {t_med / o_med:.2f}x")
    print(
        "per-pair ratio: median {:.2f}x, 10th percentile {:.2f}x, 90th {:.2f}x, min {:.2f}x; "
        "{:.0f}% of pairs >= 0.8x, {:.0f}% >= 1.0x".format(
            statistics.median(ratios),
            quantile(ratios, 0.1),
            quantile(ratios, 0.9),
            min(ratios),
            100 * sum(r >= 0.8 for r in ratios) / len(ratios),
            100 * sum(r >= 1.0 for r in ratios) / len(ratios),
        )
    )
    for first in ("ours", "theirs"):
        part = [t / o for o, t, _, f in pairs if f == first]
        if part and len(part) < len(pairs):
            print(f"per-pair ratio, {first} started first: median {statistics.median(part):.2f}x ({len(part)} pairs)")


if __name__ == "__main__":
    main()
