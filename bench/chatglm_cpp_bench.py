#!/usr/bin/env python3
"""chatglm.cpp (PyPI chatglm-cpp 0.4.2) counterpart of the language part of `visualglm bench`.

chatglm.cpp only loads its own GGML container, normally made from a Hugging Face checkpoint.
Here the package's own converter (`chatglm_cpp.convert.ChatGLMConverter`) is fed a stand-in
"model" (a config object plus a state dict of random tensors with the ChatGLM-6B widths and
--glm-layers layers) and a stand-in tokenizer (the SentencePiece stand-in model of the golden
fixtures; prompts are given as token ids, so its vocabulary does not matter). `transformers`
is not needed for that path, so a stub module satisfies the converter's import.

Differences from the candle model, inherent to chatglm.cpp's ChatGLM-6B support:
`lm_head` is tied to the word embeddings and stored in the same type as the layers (so in
q8_0/q4_0 runs the lm_head is quantized too, unlike the candle runs), and it has no K-quants.

Usage: python3 bench/chatglm_cpp_bench.py --format f16|q8_0|q4_0|f32 [--glm-layers 2]
  [--prompt-len 300] [--decode-steps 16] [--tokenizer ../shared/golden/tokenizer/standin_bpe.model]
Thread count: chatglm.cpp uses all cores by default; run under `taskset -c 0,1` for 2 threads.
"""
import argparse
import os
import sys
import tempfile
import time
import types
from pathlib import Path

from peer_lockstep import lockstep

H, HEADS, MLP, VOCAB = 4096, 32, 16384, 130528


def stub_transformers():
    if "transformers" in sys.modules:
        return
    m = types.ModuleType("transformers")
    for n in ["AutoConfig", "AutoModel", "AutoModelForCausalLM", "AutoTokenizer"]:
        setattr(m, n, object)
    sys.modules["transformers"] = m


class FakeModel:
    def __init__(self, layers):
        self.config = types.SimpleNamespace(
            position_encoding_2d=True,
            inner_hidden_size=MLP,
            hidden_size=H,
            vocab_size=VOCAB,
            num_attention_heads=HEADS,
            num_layers=layers,
            layernorm_epsilon=1e-5,
            pre_seq_len=None,
            max_sequence_length=2048,
            eos_token_id=130005,
            pad_token_id=3,
            quantization_bit=0,
        )
        self._sd = LazyStateDict(layers)

    def state_dict(self):
        return self._sd


class LazyStateDict:
    """The random weights, each drawn only when the converter asks for it (seeded by its name,
    so every request gives the same values) and dropped after: at full depth (28 layers) the
    f32 weights would be ~25 GB at once, more than many machines have. `lm_head.weight` is the
    word-embedding table (tied, as chatglm.cpp needs)."""

    def __init__(self, layers):
        self.shapes = {"transformer.word_embeddings.weight": (VOCAB, H), "lm_head.weight": (VOCAB, H)}
        for i in range(layers):
            p = f"transformer.layers.{i}."
            for ln in ["input_layernorm", "post_attention_layernorm"]:
                self.shapes[p + ln + ".weight"] = (H,)
                self.shapes[p + ln + ".bias"] = (H,)
            for name, (o, k) in {
                "attention.query_key_value": (3 * H, H),
                "attention.dense": (H, H),
                "mlp.dense_h_to_4h": (MLP, H),
                "mlp.dense_4h_to_h": (H, MLP),
            }.items():
                self.shapes[p + name + ".weight"] = (o, k)
                self.shapes[p + name + ".bias"] = (o,)
        self.shapes["transformer.final_layernorm.weight"] = (H,)
        self.shapes["transformer.final_layernorm.bias"] = (H,)

    def __contains__(self, name):
        return name in self.shapes

    def keys(self):
        return self.shapes.keys()

    def __getitem__(self, name):
        import torch
        import zlib

        shape = self.shapes[name]
        if name.endswith("layernorm.weight"):
            return torch.ones(shape)
        if len(shape) == 1:
            return torch.zeros(shape)
        seed_name = "transformer.word_embeddings.weight" if name == "lm_head.weight" else name
        g = torch.Generator().manual_seed(zlib.crc32(seed_name.encode()))
        return (torch.rand(*shape, generator=g) - 0.5) * 0.04


class FakeTokenizer:
    def __init__(self, model_path):
        proto = Path(model_path).read_bytes()
        sp = types.SimpleNamespace(serialized_model_proto=lambda: proto)
        self.sp_tokenizer = types.SimpleNamespace(text_tokenizer=types.SimpleNamespace(sp=sp))


