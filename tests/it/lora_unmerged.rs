//! Unmerged LoRA: adapters applied in `Linear::forward` on top of the frozen base, against
//! the goldens of SAT's `LoraLinear` (`../shared/golden/lora`).

use std::collections::HashMap;
use visualglm::EmbedSpan;

use crate::support::golden;
use candle_core::{DType, Device, Tensor};
use visualglm::lora::{self, LoraAdapters, LoraConfig, LoraError, LoraLoadOptions};
use visualglm::{LoadOptions, VisualGlm};
use visualglm_testing::{assert_close, max_abs_diff};

fn fixture() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(golden("lora/golden_lora.safetensors"), &Device::Cpu).unwrap()
}

fn logits(model: &VisualGlm) -> Tensor {
    let g = fixture();
    let image = model.encode_image(&g["pixel_values"]).unwrap();
    let ids: Vec<u32> = g["input_ids"]
        .flatten_all()
        .unwrap()
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|x| x as u32)
        .collect();
    model
        .prompt_logits(&ids, &[EmbedSpan::new(2, image.clone())])
        .unwrap()
}

fn finetune() -> lora::SatLoraFinetune {
    lora::load_sat_lora(
        &golden("lora/finetune-visualglm-tiny-lora"),
        &LoadOptions::default(),
    )
    .unwrap()
}

#[test]
fn unmerged_logits_match_sat_lora_linear_goldens() {
    let ft = finetune();
    let g = fixture();
    let cpu = Device::Cpu;
    let mut native =
        VisualGlm::from_checkpoint_adapted(&ft.base, &ft.adapters, false, &cpu, DType::F32)
            .unwrap();
    // The weights stay the base ones; the adapters run beside them.
    for (name, linear) in native.language_model_mut().named_linears_mut(false) {
        let adapted = name.starts_with("transformer.layers.0.attention.");
        assert_eq!(linear.adapters().len(), usize::from(adapted), "{name}");
        let w = linear.weight().unwrap();
        assert_eq!(max_abs_diff(w, ft.base.get(&name).unwrap()), 0.0, "{name}");
    }
    let l = logits(&native);
    assert_close(
        "unmerged native α",
        &l,
        &g["logits_sat_lora_native_alpha_sqrt4"],
        1e-4,
        1e-5,
    );
    assert!(max_abs_diff(&l, &g["logits_sat_base_native_alpha_sqrt4"]) > 0.1);

    let mut base = ft.base.clone();
    base.config.glm.residual_alpha = Some(56f64.sqrt());
    let sat56 =
        VisualGlm::from_checkpoint_adapted(&base, &ft.adapters, false, &cpu, DType::F32).unwrap();
    assert_close(
        "unmerged α=√56",
        &logits(&sat56),
        &g["logits_sat_lora_alpha_sqrt56"],
        1e-4,
        1e-5,
    );
}

#[test]
fn detach_gives_the_base_model_back_and_reattach_the_fine_tune() {
    let ft = finetune();
    let g = fixture();
    let opts = LoraLoadOptions::default();
    let mut model = VisualGlm::load_sat_lora(
        &golden("lora/finetune-visualglm-tiny-lora"),
        &Device::Cpu,
        DType::F32,
        &opts,
    )
    .unwrap();
    model.detach_lora();
    assert_close(
        "detached",
        &logits(&model),
        &g["logits_sat_base_native_alpha_sqrt4"],
        1e-4,
        1e-5,
    );
    model.attach_lora(&ft.adapters).unwrap();
    assert_close(
        "re-attached",
        &logits(&model),
        &g["logits_sat_lora_native_alpha_sqrt4"],
        1e-4,
        1e-5,
    );
}

#[test]
fn unmerged_adapter_file_on_the_hf_base_matches_merged() {
    let ft = finetune();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("adapter");
    lora::save_adapters(&ft.adapters, &out, None).unwrap();
    let cpu = Device::Cpu;
    let hf = golden("checkpoints/hf");
    let unmerged =
        VisualGlm::load_adapted(&hf, &out, &cpu, DType::F32, &LoraLoadOptions::default()).unwrap();
    let merged_opts = LoraLoadOptions {
        merge: true,
        ..Default::default()
    };
    let merged = VisualGlm::load_adapted(&hf, &out, &cpu, DType::F32, &merged_opts).unwrap();
    let (lu, lm) = (logits(&unmerged), logits(&merged));
    assert_close(
        "HF unmerged",
        &lu,
        &fixture()["logits_hf_merged"],
        1e-4,
        1e-5,
    );
    assert!(max_abs_diff(&lu, &lm) <= 1e-4);
}

#[test]
fn unmerged_image_encoder_adapters_are_refused_with_a_hint() {
    use visualglm::lora::{TargetRule, QKV, VIT_LAYERS};
    let ck = visualglm::load(
        &golden("checkpoints/sat/visualglm-tiny"),
        &LoadOptions::default(),
    )
    .unwrap();
    let cfg = LoraConfig {
        rank: 2,
        alpha: 1.0,
        dropout: 0.0,
        targets: vec![TargetRule::new(VIT_LAYERS, QKV, 3, Some(vec![0]))],
    };
    let adapters = LoraAdapters::init(cfg, &ck.tensors, 1, &Device::Cpu).unwrap();
    let err = VisualGlm::from_checkpoint_adapted(&ck, &adapters, false, &Device::Cpu, DType::F32)
        .unwrap_err();
    assert!(matches!(err, LoraError::Unsupported(_)), "{err}");
    assert!(
        err.to_string()
            .contains("image_encoder.vit.transformer.layers.0.attention.query_key_value"),
        "{err}"
    );
}

#[test]
fn adapters_run_over_a_quantized_base() {
    use candle_core::quantized::GgmlDType;
    use candle_core::Module;
    use visualglm_nn::Linear;
    let ft = finetune();
    let target = "transformer.layers.0.attention.query_key_value";
    let f32_of = |n: &str| ft.base.get(n).unwrap().to_dtype(DType::F32).unwrap();
    let mut lin = Linear::from_weights(
        f32_of(&format!("{target}.weight")),
        Some(f32_of(&format!("{target}.bias"))),
    );
    lin.quantize(GgmlDType::Q8_0).unwrap();
    assert!(lin.quantized_dtype().is_some());
    let x = Tensor::randn(0f32, 1.0, (1, 5, 64), &Device::Cpu).unwrap();
    let plain = lin.forward(&x).unwrap();
    let adapter = ft.adapters.get(target).unwrap().clone();
    lin.add_adapter(adapter.clone()).unwrap();
    let with = lin.forward(&x).unwrap();
    let want = (&plain + adapter.forward(&x).unwrap()).unwrap();
    assert!(max_abs_diff(&with, &want) <= 1e-5);
    assert!(max_abs_diff(&with, &plain) > 1e-3);
    // An adapter of another shape is refused, and clearing restores the base output.
    let dense = ft
        .adapters
        .get("transformer.layers.0.attention.dense")
        .unwrap()
        .clone();
    assert!(lin.add_adapter(dense).is_err());
    lin.clear_adapters();
    assert_eq!(max_abs_diff(&lin.forward(&x).unwrap(), &plain), 0.0);
}
