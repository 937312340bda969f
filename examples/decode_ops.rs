//! Times one ChatGLM-6B block's decode step operation by operation, at the full width with f16
//! weights and a KV cache of 300 and 2000 positions: the four linear layers (`Linear::forward`,
//! bias included), the LayerNorms, the rotary embedding, the cache append, attention, the GELU
//! and the residuals. It shows where a step's time goes beyond streaming the weights.
//!
//! `cargo build --release --example decode_ops && RAYON_NUM_THREADS=2 target/release/examples/decode_ops`

use candle_core::{DType, Device, Module, Tensor};
use visualglm_language::rotary::Rotary2d;
use visualglm_language::KvCache;
use visualglm_nn::attention::composed_attention;
use visualglm_nn::{merge_heads, scaled_dot_product_attention, split_qkv, LayerNorm, Linear};

mod common;
use common::best_ms;

fn linear(n: usize, k: usize, dev: &Device) -> candle_core::Result<Linear> {
    let w = Tensor::randn(0f32, 0.02, (n, k), dev)?.to_dtype(DType::F16)?;
    let b = Tensor::randn(0f32, 0.02, n, dev)?.to_dtype(DType::F16)?;
    Ok(Linear::from_weights(w, Some(b)))
}

fn main() -> anyhow::Result<()> {
    visualglm_alloc::tune_for_inference();
    let dev = Device::Cpu;
    let (hidden, heads, inner) = (4096usize, 32usize, 16384usize);
    let head_dim = hidden / heads;
    let f16 = DType::F16;
    let qkv = linear(3 * hidden, hidden, &dev)?;
    let dense = linear(hidden, hidden, &dev)?;
    let fc1 = linear(inner, hidden, &dev)?;
    let fc2 = linear(hidden, inner, &dev)?;
    let ln = LayerNorm::new(
        Tensor::ones(hidden, f16, &dev)?,
        Tensor::zeros(hidden, f16, &dev)?,
        1e-5,
    )?;
    let rotary = Rotary2d::new(head_dim, true, &dev)?;
    let x = Tensor::randn(0f32, 1.0, (1, 1, hidden), &dev)?.to_dtype(f16)?;
    let pos = Tensor::new(&[[[301u32], [2]]], &dev)?;
    for past in [300usize, 2000] {
        let report = |what: &str, ms: f64| println!("ctx={past}\t{what}\t{ms:.3}\tms");
        let mut cache = KvCache::new(1);
        let kv = Tensor::randn(0f32, 1.0, (1, heads, past, head_dim), &dev)?.to_dtype(f16)?;
        cache.append(0, &kv, &kv)?;
        let a = ln.forward(&x)?;
        report(
            "input layernorm",
            best_ms(20, || ln.forward(&x).map(|_| ()))?,
        );
        let h = qkv.forward(&a)?;
        report(
            "query_key_value [1, 4096] x [4096, 12288]",
            best_ms(10, || qkv.forward(&a).map(|_| ()))?,
        );
        let (q, k, v) = split_qkv(&h, heads)?;
        report(
            "split q, k, v into heads",
            best_ms(20, || split_qkv(&h, heads).map(|_| ()))?,
        );
        report(
            "rotary q and k",
            best_ms(20, || {
                rotary.apply(&q, &pos)?;
                rotary.apply(&k, &pos).map(|_| ())
            })?,
        );
        // Each run appends one more position: 21 runs stay within the cache's free room (at
        // least 47 positions at these lengths), so none of them grows the buffers.
        report(
            "cache append",
            best_ms(20, || cache.append(0, &k, &v).map(|_| ()))?,
        );
        let (kc, vc) = cache.append(0, &k, &v)?;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let ctx = scaled_dot_product_attention(&q, &kc, &vc, scale, None)?;
        report(
            "attention, batched matmuls",
            best_ms(10, || {
                composed_attention(&q, &kc, &vc, scale, None).map(|_| ())
            })?,
        );
        report(
            "attention, one pass (decode)",
            best_ms(10, || {
                scaled_dot_product_attention(&q, &kc, &vc, scale, None).map(|_| ())
            })?,
        );
        let merged = merge_heads(&ctx)?;
        report(
            "dense [1, 4096] x [4096, 4096]",
            best_ms(10, || dense.forward(&merged).map(|_| ()))?,
        );
        report(
            "alpha residual",
            best_ms(20, || ((&a * 7.48)? + &x).map(|_| ()))?,
        );
        let up = fc1.forward(&a)?;
        report(
            "dense_h_to_4h [1, 4096] x [4096, 16384]",
            best_ms(10, || fc1.forward(&a).map(|_| ()))?,
        );
        report(
            "gelu (tanh), candle",
            best_ms(20, || up.gelu().map(|_| ()))?,
        );
        report(
            "gelu (tanh), fused",
            best_ms(20, || visualglm_nn::activation::gelu_tanh(&up).map(|_| ()))?,
        );
        report(
            "dense_4h_to_h [1, 16384] x [16384, 4096]",
            best_ms(10, || fc2.forward(&up).map(|_| ()))?,
        );
    }
    Ok(())
}
