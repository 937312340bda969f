#!/usr/bin/env python3
"""PyTorch eager (CPU) counterpart of `visualglm bench`: the same widths, depths, prompt and
protocol (one warm-up, best of --reps; decode: best of --decode-steps), random weights made in memory.

Usage: python3 bench/torch_bench.py --format f32|bf16|f16|int8dyn [--glm-layers 2]
       [--vit-layers 4] [--prompt-len 300] [--decode-steps 16] [--threads 2]
int8dyn = torch.ao.quantization.quantize_dynamic(qint8) on the GLM layer linears only
(weights int8 per-channel, activations quantized per call), the closest PyTorch analogue of q8_0.
Prints `format<TAB>metric<TAB>value<TAB>unit` lines like the Rust bench.
"""
import argparse
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from peer_lockstep import lockstep

H, HEADS, MLP, VOCAB = 4096, 32, 16384, 130528
VH, VHEADS, VMLP = 1408, 16, 6144
QH, QHEADS, QMLP, QLAYERS, NQ = 768, 12, 3072, 12, 32
ALPHA = math.sqrt(56.0)


def rotary(x, pos, inv_freq):
    # x [B, heads, S, D]: GLM 2D RoPE, first half rotated by pos[0], second by pos[1].
    d = x.shape[-1] // 2
    outs = []
    for i, part in enumerate((x[..., :d], x[..., d:])):
        f = pos[i].float()[:, None] * inv_freq[None, :]  # [S, d/2]
        emb = torch.cat([f, f], -1)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        h = d // 2
        rot = torch.cat([-part[..., h:], part[..., :h]], -1)
        outs.append(part * cos + rot * sin)
    return torch.cat(outs, -1)


class GlmBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(H)
        self.qkv = nn.Linear(H, 3 * H)
        self.dense = nn.Linear(H, H)
        self.ln2 = nn.LayerNorm(H)
        self.up = nn.Linear(H, MLP)
        self.down = nn.Linear(MLP, H)

    def forward(self, x, pos, inv_freq, mask, cache):
        b, s, _ = x.shape
        a = self.ln1(x)
        q, k, v = self.qkv(a).view(b, s, 3, HEADS, H // HEADS).permute(2, 0, 3, 1, 4)
        q, k = rotary(q, pos, inv_freq), rotary(k, pos, inv_freq)
        if cache is not None and cache[0] is not None:
            k = torch.cat([cache[0], k], 2)
            v = torch.cat([cache[1], v], 2)
        if cache is not None:
            cache[0], cache[1] = k, v
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        h = a * ALPHA + self.dense(ctx.transpose(1, 2).reshape(b, s, H))
        m = self.ln2(h)
        return m * ALPHA + self.down(F.gelu(self.up(m), approximate="tanh"))


class Glm(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, H)
        self.layers = nn.ModuleList(GlmBlock() for _ in range(layers))
        self.ln = nn.LayerNorm(H)
        self.lm_head = nn.Linear(H, VOCAB, bias=False)
        self.lm_head.weight = self.emb.weight  # tied, as the bench's candle model
        self.register_buffer("inv_freq", 1.0 / 10000 ** (torch.arange(0, 64, 2).float() / 64))

    def forward(self, ids, pos, mask, caches):
        x = self.emb(ids)
        for layer, c in zip(self.layers, caches):
            x = layer(x, pos, self.inv_freq, mask, c)
        return self.ln(x)


class VitBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(VH, eps=1e-6), nn.LayerNorm(VH, eps=1e-6)
        self.qkv, self.dense = nn.Linear(VH, 3 * VH), nn.Linear(VH, VH)
        self.up, self.down = nn.Linear(VH, VMLP), nn.Linear(VMLP, VH)

    def forward(self, x):
        b, s, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, s, 3, VHEADS, VH // VHEADS).permute(2, 0, 3, 1, 4)
        x = x + self.dense(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, s, VH))
        return x + self.down(F.gelu(self.up(self.ln2(x))))


class QfLayer(nn.Module):
    def __init__(self, cross):
        super().__init__()
        self.qkv, self.dense, self.ln1 = nn.Linear(QH, 3 * QH), nn.Linear(QH, QH), nn.LayerNorm(QH, eps=1e-12)
        self.cross = cross
        if cross:
            self.cq, self.ckv = nn.Linear(QH, QH), nn.Linear(VH, 2 * QH)
            self.cd, self.ln2 = nn.Linear(QH, QH), nn.LayerNorm(QH, eps=1e-12)
        self.up, self.down, self.ln3 = nn.Linear(QH, QMLP), nn.Linear(QMLP, QH), nn.LayerNorm(QH, eps=1e-12)

    def heads(self, t):
        b, s, _ = t.shape
        return t.view(b, s, QHEADS, -1).transpose(1, 2)

    def forward(self, x, img):
        b, s, _ = x.shape
        q, k, v = self.qkv(x).split(QH, -1)
        a = F.scaled_dot_product_attention(self.heads(q), self.heads(k), self.heads(v))
        x = self.ln1(x + self.dense(a.transpose(1, 2).reshape(b, s, QH)))
        if self.cross:
            k, v = self.ckv(img).split(QH, -1)
            a = F.scaled_dot_product_attention(self.heads(self.cq(x)), self.heads(k), self.heads(v))
            x = self.ln2(x + self.cd(a.transpose(1, 2).reshape(b, s, QH)))
        return self.ln3(x + self.down(F.gelu(self.up(x))))


