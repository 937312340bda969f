//! Activation checkpointing changes memory, not numbers: with every ChatGLM and ViT block (and
//! Q-Former layer, when the ViT is frozen) recomputed in the backward pass, the loss and the gradient of every trained tensor (ViT
//! weights, `glm_proj`, ChatGLM weights and LoRA adapters on a frozen ChatGLM layer) equal
//! those of the plain backward pass.

use crate::support;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use support::{golden, tiny_tokenizer, two_cat_examples};
use visualglm::finetune::{batch_loss, load_trainable};
use visualglm::lora::recipe::glm_config;
use visualglm_nn::checkpoint::Checkpointing;
use visualglm_nn::lora::LoraAdapters;
use visualglm_testing::max_abs_diff;
use visualglm_tokenizer::ChatGlmTokenizer;

#[test]
fn checkpointed_gradients_equal_plain_gradients() {
    let dir = tempfile::tempdir().unwrap();
    let tok = ChatGlmTokenizer::from_file(tiny_tokenizer(dir.path())).unwrap();
    let trainable = [
        "image_encoder.vit.transformer.layers.0.",
        "image_encoder.glm_proj",
        "transformer.layers.1.mlp.dense_4h_to_h",
    ];
    let trainable: Vec<String> = trainable.iter().map(|s| s.to_string()).collect();
    let mut tm = load_trainable(&golden("checkpoints/hf"), &trainable, &Device::Cpu).unwrap();
    let lora = LoraAdapters::init(
        glm_config(4, 8.0, Some(vec![0])),
        &tm.frozen,
        7,
        &Device::Cpu,
    )
    .unwrap();
    let (set, lora_vars) = lora.to_vars().unwrap();
    tm.model.attach_lora(&set).unwrap();
    // LoRA's B starts at zero (so A's gradient is zero): give it values first.
    for (name, var) in &lora_vars {
        if name.contains("lora_B") {
            var.set(&var.as_tensor().randn_like(0.0, 0.02).unwrap())
                .unwrap();
        }
    }
    let mut vars = tm.vars.clone();
    vars.extend(lora_vars);
    assert!(vars.len() > 10, "{} trained tensors", vars.len());

    let (pixels, batch, pre) = two_cat_examples(&tm.model, &tok);

    let gradients = |store: &candle_core::backprop::GradStore| -> HashMap<String, Tensor> {
        vars.iter()
            .map(|(n, v)| (n.clone(), store.get(v.as_tensor()).expect(n).clone()))
            .collect()
    };
    let plain_loss = batch_loss(&tm.model, &pixels, &batch, pre).unwrap();
    let plain = gradients(&plain_loss.backward().unwrap());

    let ck = Checkpointing::new(vars.iter().map(|(_, v)| v.as_tensor().clone()).collect());
    tm.model.set_checkpointing(Some(ck.clone()));
    let loss = batch_loss(&tm.model, &pixels, &batch, pre).unwrap();
    let mut store = loss.backward().unwrap();
    ck.merge_into(&mut store).unwrap();
    let checkpointed = gradients(&store);

    let (a, b) = (
        plain_loss.to_scalar::<f32>().unwrap(),
        loss.to_scalar::<f32>().unwrap(),
    );
    assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "loss {a} vs {b}");
    for (name, want) in &plain {
        let got = &checkpointed[name];
        let scale = want
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(scale > 0.0, "{name}: zero gradient");
        let diff = max_abs_diff(got, want);
        assert!(
            diff <= 1e-6 * scale.max(1.0),
            "{name}: checkpointed gradient differs by {diff:e} (scale {scale:e})"
        );
    }
}

