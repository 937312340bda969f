//! `x·Wᵀ + b` for the image encoder's many-row shapes (and a ChatGLM prefill), two ways,
//! interleaved: candle's matmul plus a bias add, and `gemm_f32` (one product per thread, bias
//! written first). Prints the median of 15 rounds of each, in ms.
//!
//! `cargo build --release --example linear_split && RAYON_NUM_THREADS=2 target/release/examples/linear_split`

use candle_core::{Device, Tensor};

mod common;
use common::{median, once_ms};

fn main() -> anyhow::Result<()> {
    visualglm_alloc::tune_for_inference();
    let dev = Device::Cpu;
    let shapes = [
        ("vit qkv, 8 images", 2056, 1408, 4224),
        ("vit dense, 8 images", 2056, 1408, 1408),
        ("vit fc1, 8 images", 2056, 1408, 6144),
        ("vit fc2, 8 images", 2056, 6144, 1408),
        ("qformer cross kv, 8 images", 2056, 1408, 1536),
        ("patch embedding, 8 images", 2048, 588, 1408),
        ("vit qkv, 1 image", 257, 1408, 4224),
        ("vit fc1, 1 image", 257, 1408, 6144),
        ("vit fc2, 1 image", 257, 6144, 1408),
        ("qformer qkv, 8 images", 256, 768, 2304),
        ("qformer fc1, 8 images", 256, 768, 3072),
        ("qformer fc2, 8 images", 256, 3072, 768),
        ("qformer dense, 8 images", 256, 768, 768),
        ("chatglm fc1, 300-token prefill", 300, 4096, 16384),
    ];
    println!("shape\tcandle matmul + bias\tgemm_f32\tratio");
    for (name, m, k, n) in shapes {
        let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
        let w = Tensor::randn(0f32, 0.02, (n, k), &dev)?;
        let b = Tensor::randn(0f32, 1.0, n, &dev)?;
        let (mut candle, mut split) = (vec![], vec![]);
        for round in 0..16 {
            let mut timed = [0.0; 2];
            for i in [round % 2, 1 - round % 2] {
                timed[i] = if i == 0 {
                    once_ms(|| x.matmul(&w.t()?)?.broadcast_add(&b))?
                } else {
                    once_ms(|| visualglm_nn::kernels::gemm_f32::matmul(&w, Some(&b), &x))?
                };
            }
            let [a, s] = timed;
            // The first round warms both up; later rounds alternate which runs first.
            if round > 0 {
                candle.push(a);
                split.push(s);
            }
        }
        let (c, s) = (median(candle), median(split));
        println!(
            "{name} [{m}, {k}] x [{k}, {n}]\t{c:.2}\t{s:.2}\t{:.3}",
            c / s
        );
    }
    Ok(())
}
