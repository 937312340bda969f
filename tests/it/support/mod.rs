//! Test helpers shared by the end-to-end tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A path under `../shared/golden`.
pub use visualglm_testing::golden;

/// The committed tokenizer whose ids fit the tiny golden model (see
/// `examples/make_tiny_tokenizer.rs`). The directory argument is kept for call sites that
/// used to write it there.
pub fn tiny_tokenizer(_dir: &Path) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/tiny/tokenizer.model"
    ))
}

/// A golden safetensors fixture, on the CPU.
pub fn fixture(rel: &str) -> std::collections::HashMap<String, candle_core::Tensor> {
    candle_core::safetensors::load(golden(rel), &candle_core::Device::Cpu)
        .expect("golden fixture readable")
}

/// A tensor of integer ids as `u32`s.
pub fn ids_u32(t: &candle_core::Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_dtype(candle_core::DType::I64)
        .unwrap()
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|x| x as u32)
        .collect()
}

#[allow(unused_imports)]
pub use visualglm_testing::{assert_close, max_abs_diff};

/// Cosine similarity of two tensors of the same number of elements, in f32.
pub fn cosine(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    use candle_core::DType;
    let a = a.flatten_all().unwrap().to_dtype(DType::F32).unwrap();
    let b = b.flatten_all().unwrap().to_dtype(DType::F32).unwrap();
    let s = |t: &candle_core::Tensor| t.sum_all().unwrap().to_scalar::<f32>().unwrap();
    s(&(&a * &b).unwrap()) / (s(&a.sqr().unwrap()).sqrt() * s(&b.sqr().unwrap()).sqrt())
}

/// The tiny golden model (HF layout), f32 on the CPU.
pub fn golden_model() -> visualglm::VisualGlm {
    visualglm::VisualGlm::load(
        &golden("checkpoints/hf"),
        &candle_core::Device::Cpu,
        candle_core::DType::F32,
        &visualglm::LoadOptions::default(),
    )
    .expect("the tiny golden model loads")
}

/// The tiny golden model with the tokenizer at `tokenizer`.
pub fn golden_captioner(tokenizer: &Path) -> visualglm::pipeline::Captioner {
    let tok = visualglm_tokenizer::ChatGlmTokenizer::from_file(tokenizer).expect("tokenizer loads");
    visualglm::pipeline::Captioner::new(golden_model(), tok).expect("model and tokenizer agree")
}