/// With the ViT frozen, the Q-Former's layers are checkpointed too: trained Q-Former weights
/// (self- and cross-attention layers) get the plain backward pass's gradients.
#[test]
fn checkpointed_qformer_gradients_equal_plain_gradients() {
    let dir = tempfile::tempdir().unwrap();
    let tok = ChatGlmTokenizer::from_file(tiny_tokenizer(dir.path())).unwrap();
    let trainable: Vec<String> = ["image_encoder.qformer.", "image_encoder.glm_proj"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut tm = load_trainable(&golden("checkpoints/hf"), &trainable, &Device::Cpu).unwrap();
    let vars = tm.vars.clone();
    assert!(
        vars.iter().any(|(n, _)| n.contains("cross_attention")),
        "a cross-attention layer trains"
    );
    let (pixels, batch, pre) = two_cat_examples(&tm.model, &tok);
    let gradients = |store: &candle_core::backprop::GradStore| -> HashMap<String, Tensor> {
        vars.iter()
            .filter_map(|(n, v)| Some((n.clone(), store.get(v.as_tensor())?.clone())))
            .collect()
    };
    let plain_loss = batch_loss(&tm.model, &pixels, &batch, pre).unwrap();
    let plain = gradients(&plain_loss.backward().unwrap());
    assert!(plain.len() > 10, "{} gradients", plain.len());

    let ck = Checkpointing::new(vars.iter().map(|(_, v)| v.as_tensor().clone()).collect());
    tm.model.set_checkpointing(Some(ck.clone()));
    let loss = batch_loss(&tm.model, &pixels, &batch, pre).unwrap();
    let mut store = loss.backward().unwrap();
    // The Q-Former's gradients come from the segments' own backward passes.
    let outer = gradients(&store).len();
    ck.merge_into(&mut store).unwrap();
    let checkpointed = gradients(&store);
    assert!(outer < checkpointed.len(), "the layers were checkpointed");
    assert_eq!(checkpointed.len(), plain.len());
    for (name, want) in &plain {
        let scale = want
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let diff = max_abs_diff(&checkpointed[name], want);
        assert!(
            diff <= 1e-6 * scale.max(1.0),
            "{name}: checkpointed gradient differs by {diff:e} (scale {scale:e})"
        );
    }
}

/// A whole fine-tune (LoRA on ChatGLM layer 0 plus `glm_proj`) with
/// `checkpoint_activations = true` reports the same losses and gradient norms as without.
#[test]
fn checkpointed_run_tracks_the_plain_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("train.json");
    let records = serde_json::json!([
        {"img": golden("images/chelsea.png"), "prompt": "Describe the image.", "label": "a cat on a floor"},
        {"img": golden("images/astronaut.png"), "prompt": "Describe the image.", "label": "an astronaut"},
    ]);
    std::fs::write(&data, records.to_string()).unwrap();
    let run = |out: &str, checkpoint_activations: bool| {
        let cfg = visualglm::finetune::FinetuneConfig {
            data: data.clone(),
            model: golden("checkpoints/hf"),
            tokenizer: Some(tiny_tokenizer(dir.path())),
            out: dir.path().join(out),
            trainable: vec!["image_encoder.glm_proj".into()],
            lora_rank: 4,
            lora_alpha: 8.0,
            lora_layers: Some(vec![0]),
            steps: 3,
            batch_size: 2,
            lr: 3e-3,
            warmup_steps: 0,
            clip: 1.0,
            max_source_length: 48,
            max_target_length: 16,
            english: true,
            export: false,
            checkpoint_activations,
            ..Default::default()
        };
        visualglm::finetune::finetune(&cfg, &Device::Cpu, &mut |_| true).unwrap()
    };
    let plain = run("plain", false);
    let checkpointed = run("checkpointed", true);
    assert_eq!(plain.len(), 3);
    for (a, b) in plain.iter().zip(&checkpointed) {
        assert!(!a.skipped && !b.skipped);
        assert!(
            (a.loss - b.loss).abs() <= 1e-5 * a.loss.abs(),
            "{a:?} vs {b:?}"
        );
        assert!(
            (a.grad_norm - b.grad_norm).abs() <= 1e-5 * a.grad_norm.abs(),
            "{a:?} vs {b:?}"
        );
    }
}
