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

/// Two English training examples about `images/chelsea.png` ("Describe." → "a cat", "What is
/// it?" → "a small grey cat") for `model`: their labeled ids (max source 48, max target 16),
/// the image-prefix length, and the pixels of the two images on the CPU.
pub fn two_cat_examples(
    model: &visualglm::VisualGlm,
    tok: &visualglm_tokenizer::ChatGlmTokenizer,
) -> (
    candle_core::Tensor,
    Vec<visualglm_train::labels::LabeledIds>,
    usize,
) {
    let labels = visualglm_train::labels::LabelConfig {
        max_source_length: 48,
        max_target_length: 16,
        ..Default::default()
    };
    let image_length = model.config().image_length;
    let mut batch = Vec::new();
    let mut pre = 0;
    for (q, a) in [("Describe.", "a cat"), ("What is it?", "a small grey cat")] {
        let (ids, p) =
            visualglm::finetune::example_ids(tok, image_length, q, a, true, &labels).unwrap();
        batch.push(ids);
        pre = p;
    }
    let image =
        visualglm_vision::decode::load_image(golden("images/chelsea.png"), &Default::default())
            .unwrap();
    let pixels = model
        .image_preprocessor()
        .preprocess_batch(&[image.clone(), image], &candle_core::Device::Cpu)
        .unwrap();
    (pixels, batch, pre)
}
