//! Training LoRA adapters, exporting the trained model as a model directory, initialising a
//! model from scratch, and retrieval with the trained ITC heads.

use crate::support;

use std::process::Command;

use candle_core::{DType, Device, Tensor};
use support::{golden, max_abs_diff, tiny_tokenizer};
use visualglm::finetune::{finetune, FinetuneConfig};
use visualglm::pipeline::Captioner;
use visualglm::{LoadOptions, VisualGlm};
use visualglm_tokenizer::ChatGlmTokenizer;

fn data(dir: &std::path::Path) -> std::path::PathBuf {
    let data = dir.join("train.json");
    let records = serde_json::json!([
        {"img": golden("images/chelsea.png"), "prompt": "Describe the image.", "label": "a cat on a floor"},
        {"img": golden("images/astronaut.png"), "prompt": "Describe the image.", "label": "an astronaut in a suit"},
    ]);
    std::fs::write(&data, records.to_string()).unwrap();
    data
}

fn config(dir: &std::path::Path, out: &str, steps: u64) -> FinetuneConfig {
    FinetuneConfig {
        data: data(dir),
        model: golden("checkpoints/hf"),
        tokenizer: Some(tiny_tokenizer(dir)),
        out: dir.join(out),
        trainable: vec!["image_encoder.glm_proj".into()],
        steps,
        batch_size: 2,
        lr: 1e-2,
        warmup_steps: 0,
        clip: 1.0,
        save_every: 100,
        max_source_length: 48,
        max_target_length: 16,
        english: true,
        ..FinetuneConfig::default()
    }
}

fn load(path: &std::path::Path) -> std::collections::HashMap<String, Tensor> {
    let ck = visualglm::load(path, &LoadOptions::default()).unwrap();
    ck.tensors
        .into_iter()
        .map(|(n, t)| (n, t.to_dtype(DType::F32).unwrap()))
        .collect()
}

#[test]
fn lora_adapters_train_and_are_merged_into_the_exported_model() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FinetuneConfig {
        lora_rank: 4,
        lora_alpha: 4.0,
        lora_layers: Some(vec![1]),
        lora_mlp: true,
        ..config(dir.path(), "run", 3)
    };
    let reports = finetune(&cfg, &Device::Cpu, &mut |_| true).unwrap();
    assert!(reports.iter().all(|r| !r.skipped && r.loss.is_finite()));

    // The adapters are in the training checkpoint and their B moved away from zero.
    let latest = std::fs::read_to_string(cfg.out.join("latest")).unwrap();
    let saved = candle_core::safetensors::load(
        cfg.out.join(latest.trim()).join("weights.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let lora: Vec<&String> = saved.keys().filter(|k| k.contains("lora")).collect();
    // QKV (3 partitions), dense, and the two MLP linears: an A and a B each.
    assert_eq!(lora.len(), 2 * (3 + 1 + 2), "{:?}", saved.keys());
    let b_norm: f32 = saved
        .iter()
        .filter(|(k, _)| k.contains("lora") && k.contains("_B"))
        .map(|(_, t)| {
            t.sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        })
        .sum();
    assert!(b_norm > 0.0, "LoRA B did not train: {:?}", lora);

    // The export is a complete model directory: adapted layers differ from the base (merged
    // adapters), others are unchanged, glm_proj trained.
    let export = cfg.out.join("model");
    for f in ["model.safetensors", "config.json", "tokenizer.model"] {
        assert!(export.join(f).is_file(), "{f} missing");
    }
    let base = load(&golden("checkpoints/hf"));
    let trained = load(&export);
    assert_eq!(base.len(), trained.len());
    let diff = |n: &str| max_abs_diff(&base[n], &trained[n]);
    assert!(diff("transformer.layers.1.attention.query_key_value.weight") > 0.0);
    assert!(diff("transformer.layers.1.attention.dense.weight") > 0.0);
    assert!(diff("image_encoder.glm_proj.weight") > 0.0);
    assert_eq!(
        diff("transformer.layers.0.attention.query_key_value.weight"),
        0.0
    );
    assert!(diff("transformer.layers.1.mlp.dense_h_to_4h.weight") > 0.0);
    assert_eq!(diff("transformer.layers.0.mlp.dense_h_to_4h.weight"), 0.0);
    let c = Captioner::load(&export, &Device::Cpu, DType::F32, &Default::default()).unwrap();
    assert_eq!(c.tokenizer().num_pieces(), 1008);
    // Its defaults: the base's (the release's: it has none) in the run's language.
    assert!(export.join("generation_config.json").is_file());
    let want = visualglm::defaults::ModelDefaults {
        english: true,
        ..Default::default()
    };
    assert_eq!(c.defaults(), &want);
}

#[test]
fn an_export_keeps_the_bases_defaults_and_itc_heads() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/shapes");
    let cfg = FinetuneConfig {
        data: shapes.join("examples/examples.json"),
        model: shapes.clone(),
        tokenizer: None,
        out: dir.path().join("run"),
        trainable: vec!["image_encoder.glm_proj".into()],
        steps: 1,
        batch_size: 2,
        lr: 1e-3,
        warmup_steps: 0,
        max_source_length: 48,
        max_target_length: 24,
        english: true,
        ..FinetuneConfig::default()
    };
    finetune(&cfg, &Device::Cpu, &mut |_| true).unwrap();
    let export = cfg.out.join("model");
    // No ITC in this run: the base's heads travel with the model, unchanged.
    assert_eq!(
        std::fs::read(export.join("itc.safetensors")).unwrap(),
        std::fs::read(shapes.join("itc.safetensors")).unwrap()
    );
    let base = visualglm::defaults::ModelDefaults::for_model(&shapes).unwrap();
    let exported = visualglm::defaults::ModelDefaults::for_model(&export).unwrap();
    assert!(
        !base.generation.do_sample,
        "the shipped model decodes greedily"
    );
    assert_eq!(exported, base);
}

