//! Frozen bases in half precision or GGML blocks (QLoRA) give the LoRA adapters nearly the
//! gradients of the f32 base, a run over a quantized base writes the adapter and the model
//! merged over the stored base, and resuming over another base is refused.
//!
//! Cosine of the LoRA gradients against the f32 base, measured 2026-12-07
//! (`bench/results/train/2026-12-07-lora-gradient-cosines.txt`): on the tiny golden model f16
//! 1.000000, q8_0 0.99988, q4_0 0.980 (issue 18 asked ≥ 0.99 for q4_0: not met); on a model
//! made by `visualglm init` with the golden configuration widened to 512, q4_0 0.9934. The
//! floors below guard these values.

use crate::support;

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use support::{golden, max_abs_diff, tiny_tokenizer, two_cat_examples};
use visualglm::checkpoint;
use visualglm::finetune::{batch_loss, finetune, load_trainable_with, BaseWeights, FinetuneConfig};
use visualglm::init::{adopt_tokenizer, random_checkpoint};
use visualglm::lora::recipe::glm_config;
use visualglm::model_dir::write_model_dir;
use visualglm::{VisualGlm, VisualGlmConfig};

use std::path::Path;
use visualglm_nn::lora::LoraAdapters;
use visualglm_tokenizer::ChatGlmTokenizer;

