//! Fine-tuning the tiny model: the loss goes down, only trainable weights are saved, and a
//! resumed run continues exactly as an uninterrupted one.

use crate::support;

use candle_core::Device;
use support::{golden, tiny_tokenizer};
use visualglm::finetune::{finetune, FinetuneConfig};

/// The tiny model trained on two captioned images, `steps` updates of batch 2 into `dir/out`.
pub(crate) fn config(dir: &std::path::Path, out: &str, steps: u64) -> FinetuneConfig {
    let data = dir.join("train.json");
    let records = serde_json::json!([
        {"img": golden("images/chelsea.png"), "prompt": "Describe the image.", "label": "a cat on a floor"},
        {"img": golden("images/astronaut.png"), "prompt": "Describe the image.", "label": "an astronaut in a suit"},
    ]);
    std::fs::write(&data, records.to_string()).unwrap();
    FinetuneConfig {
        data,
        model: golden("checkpoints/hf"),
        tokenizer: Some(tiny_tokenizer(dir)),
        out: dir.join(out),
        trainable: vec![
            "image_encoder.glm_proj".into(),
            "image_encoder.qformer".into(),
        ],
        steps,
        batch_size: 2,
        lr: 3e-3,
        warmup_steps: 0,
        clip: 1.0,
        save_every: 2,
        max_source_length: 48,
        max_target_length: 16,
        english: true,
        ..FinetuneConfig::default()
    }
}

#[test]
fn loss_decreases_and_only_trainable_weights_are_saved() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "run", 6);
    let reports = finetune(&cfg, &Device::Cpu, &mut |_| true).unwrap();
    assert_eq!(reports.len(), 6);
    assert!(reports.iter().all(|r| !r.skipped && r.loss.is_finite()));
    let (first, last) = (reports[0].loss, reports[5].loss);
    assert!(last < first, "loss did not decrease: {first} -> {last}");
    let latest = std::fs::read_to_string(cfg.out.join("latest")).unwrap();
    let weights = candle_core::safetensors::load(
        cfg.out.join(latest.trim()).join("weights.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    assert!(!weights.is_empty());
    assert!(
        weights
            .keys()
            .all(|k| k.starts_with("image_encoder.glm_proj")
                || k.starts_with("image_encoder.qformer")),
        "{:?}",
        weights.keys().collect::<Vec<_>>()
    );
}

#[test]
fn resumed_run_matches_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let full = finetune(&config(dir.path(), "full", 4), &Device::Cpu, &mut |_| true).unwrap();
    // Interrupted after step 2 (its checkpoint is on disk), then started again.
    let first = finetune(&config(dir.path(), "split", 4), &Device::Cpu, &mut |r| {
        r.step < 2
    })
    .unwrap();
    let rest = finetune(&config(dir.path(), "split", 4), &Device::Cpu, &mut |_| true).unwrap();
    assert_eq!(first.len(), 2);
    assert_eq!(rest.len(), 2, "the resumed run continues at step 3");
    assert_eq!(rest[0].step, 3);
    for (a, b) in full[2..].iter().zip(&rest) {
        assert_eq!(a.loss, b.loss, "step {}", a.step);
    }
}

#[test]
fn a_malformed_data_line_is_an_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), "bad", 1);
    let data = dir.path().join("bad.jsonl");
    std::fs::write(
        &data,
        "{\"img\": \"a.png\", \"prompt\": \"x\", \"label\": \"y\"}\n{not json}\n",
    )
    .unwrap();
    cfg.data = data;
    let err = finetune(&cfg, &Device::Cpu, &mut |_| true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.jsonl") && err.contains(":2"), "{err}");
}

