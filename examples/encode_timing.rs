//! Times image encoding on the tiny golden model, one image at a time vs a batch.
//! `cargo run --release --example encode_timing -- ../shared/golden/checkpoints/hf 16`

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use visualglm::VisualGlm;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("../shared/golden/checkpoints/hf");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(16);
    let model = VisualGlm::load(path.as_ref(), &Device::Cpu, DType::F32, &Default::default())?;
    let one = Tensor::randn(0f32, 1.0, (1, 3, 224, 224), &Device::Cpu)?;
    let batch = Tensor::cat(&vec![&one; n], 0)?;
    model.encode_image(&one)?;
    let t = Instant::now();
    for _ in 0..n {
        model.encode_image(&one)?;
    }
    let single = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    model.encode_image(&batch)?;
    let batched = t.elapsed().as_secs_f64() * 1e3;
    println!("{n} images: one at a time {single:.1} ms, batched {batched:.1} ms");
    Ok(())
}