/// The LoRA gradients (concatenated in name order) of one batch over the model at `model`
/// with its base held as `base`.
fn lora_gradients(model: &Path, base: &BaseWeights, tok: &ChatGlmTokenizer) -> (Vec<f32>, usize) {
    let dev = Device::Cpu;
    let mut tm = load_trainable_with(model, &[], &dev, base).unwrap();
    let set = LoraAdapters::init(glm_config(4, 8.0, None), &tm.frozen, 7, &dev).unwrap();
    let (set, mut vars) = set.to_vars().unwrap();
    // B starts at zero (A's gradient would be zero): give it fixed values.
    for (name, var) in &vars {
        if name.contains("lora_B") {
            let n = var.as_tensor().elem_count();
            let vals: Vec<f32> = (0..n).map(|i| 0.05 * (i as f32 * 0.37).sin()).collect();
            var.set(&Tensor::from_vec(vals, var.as_tensor().dims(), &dev).unwrap())
                .unwrap();
        }
    }
    tm.model.attach_lora(&set).unwrap();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let (pixels, batch, pre) = two_cat_examples(&tm.model, tok);
    let grads = batch_loss(&tm.model, &pixels, &batch, pre)
        .unwrap()
        .backward()
        .unwrap();
    let mut flat = Vec::new();
    for (name, var) in &vars {
        let g = grads.get(var.as_tensor()).expect(name);
        flat.extend(g.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }
    (flat, tm.quantized.len())
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn lora_gradients_over_half_and_quantized_bases_follow_the_f32_base() {
    let dir = tempfile::tempdir().unwrap();
    let tok = ChatGlmTokenizer::from_file(tiny_tokenizer(dir.path())).unwrap();
    let golden = golden("checkpoints/hf");
    let (f32_grads, none) = lora_gradients(&golden, &BaseWeights::default(), &tok);
    assert_eq!(none, 0);
    assert!(f32_grads.iter().any(|g| *g != 0.0));
    let cases = [
        (DType::F16, None, 0.999, 0),
        (DType::F32, Some(GgmlDType::Q8_0), 0.999, 8),
        (DType::F16, Some(GgmlDType::Q4_0), 0.975, 8),
        // q4k's 256-blocks do not divide the tiny model's width 64: those fall back to q4_0.
        (DType::F16, Some(GgmlDType::Q4K), 0.975, 8),
    ];
    for (dtype, quantize, floor, quantized) in cases {
        let base = BaseWeights { dtype, quantize };
        let (grads, n) = lora_gradients(&golden, &base, &tok);
        assert_eq!(n, quantized, "{base:?}: quantized linears");
        let c = cosine(&grads, &f32_grads);
        assert!(c >= floor, "{base:?}: cosine {c} < {floor}");
        assert!(
            c < 1.0 - 1e-9 || dtype == DType::F32,
            "{base:?}: identical to f32?"
        );
        eprintln!("{base:?}: cosine {c:.6}");
    }
}

/// At the golden configuration widened to 512 (a model made by `visualglm init`), q4_0 gives
/// the LoRA adapters gradients within the 0.99 of the f32 base.
#[test]
fn q4_0_lora_gradients_on_an_initialised_wider_model() {
    let dir = tempfile::tempdir().unwrap();
    let tok_path = tiny_tokenizer(dir.path());
    let tok = ChatGlmTokenizer::from_file(&tok_path).unwrap();
    let (mut config, family) =
        VisualGlmConfig::from_file(&golden("checkpoints/hf/config.json")).unwrap();
    config.glm.hidden_size = 512;
    config.glm.num_attention_heads = 8;
    config.glm.inner_hidden_size = Some(2048);
    adopt_tokenizer(&mut config, &tok);
    let ck = random_checkpoint(&config, family, 0).unwrap();
    let model = dir.path().join("wide");
    write_model_dir(&ck, &tok_path, &model).unwrap();
    let (f32_grads, _) = lora_gradients(&model, &BaseWeights::default(), &tok);
    let q4 = BaseWeights {
        dtype: DType::F32,
        quantize: Some(GgmlDType::Q4_0),
    };
    let (grads, n) = lora_gradients(&model, &q4, &tok);
    assert_eq!(n, 8);
    let c = cosine(&grads, &f32_grads);
    eprintln!("q4_0 at width 512: cosine {c:.6}");
    assert!((0.99..1.0 - 1e-9).contains(&c), "cosine {c}");
}

/// A short LoRA run over a q8_0 base trains, writes the adapter and the model merged over the
/// stored base, and refuses to resume over an f32 base.
#[test]
fn a_quantized_base_run_exports_the_adapter_and_resume_checks_the_base() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("train.json");
    let records = serde_json::json!([
        {"img": golden("images/chelsea.png"), "prompt": "Describe the image.", "label": "a cat on a floor"},
        {"img": golden("images/astronaut.png"), "prompt": "Describe the image.", "label": "an astronaut"},
    ]);
    std::fs::write(&data, records.to_string()).unwrap();
    let cfg = FinetuneConfig {
        data,
        model: golden("checkpoints/hf"),
        tokenizer: Some(tiny_tokenizer(dir.path())),
        out: dir.path().join("run"),
        trainable: vec![],
        lora_rank: 4,
        lora_alpha: 8.0,
        steps: 3,
        batch_size: 2,
        lr: 3e-3,
        warmup_steps: 0,
        clip: 1.0,
        max_source_length: 48,
        max_target_length: 16,
        english: true,
        base_dtype: "f16".into(),
        base_quantize: Some("q8_0".into()),
        checkpoint_activations: true,
        ..FinetuneConfig::default()
    };
    let reports = finetune(&cfg, &Device::Cpu, &mut |_| true).unwrap();
    assert_eq!(reports.len(), 3);
    assert!(reports.iter().all(|r| !r.skipped && r.loss.is_finite()));
    assert!(reports
        .iter()
        .all(|r| r.peak_rss_mib.is_some_and(|m| m > 0.0)));
    let adapter = cfg.out.join("adapter");
    assert!(adapter.join("adapter_config.json").is_file());
    assert!(adapter.join("adapter_model.safetensors").is_file());
    let (set, _) = visualglm::lora::load_adapters(&adapter).unwrap();
    assert!(!set.is_empty());
    // The exported model merges the adapter into the base as stored, not into the q8_0 blocks:
    // each ChatGLM linear is the stored weight (+ its adapter's update), in the stored dtype.
    let exported = cfg.out.join("model");
    let got = checkpoint::load(&exported, &Default::default()).unwrap();
    let base = checkpoint::load(&golden("checkpoints/hf"), &Default::default()).unwrap();
    let mut merged = 0;
    for name in base.names() {
        if !(name.starts_with("transformer.layers.") && base.get(name).unwrap().rank() == 2) {
            continue;
        }
        let stored = base.get(name).unwrap();
        let target = name.trim_end_matches(".weight");
        // Written in the stored dtype (f16 here), like the stored weights themselves.
        let want = match set.get(target) {
            Some(a) => {
                merged += 1;
                a.merge_into(target, stored).unwrap()
            }
            None => stored.clone(),
        };
        let want = want.to_dtype(stored.dtype()).unwrap();
        assert_eq!(max_abs_diff(got.get(name).unwrap(), &want), 0.0, "{name}");
    }
    assert_eq!(merged, set.len(), "every adapter merged");
    VisualGlm::load(&exported, &Device::Cpu, DType::F32, &Default::default()).unwrap();

    // More steps over another base: refused, naming both.
    let other = FinetuneConfig {
        steps: 4,
        base_dtype: "f32".into(),
        base_quantize: None,
        ..cfg.clone()
    };
    let err = finetune(&other, &Device::Cpu, &mut |_| true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("base_quantize q8_0") && err.contains("base_quantize none"),
        "{err}"
    );
    // The same base resumes.
    let more = FinetuneConfig { steps: 4, ..cfg };
    let rest = finetune(&more, &Device::Cpu, &mut |_| true).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].step, 4);
}

/// `train --dry-run` prints the plan without data or weights being read and exits 0; a 4-bit
/// base plans fewer frozen bytes than an f16 one.
#[test]
fn dry_run_prints_the_memory_plan() {
    let plan = |extra: &[&str]| -> String {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_visualglm"))
            .args([
                "train",
                "--device",
                "cpu",
                "--dry-run",
                "--lora-rank",
                "4",
                "--model",
            ])
            .arg(golden("checkpoints/hf"))
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let f16 = plan(&["--base-dtype", "f16"]);
    assert!(
        f16.contains("memory plan") && f16.contains("frozen f16"),
        "{f16}"
    );
    assert!(!f16.contains("q4_0"), "{f16}");
    let q4 = plan(&["--base-dtype", "f16", "--base-quantize", "q4_0"]);
    assert!(q4.contains("frozen q4_0"), "{q4}");
}