def vm_hwm_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(reps, fn):
    fn()
    ts = []
    for _ in range(max(reps, 1)):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1e3)
    return min(ts)  # best of reps: least disturbed by other processes


def main():
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser()
    ap.add_argument("--format", default="q4_0", choices=["f32", "f16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"])
    ap.add_argument("--glm-layers", type=int, default=2)
    ap.add_argument("--prompt-len", type=int, default=300)
    ap.add_argument("--decode-steps", type=int, default=16)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--tokenizer", default=str(here / "../../shared/golden/tokenizer/standin_bpe.model"))
    ap.add_argument(
        "--keep",
        help="write the GGML file here instead of a temporary file and keep it; an existing file is "
        "reused (delete it after changing --format or --glm-layers)",
    )
    ap.add_argument(
        "--lockstep",
        choices=["decode", "prefill"],
        help="after the prefill print 'ready', then run one unit per stdin line and print its ms, "
        "until 'quit' (bench/lockstep.py alternates runtimes step by step with it): decode, one decode "
        "step; prefill, the --prompt-len prompt again from an empty cache and its next token",
    )
    ap.add_argument("--run", help=argparse.SUPPRESS)  # internal: time an existing file
    a = ap.parse_args()
    if a.run:
        from chatglm_cpp import _C

        return run(_C, a.run, a)
    stub_transformers()
    from chatglm_cpp.convert import ChatGLMConverter, GGMLType

    path = a.keep or tempfile.mktemp(suffix=".bin")
    if a.keep and os.path.exists(a.keep):
        print(f"reusing {a.keep} ({os.path.getsize(path) / 2**20:.0f} MiB)", file=sys.stderr)
    else:
        t0 = time.perf_counter()
        with open(path + ".part", "wb") as f:
            ChatGLMConverter.convert(
                f, FakeModel(a.glm_layers), FakeTokenizer(a.tokenizer), GGMLType[a.format.upper()]
            )
        os.replace(path + ".part", path)
        size = os.path.getsize(path) / 2**20
        print(f"converted in {time.perf_counter() - t0:.1f} s ({size:.0f} MiB)", file=sys.stderr)
    # Measure the runtime's own peak RSS, not the converter's: time it in a fresh process
    # that does not import torch.
    import subprocess

    args = [sys.executable, __file__, "--run", path, "--format", a.format]
    args += ["--prompt-len", str(a.prompt_len), "--decode-steps", str(a.decode_steps), "--reps", str(a.reps)]
    if a.lockstep:
        args += ["--lockstep", a.lockstep]
    subprocess.run(args, check=True)
    if not a.keep:
        os.remove(path)


def run(_C, path, a):
    # A lockstep run decodes as many steps as it is asked for: room up to the model's 2048.
    max_length = 2048 if a.lockstep else 512
    pipe = _C.Pipeline(path, max_length=max_length)
    model = pipe.model
    n = max(a.prompt_len, 3)
    ids = [5 + (i * 7919) % 60000 for i in range(n - 2)] + [130001, 130004]
    cfg = _C.GenerationConfig(max_length=max_length, max_context_length=max_length, do_sample=False)
    prefill = lambda: model.generate_next_token(ids, None, cfg, 0, n)
    ms = timed(a.reps, prefill)
    rows = [("prefill_tok_per_s", n / (ms / 1e3), "tok/s"), ("prefill_ms", ms, "ms")]
    cur = list(ids)
    nxt = prefill()
    if a.lockstep == "prefill":
        return lockstep(prefill)
    if a.lockstep:
        print("ready", flush=True)
        for line in sys.stdin:
            if line.strip() == "quit" or len(cur) + 1 >= max_length:
                break
            past = len(cur)
            cur.append(nxt)
            t = time.perf_counter()
            nxt = model.generate_next_token(cur, None, cfg, past, n)
            print(f"{(time.perf_counter() - t) * 1e3:.3f}", flush=True)
        return
    steps = []
    for _ in range(max(a.decode_steps, 1)):
        past = len(cur)
        cur.append(nxt)
        t = time.perf_counter()
        nxt = model.generate_next_token(cur, None, cfg, past, n)
        steps.append((time.perf_counter() - t) * 1e3)
    rows.append(("decode_ms_per_token", min(steps), "ms"))
    # VmHWM, not ru_maxrss: the latter survives exec and would report the converter's peak.
    rows.append(("peak_rss_mib", vm_hwm_mib(), "MiB"))
    for k, v, u in rows:
        print(f"chatglm.cpp-{a.format}\t{k}\t{v:.2f}\t{u}", flush=True)


if __name__ == "__main__":
    main()
