"""PyTorch counterpart of `examples/vit_ops.rs`: the image encoder's operations one by one.

python3 bench/torch_vit_ops.py   (2 threads, like the Rust example with RAYON_NUM_THREADS=2)
"""
import time

import torch

F = torch.nn.functional
torch.set_num_threads(2)


def best_ms(f, reps=3):
    f()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best * 1e3


with torch.inference_mode():
    for b in [1, 8]:
        tokens = 257 * b
        shapes = [
            ("vit qkv", tokens, 1408, 4224),
            ("vit dense", tokens, 1408, 1408),
            ("vit fc1", tokens, 1408, 6144),
            ("vit fc2", tokens, 6144, 1408),
            ("qformer qkv", 32 * b, 768, 2304),
            ("qformer fc1", 32 * b, 768, 3072),
            ("qformer fc2", 32 * b, 3072, 768),
            ("qformer cross kv", tokens, 1408, 768),
            ("glm_proj", 32 * b, 768, 4096),
            ("patch embedding", 256 * b, 588, 1408),
        ]
        for name, m, k, n in shapes:
            x, w, bias = torch.randn(m, k), torch.randn(n, k) * 0.02, torch.randn(n)
            ms = best_ms(lambda: F.linear(x, w, bias))
            print(f"b={b}\tlinear (with bias) {name} [{m}, {k}] x [{k}, {n}]\t{ms:.2f}\tms\t{2 * m * k * n / ms / 1e6:.0f}\tGF/s")
        q, k = torch.randn(b, 16, 257, 88), torch.randn(b, 16, 257, 88)
        p = torch.randn(b, 16, 257, 257)
        print(f"b={b}\tattention q·kT\t{best_ms(lambda: q @ k.transpose(-1, -2)):.2f}\tms")
        print(f"b={b}\tattention p·v\t{best_ms(lambda: p @ k):.2f}\tms")
        print(f"b={b}\tsoftmax\t{best_ms(lambda: p.softmax(-1), 5):.2f}\tms")
        x, w, bias = torch.randn(b, 257, 1408), torch.randn(1408), torch.randn(1408)
        print(f"b={b}\tlayer norm\t{best_ms(lambda: F.layer_norm(x, (1408,), w, bias, 1e-6), 5):.2f}\tms")
        h = torch.randn(b, 257, 6144)
        print(f"b={b}\tgelu(erf)\t{best_ms(lambda: F.gelu(h), 5):.2f}\tms")
        print(f"b={b}\tresidual add\t{best_ms(lambda: x + x, 5):.2f}\tms")

        # Whole attention from the projection outputs to merged heads, as the reference code
        # writes it: EVA's from its fused qkv, the Q-Former's cross-attention from its queries
        # and the keys and values over the image tokens.
        def vit_attention(qkv, heads=16, d=88):
            q, k, v = qkv.reshape(b, 257, 3, heads, d).permute(2, 0, 3, 1, 4)
            attn = ((q * d ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
            return (attn @ v).transpose(1, 2).reshape(b, 257, heads * d)

        def cross_attention(q, kv, heads=12, d=64):
            split = lambda t: t.view(b, -1, heads, d).permute(0, 2, 1, 3)
            k, v = kv.split(heads * d, -1)
            attn = (split(q) @ split(k).transpose(-1, -2) / d ** 0.5).softmax(-1)
            return (attn @ split(v)).permute(0, 2, 1, 3).contiguous().view(b, -1, heads * d)

        qkv, q32, kv = torch.randn(b, 257, 4224), torch.randn(b, 32, 768), torch.randn(b, 257, 1536)
        print(f"b={b}\tvit self-attention\t{best_ms(lambda: vit_attention(qkv), 5):.2f}\tms")
        print(f"b={b}\tqformer cross-attention\t{best_ms(lambda: cross_attention(q32, kv), 5):.2f}\tms")