#[test]
fn lora_layers_matching_nothing_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FinetuneConfig {
        lora_rank: 4,
        lora_layers: Some(vec![7]),
        ..config(dir.path(), "run", 1)
    };
    let err =
        finetune(&cfg, &Device::Cpu, &mut |_| true).expect_err("no layer 7 in a 2-layer model");
    assert!(err.to_string().contains("lora_layers"), "{err}");
}

#[test]
fn init_writes_a_fresh_model_that_loads_and_describes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fresh");
    let bin = env!("CARGO_BIN_EXE_visualglm");
    let o = Command::new(bin)
        .args(["init", "--seed", "3", "--config"])
        .arg(golden("checkpoints/hf/config.json"))
        .arg("--tokenizer")
        .arg(tiny_tokenizer(dir.path()))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let model = VisualGlm::load(&out, &Device::Cpu, DType::F32, &LoadOptions::default()).unwrap();
    let tok = ChatGlmTokenizer::from_dir(&out).unwrap();
    assert_eq!(model.config().glm.vocab_size, tok.num_pieces());
    assert_eq!(model.config().glm.gmask_token_id, tok.gmask_id());
    assert_eq!(model.config().glm.eos_token_id, Some(tok.eop_id()));
    let o = Command::new(bin)
        .args(["describe", "--english", "--max-new-tokens", "4", "--model"])
        .arg(&out)
        .arg(golden("images/chelsea.png"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // A config the tokenizer does not fit, or a missing config, is a one-line error.
    let o = Command::new(bin)
        .args(["init", "--config"])
        .arg(dir.path().join("missing.json"))
        .arg("--tokenizer")
        .arg(tiny_tokenizer(dir.path()))
        .arg("--out")
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("missing.json"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn eval_retrieval_ranks_with_the_trained_itc_heads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FinetuneConfig {
        itc_weight: 1.0,
        itc_dim: 16,
        trainable: vec!["image_encoder.".into()],
        ..config(dir.path(), "itc", 4)
    };
    finetune(&cfg, &Device::Cpu, &mut |_| true).unwrap();
    let export = cfg.out.join("model");
    assert!(export.join("itc.safetensors").is_file());
    let bin = env!("CARGO_BIN_EXE_visualglm");
    let o = Command::new(bin)
        .args(["eval", "retrieval", "--model"])
        .arg(&export)
        .arg("--data")
        .arg(&cfg.data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in ["txt_r1", "txt_r5", "img_r1", "r_mean"] {
        let x = v[key].as_f64().unwrap_or(-1.0);
        assert!((0.0..=100.0).contains(&x), "{key}: {v}");
    }
    // With two images and two captions, R@5 is certain.
    assert_eq!(v["txt_r5"].as_f64(), Some(100.0));

    // Without heads: a clear error naming the file.
    std::fs::remove_file(export.join("itc.safetensors")).unwrap();
    let o = Command::new(bin)
        .args(["eval", "retrieval", "--model"])
        .arg(&export)
        .arg("--data")
        .arg(&cfg.data)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("itc.safetensors"));
}

#[test]
fn a_detached_itc_probe_leaves_the_encoder_to_the_ar_loss() {
    let dir = tempfile::tempdir().unwrap();
    let base = |out: &str| FinetuneConfig {
        trainable: vec!["image_encoder.".into()],
        clip: 0.0,
        itc_dim: 16,
        ..config(dir.path(), out, 2)
    };
    let ar = base("ar");
    let probe = FinetuneConfig {
        itc_weight: 1.0,
        itc_detach: true,
        ..base("probe")
    };
    let joint = FinetuneConfig {
        itc_weight: 1.0,
        ..base("joint")
    };
    for cfg in [&ar, &probe, &joint] {
        finetune(cfg, &Device::Cpu, &mut |_| true).unwrap();
    }
    let w = |cfg: &FinetuneConfig| load(&cfg.out.join("model"));
    let (a, p, j) = (w(&ar), w(&probe), w(&joint));
    let name = "image_encoder.qformer.transformer.layers.0.attention.query_key_value.weight";
    assert_eq!(
        max_abs_diff(&a[name], &p[name]),
        0.0,
        "the probe moved the encoder"
    );
    assert!(
        max_abs_diff(&a[name], &j[name]) > 0.0,
        "ITC did not reach the encoder"
    );
    // The probe's heads trained all the same.
    let heads =
        candle_core::safetensors::load(probe.out.join("model/itc.safetensors"), &Device::Cpu)
            .unwrap();
    let temp = heads["itc.temp"].to_scalar::<f32>().unwrap();
    assert!((temp - 0.07).abs() > 1e-6, "{temp}");
}

#[test]
fn the_caption_layout_travels_with_the_heads() {
    use visualglm::itc::{CaptionLayout, ItcHeads};
    let dir = tempfile::tempdir().unwrap();
    let cfg = FinetuneConfig {
        itc_weight: 1.0,
        itc_dim: 8,
        itc_caption_layout: CaptionLayout::Answer,
        ..config(dir.path(), "answer", 1)
    };
    finetune(&cfg, &Device::Cpu, &mut |_| true).unwrap();
    let path = cfg.out.join("model/itc.safetensors");
    let heads = ItcHeads::from_file(&path, &Device::Cpu).unwrap();
    assert_eq!(heads.caption_layout(), CaptionLayout::Answer);
    // A heads file without the metadata (older runs) reads as the context layout.
    let plain = dir.path().join("plain.safetensors");
    candle_core::safetensors::save(&heads.tensors(), &plain).unwrap();
    let old = ItcHeads::from_file(&plain, &Device::Cpu).unwrap();
    assert_eq!(old.caption_layout(), CaptionLayout::Context);
    // Features differ between the layouts (the text side really changes).
    let model = VisualGlm::load(
        &cfg.out.join("model"),
        &Device::Cpu,
        DType::F32,
        &LoadOptions::default(),
    )
    .unwrap();
    let tok = ChatGlmTokenizer::from_dir(cfg.out.join("model")).unwrap();
    let f = |l| visualglm::itc::caption_features(&model, &tok, &["a cat on a floor"], l).unwrap();
    assert!(max_abs_diff(&f(CaptionLayout::Answer), &f(CaptionLayout::Context)) > 1e-4);
}