class ImageEncoder(nn.Module):
    def __init__(self, vit_layers):
        super().__init__()
        self.patch = nn.Conv2d(3, VH, 14, 14)
        self.cls = nn.Parameter(torch.zeros(1, 1, VH))
        self.pos = nn.Parameter(torch.zeros(1, 257, VH))
        self.blocks = nn.ModuleList(VitBlock() for _ in range(vit_layers))
        self.ln_vision = nn.LayerNorm(VH)
        self.queries = nn.Parameter(torch.zeros(1, NQ, QH))
        self.qf = nn.ModuleList(QfLayer(i % 2 == 0) for i in range(QLAYERS))
        self.qf_ln = nn.LayerNorm(QH, eps=1e-12)
        self.glm_proj = nn.Linear(QH, H)

    def forward(self, px):
        x = self.patch(px).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        for blk in self.blocks:
            x = blk(x)
        img = self.ln_vision(x)
        q = self.queries.expand(px.shape[0], -1, -1)
        for layer in self.qf:
            q = layer(q, img)
        return self.glm_proj(self.qf_ln(q))


def init_(module):
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() >= 2:
                p.uniform_(-0.02, 0.02)
            elif "ln" in name and name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.zero_()


def timed(reps, fn):
    fn()
    ts = []
    for _ in range(max(reps, 1)):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1e3)
    return min(ts)  # best of reps: least disturbed by other processes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--format", default="f32", choices=["f32", "bf16", "f16", "int8dyn"])
    ap.add_argument("--glm-layers", type=int, default=2)
    ap.add_argument("--vit-layers", type=int, default=4)
    ap.add_argument("--prompt-len", type=int, default=300)
    ap.add_argument("--decode-steps", type=int, default=16)
    ap.add_argument("--image-batch", default="1,8")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-vision", action="store_true")
    ap.add_argument(
        "--lockstep",
        choices=["decode", "encode"],
        help="print 'ready', then per stdin line run one decode step or one image batch (the first "
        "--image-batch) and print its ms (per image), until 'quit' (bench/lockstep.py)",
    )
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16, "int8dyn": torch.float32}[a.format]
    rows = []
    with torch.inference_mode():
        if not a.no_vision:
            enc = ImageEncoder(a.vit_layers)
            init_(enc)
            enc = enc.to(dtype).eval()
            if a.lockstep == "encode":
                b = int(a.image_batch.split(",")[0])
                px = torch.randn(b, 3, 224, 224, dtype=dtype)
                enc(px)
                return lockstep(lambda: enc(px), b)
            for b in [int(x) for x in a.image_batch.split(",")]:
                px = torch.randn(b, 3, 224, 224, dtype=dtype)
                ms = timed(a.reps, lambda: enc(px))
                rows.append((f"image_encode_b{b}_ms_per_image", ms / b, "ms"))
            del enc
        glm = Glm(a.glm_layers)
        init_(glm)
        glm = glm.to(dtype).eval()
        if a.format == "int8dyn":
            glm.layers = torch.ao.quantization.quantize_dynamic(glm.layers, {nn.Linear}, dtype=torch.qint8)
        n = max(a.prompt_len, 3)
        ids = torch.tensor([[5 + (i * 7919) % 60000 for i in range(n - 2)] + [130001, 130004]])
        # Text-only prompt ending [gMASK] <sop>: context = n-1 tokens, mask position = n-2.
        ctx, g = n - 1, n - 2
        pos = torch.stack([torch.tensor(list(range(ctx)) + [g]), torch.tensor([0] * ctx + [1])])
        allowed = torch.ones(n, n, dtype=torch.bool).tril()
        allowed[:, :ctx] = True
        mask = torch.zeros(n, n, dtype=dtype).masked_fill(~allowed, float("-inf"))

        def prefill():
            caches = [[None, None] for _ in range(a.glm_layers)]
            h = glm(ids, pos, mask, caches)
            return glm.lm_head(h[:, -1:]), caches

        ms = timed(a.reps, prefill)
        rows.append(("prefill_tok_per_s", n / (ms / 1e3), "tok/s"))
        rows.append(("prefill_ms", ms, "ms"))
        logits, caches = prefill()
        nxt = logits.float().argmax(-1)
        if a.lockstep == "decode":
            state = {"nxt": nxt, "step": 0}

            def one_step():
                p = torch.tensor([[g], [state["step"] + 2]])
                state["nxt"] = glm.lm_head(glm(state["nxt"], p, None, caches)).float().argmax(-1)
                state["step"] += 1

            return lockstep(one_step, 1)
        steps, heads = [], []
        for step in range(max(a.decode_steps, 1)):
            t = time.perf_counter()
            p = torch.tensor([[g], [step + 2]])
            h = glm(nxt, p, None, caches)
            th = time.perf_counter()
            nxt = glm.lm_head(h).float().argmax(-1)
            heads.append((time.perf_counter() - th) * 1e3)
            steps.append((time.perf_counter() - t) * 1e3)
        step, head = min(steps), min(heads)
        rows.append(("decode_ms_per_token", step, "ms"))
        rows.append(("decode_lm_head_ms", head, "ms"))
        per_layer = (step - head) / max(a.glm_layers, 1)
        rows.append(("decode_ms_per_glm_layer", per_layer, "ms"))
        rows.append(("decode_ms_per_token_28_layers_est", head + 28 * per_layer, "ms"))
    rows.append(("peak_rss_mib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MiB"))
    for k, v, u in rows:
        print(f"torch-{a.format}\t{k}\t{v:.2f}\t{u}")


if __name__ == "__main__":
    main()
