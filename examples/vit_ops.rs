//! Times the image encoder's operations one by one at the full ViT-g / Q-Former widths, for one
//! image (257 tokens) and a batch of 8: the linear layers (`Linear::forward`, bias included), the
//! attention matmuls and whole attention (heads copied out, or read in place), and the
//! elementwise and row ops, each as candle's op and as this project's fused kernel. `bench/torch_vit_ops.py` times the same operations in PyTorch (BENCHMARKS.md).
//!
//! `cargo build --release --example vit_ops && RAYON_NUM_THREADS=2 target/release/examples/vit_ops`

use candle_core::{Device, Module, Tensor, D};
use visualglm_nn::attention::projection::{attention, Heads};

mod common;
use common::best_ms;

fn main() -> anyhow::Result<()> {
    visualglm_alloc::tune_for_inference();
    let dev = Device::Cpu;
    let heads = 16;
    for b in [1usize, 8] {
        let tokens = 257 * b;
        let report = |what: &str, ms: f64| println!("b={b}\t{what}\t{ms:.2}\tms");
        // Linear layers: ViT qkv, dense, fc1, fc2; Q-Former (32 queries per image) and the
        // cross-attention keys/values over the image tokens; glm_proj; the patch embedding.
        let shapes = [
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
        ];
        for (name, m, k, n) in shapes {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
            let w = Tensor::randn(0f32, 0.02, (n, k), &dev)?;
            let bias = Tensor::randn(0f32, 1.0, n, &dev)?;
            let linear = visualglm_nn::Linear::from_weights(w, Some(bias));
            let ms = best_ms(3, || linear.forward(&x).map(|_| ()))?;
            let gf = 2.0 * (m * k * n) as f64 / ms / 1e6;
            println!(
                "b={b}\tlinear (with bias) {name} [{m}, {k}] x [{k}, {n}]\t{ms:.2}\tms\t{gf:.0}\tGF/s"
            );
        }
        let q = Tensor::randn(0f32, 1.0, (b, heads, 257, 88), &dev)?;
        let k = Tensor::randn(0f32, 1.0, (b, heads, 257, 88), &dev)?;
        let p = Tensor::randn(0f32, 1.0, (b, heads, 257, 257), &dev)?;
        report(
            "attention q·kT",
            best_ms(3, || q.matmul(&k.t()?).map(|_| ()))?,
        );
        report("attention p·v", best_ms(3, || p.matmul(&k).map(|_| ()))?);
        report(
            "softmax, candle",
            best_ms(5, || candle_nn::ops::softmax_last_dim(&p).map(|_| ()))?,
        );
        report(
            "softmax, fused",
            best_ms(5, || {
                visualglm_nn::softmax::softmax_last_dim(&p).map(|_| ())
            })?,
        );
        let x = Tensor::randn(0f32, 1.0, (b, 257, 1408), &dev)?;
        let (w, bias) = (
            Tensor::randn(1f32, 0.1, 1408, &dev)?,
            Tensor::randn(0f32, 0.1, 1408, &dev)?,
        );
        let composed = || -> candle_core::Result<Tensor> {
            let mean = x.mean_keepdim(D::Minus1)?;
            let centered = x.broadcast_sub(&mean)?;
            let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
            centered
                .broadcast_div(&(var + 1e-6)?.sqrt()?)?
                .broadcast_mul(&w)?
                .broadcast_add(&bias)
        };
        report(
            "layer norm, candle ops",
            best_ms(5, || composed().map(|_| ()))?,
        );
        let ln = visualglm_nn::LayerNorm::new(w.clone(), bias.clone(), 1e-6)?;
        report(
            "layer norm, fused",
            best_ms(5, || ln.forward(&x).map(|_| ()))?,
        );
        let h = Tensor::randn(0f32, 1.0, (b, 257, 6144), &dev)?;
        report(
            "gelu(erf), candle",
            best_ms(5, || h.gelu_erf().map(|_| ()))?,
        );
        report(
            "gelu(erf), fused",
            best_ms(5, || visualglm_nn::activation::gelu_erf(&h).map(|_| ()))?,
        );
        let qkv = Tensor::randn(0f32, 1.0, (b, 257, 4224), &dev)?;
        report(
            "split q, k, v into heads",
            best_ms(5, || visualglm_nn::split_qkv(&qkv, heads).map(|_| ()))?,
        );
        // Whole attention from the projection outputs to merged heads: the ViT's from its
        // fused `[Q|K|V]`, the Q-Former's cross-attention from its queries and fused `[K|V]`
        // over the image tokens; heads copied out (split, batched matmuls, merge) or read in
        // place (`projection_attention`).
        let q32 = Tensor::randn(0f32, 1.0, (b, 32, 768), &dev)?;
        let kv = Tensor::randn(0f32, 1.0, (b, 257, 1536), &dev)?;
        let cases = [
            (
                "vit self-attention",
                (&qkv, 0),
                (&qkv, 1408),
                (&qkv, 2816),
                heads,
                88,
            ),
            (
                "qformer cross-attention",
                (&q32, 0),
                (&kv, 0),
                (&kv, 768),
                12,
                64,
            ),
        ];
        for (name, q, k, v, heads, d) in cases {
            let scale = 1.0 / (d as f64).sqrt();
            let copied = || -> candle_core::Result<()> {
                let split = |(t, at): (&Tensor, usize)| {
                    visualglm_nn::split_heads(&t.narrow(2, at, heads * d)?, heads)
                };
                let ctx = visualglm_nn::scaled_dot_product_attention(
                    &split(q)?,
                    &split(k)?,
                    &split(v)?,
                    scale,
                    None,
                )?;
                visualglm_nn::merge_heads(&ctx)?.contiguous().map(|_| ())
            };
            report(&format!("{name}, heads copied"), best_ms(5, copied)?);
            let heads_at = |(t, at)| Heads::new(t, at);
            let in_place = || {
                attention(heads_at(q), heads_at(k), heads_at(v), heads, d, scale)?
                    .contiguous()
                    .map(|_| ())
            };
            report(&format!("{name}, in place"), best_ms(5, in_place)?);
        }
        report("residual add", best_ms(5, || (&x + &x).map(|_| ()))?);
    }
    Ok(())
}
