//! The model runs in f16 and bf16 too, close to the f32 reference.

use crate::support;
use visualglm::EmbedSpan;

use candle_core::{DType, Device, Tensor};
use support::{fixture, golden, ids_u32};
use visualglm::{LoadOptions, VisualGlm};

fn cosine(a: &Tensor, b: &Tensor) -> f32 {
    let a = a.flatten_all().unwrap().to_dtype(DType::F32).unwrap();
    let b = b.flatten_all().unwrap().to_dtype(DType::F32).unwrap();
    let dot = (&a * &b)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let na = a
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
        .sqrt();
    let nb = b
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
        .sqrt();
    dot / (na * nb)
}

#[test]
fn half_precision_logits_stay_close_to_the_reference() {
    let g = fixture("model/golden_hf.safetensors");
    let ids = ids_u32(&g["input_ids"]);
    // bf16 is refused on the CPU (see below); on a GPU it would join this list.
    let cases: &[(DType, f32)] = &[(DType::F16, 0.999)];
    for &(dtype, min_cos) in cases {
        let model = VisualGlm::load(
            &golden("checkpoints/hf"),
            &Device::Cpu,
            dtype,
            &LoadOptions::default(),
        )
        .unwrap();
        assert_eq!(model.dtype(), dtype);
        let image = model.encode_image(&g["pixel_values"]).unwrap();
        let logits = model
            .prompt_logits(&ids, &[EmbedSpan::new(2, image.clone())])
            .unwrap();
        assert_eq!(logits.dtype(), DType::F32, "logits come back in f32");
        let c = cosine(&logits, &g["logits"]);
        assert!(c >= min_cos, "{dtype:?}: cosine {c} < {min_cos}");
    }
}

#[test]
fn bf16_on_the_cpu_is_refused_with_a_clear_error() {
    let err = VisualGlm::load(
        &golden("checkpoints/hf"),
        &Device::Cpu,
        DType::BF16,
        &LoadOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("f16"), "{err}");
}