#[test]
fn train_cli_reads_toml_writes_metrics_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "cli-run", 2);
    let toml = format!(
        "data = {:?}\nmodel = {:?}\ntokenizer = {:?}\nout = {:?}\ntrainable = [\"image_encoder.glm_proj\"]\nsteps = 2\nwarmup_steps = 0\nbatch_size = 2\nsave_every = 1\nmax_source_length = 48\nmax_target_length = 16\nenglish = true\n",
        cfg.data, cfg.model, cfg.tokenizer.as_ref().unwrap(), cfg.out
    );
    let run_toml = dir.path().join("run.toml");
    std::fs::write(&run_toml, toml).unwrap();
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_visualglm"))
            .args(["train", "--device", "cpu", "--config"])
            .arg(&run_toml)
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let metrics = std::fs::read_to_string(cfg.out.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2);
    let curve = image::open(cfg.out.join("loss.png")).expect("a loss-curve PNG");
    assert!(curve.width() > 100 && curve.height() > 100);
    assert!(cfg.out.join("model/model.safetensors").is_file());
    // The flag overrides the file: two more steps, resumed from step 2.
    let o = run(&["--steps", "4"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let metrics = std::fs::read_to_string(cfg.out.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = metrics
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, vec![1, 2, 3, 4]);
    // An unknown key is a clear error.
    std::fs::write(&run_toml, "stepz = 3\n").unwrap();
    let o = run(&[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("stepz"));
}

#[test]
fn itc_adds_a_contrastive_term_trains_its_heads_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let ar_only = finetune(&config(dir.path(), "ar", 1), &Device::Cpu, &mut |_| true).unwrap();
    let with_itc = |out: &str, steps: u64| FinetuneConfig {
        itc_weight: 0.5,
        itc_dim: 16,
        ..config(dir.path(), out, steps)
    };
    let full = finetune(&with_itc("itc", 4), &Device::Cpu, &mut |_| true).unwrap();
    // Same weights at step 1: the total is AR plus a positive contrastive term.
    assert!(
        full[0].loss > ar_only[0].loss,
        "{} vs {}",
        full[0].loss,
        ar_only[0].loss
    );
    let out = dir.path().join("itc");
    let latest = std::fs::read_to_string(out.join("latest")).unwrap();
    let weights = candle_core::safetensors::load(
        out.join(latest.trim()).join("weights.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    for name in ["itc.vision_proj.weight", "itc.text_proj.weight", "itc.temp"] {
        assert!(weights.contains_key(name), "{name} not saved");
    }
    let temp = weights["itc.temp"].to_scalar::<f32>().unwrap();
    assert!(
        (temp - 0.07).abs() > 1e-6,
        "the temperature did not train: {temp}"
    );
    // Interrupted after step 2 and resumed: the same losses.
    finetune(&with_itc("itc-split", 4), &Device::Cpu, &mut |r| r.step < 2).unwrap();
    let rest = finetune(&with_itc("itc-split", 4), &Device::Cpu, &mut |_| true).unwrap();
    for (a, b) in full[2..].iter().zip(&rest) {
        assert_eq!(a.loss, b.loss, "step {}", a.step);
    }
}

#[test]
fn itc_text_queue_adds_earlier_texts_and_is_restored_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let with_queue = |out: &str, queue: usize| FinetuneConfig {
        itc_weight: 0.5,
        itc_dim: 16,
        itc_queue: queue,
        ..config(dir.path(), out, 4)
    };
    let plain = finetune(&with_queue("plain", 0), &Device::Cpu, &mut |_| true).unwrap();
    let queued = finetune(&with_queue("queued", 3), &Device::Cpu, &mut |_| true).unwrap();
    // Step 1 has an empty queue: the same loss; from step 2 the queued texts count.
    assert_eq!(plain[0].loss, queued[0].loss);
    assert_ne!(plain[1].loss, queued[1].loss);
    // The queue (3 newest texts) is saved with the checkpoint...
    let out = dir.path().join("queued");
    let latest = std::fs::read_to_string(out.join("latest")).unwrap();
    let state = candle_core::safetensors::load(
        out.join(latest.trim()).join("optimizer.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(state["itc_queue.features"].dims()[0], 3);
    assert_eq!(state["itc_queue.ids"].dims(), [3]);
    // ...and restored: a run stopped after step 2 continues with the same losses.
    finetune(&with_queue("split", 3), &Device::Cpu, &mut |r| r.step < 2).unwrap();
    let rest = finetune(&with_queue("split", 3), &Device::Cpu, &mut |_| true).unwrap();
    assert_eq!(rest.len(), 2);
    for (a, b) in queued[2..].iter().zip(&rest) {
        assert_eq!(a.loss, b.loss, "step {}", a.step);
    }
}

#[test]
fn validation_loss_is_reported_when_due() {
    let dir = tempfile::tempdir().unwrap();
    let base = config(dir.path(), "val", 4);
    let cfg = FinetuneConfig {
        val_data: Some(base.data.clone()),
        val_every: 2,
        ..base
    };
    let reports = finetune(&cfg, &Device::Cpu, &mut |_| true).unwrap();
    let with_val: Vec<u64> = reports
        .iter()
        .filter(|r| r.val_loss.is_some())
        .map(|r| r.step)
        .collect();
    assert_eq!(with_val, vec![2, 4]);
    // Training on the validation examples themselves: the held-out loss falls too.
    let (a, b) = (reports[1].val_loss.unwrap(), reports[3].val_loss.unwrap());
    assert!(a.is_finite() && b < a, "{a} -> {b}");
}

#[test]
fn synthetic_shapes_data_trains_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_visualglm");
    let data = dir.path().join("shapes");
    let o = std::process::Command::new(bin)
        .args([
            "data",
            "synth",
            "--count",
            "6",
            "--size",
            "64",
            "--val-fraction",
            "0.34",
            "--out",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let train: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("train.json")).unwrap()).unwrap();
    let val: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("val.json")).unwrap()).unwrap();
    assert_eq!(
        (
            train.as_array().unwrap().len(),
            val.as_array().unwrap().len()
        ),
        (4, 2)
    );
    let cfg = FinetuneConfig {
        data: data.join("train.json"),
        val_data: Some(data.join("val.json")),
        ..config(dir.path(), "shapes-run", 2)
    };
    let reports = finetune(&cfg, &Device::Cpu, &mut |_| true).unwrap();
    assert_eq!(reports.len(), 2);
    assert!(reports[1].val_loss.is_some_and(f64::is_finite));
}

#[test]
fn embedding_gradient_shrink_scales_the_embedding_gradient() {
    let dir = tempfile::tempdir().unwrap();
    let run = |out: &str, shrink: Option<f64>| {
        let cfg = FinetuneConfig {
            trainable: vec!["transformer.word_embeddings".into()],
            embedding_grad_shrink: shrink,
            clip: 0.0,
            ..config(dir.path(), out, 1)
        };
        finetune(&cfg, &Device::Cpu, &mut |_| true).unwrap()[0].clone()
    };
    let plain = run("plain", None);
    let shrunk = run("shrunk", Some(0.1));
    // Same forward values (up to f32 rounding of e·α + e·(1−α)), gradient scaled by α.
    assert!((plain.loss - shrunk.loss).abs() < 1e-5 * plain.loss.abs());
    let ratio = shrunk.grad_norm / plain.grad_norm;
    assert!((ratio - 0.1).abs() < 1e-4, "grad norm ratio {ratio}");
}
