//! The from-scratch research path end to end, small enough for CI: synthetic shapes data →
//! `tokenizer train` → `init` → stage 1 (the language model learns the captions) → stage 2
//! (language model frozen; image encoder + LoRA with AR + ITC) → `describe` and `eval`.
//! The full-size run and its accuracy are in the README (assets/shapes/recipe/train.sh).

use std::path::Path;
use std::process::Command;

fn run(dir: &Path, args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_visualglm"))
        .current_dir(dir)
        .env("RAYON_NUM_THREADS", "1")
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "visualglm {args:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn val_losses(metrics: &Path) -> Vec<f64> {
    std::fs::read_to_string(metrics)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["val_loss"].as_f64())
        .collect()
}

#[test]
fn shapes_model_trains_from_scratch_in_two_stages() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/shapes/recipe/config.json");
    run(
        dir,
        &[
            "data", "synth", "--out", "data", "--count", "240", "--size", "112",
        ],
    );
    run(
        dir,
        &[
            "tokenizer",
            "train",
            "--data",
            "data/train.json",
            "--vocab-size",
            "150",
            "--out",
            "tok/tokenizer.model",
        ],
    );
    run(
        dir,
        &[
            "init",
            "--config",
            recipe.to_str().unwrap(),
            "--tokenizer",
            "tok/tokenizer.model",
            "--out",
            "init",
        ],
    );
    let common = "data = \"data/train.json\"\nval_data = \"data/val.json\"\nbatch_size = 16\n\
                  warmup_steps = 5\nclip = 1.0\nmax_source_length = 64\nmax_target_length = 40\n\
                  english = true\nval_every = 10\n";
    std::fs::write(
        dir.join("stage1.toml"),
        format!("{common}model = \"init\"\nout = \"stage1\"\ntrainable = [\"transformer.\", \"lm_head.\"]\nsteps = 40\nlr = 3e-3\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("stage2.toml"),
        format!("{common}model = \"stage1/model\"\nout = \"stage2\"\ntrainable = [\"image_encoder.\"]\nlora_rank = 4\nlora_alpha = 8.0\nsteps = 20\nlr = 2e-3\nitc_weight = 1.0\nitc_dim = 32\n"),
    )
    .unwrap();
    run(
        dir,
        &["train", "--config", "stage1.toml", "--device", "cpu"],
    );
    let s1 = val_losses(&dir.join("stage1/metrics.jsonl"));
    assert_eq!(s1.len(), 4, "{s1:?}");
    // From a uniform guess over 150 pieces (ln 150 ≈ 5.0) to the captions' grammar.
    assert!(
        s1[3] < 1.5 && s1[3] < s1[0],
        "stage 1 did not learn: {s1:?}"
    );
    run(
        dir,
        &["train", "--config", "stage2.toml", "--device", "cpu"],
    );
    let s2 = val_losses(&dir.join("stage2/metrics.jsonl"));
    assert!(s2.iter().all(|v| v.is_finite()), "{s2:?}");
    // The frozen language model is untouched by stage 2 except through the merged LoRA.
    for f in [
        "model.safetensors",
        "tokenizer.model",
        "itc.safetensors",
        "config.json",
    ] {
        assert!(dir.join("stage2/model").join(f).is_file(), "{f}");
    }
    assert!(dir.join("stage2/loss.png").is_file());
    let caption = run(
        dir,
        &[
            "describe",
            "--model",
            "stage2/model",
            "--english",
            "--prompt",
            "Describe the image.",
            "data/images/000239.png",
        ],
    );
    assert!(!caption.trim().is_empty());
    let scores: serde_json::Value = serde_json::from_str(&run(
        dir,
        &[
            "eval",
            "captions",
            "--model",
            "stage2/model",
            "--data",
            "data/val.json",
            "--english",
            "--prompt",
            "Describe the image.",
            "--predictions-out",
            "val_predictions.jsonl",
        ],
    ))
    .unwrap();
    println!("captions: {scores}");
    // At this size the model learns the captions' grammar, not yet the images (measured: 0 of
    // 24 exact, slot accuracies at chance, after 20, 60 or 150 stage-2 updates; the full recipe
    // needs ~1600, and `tests/shapes_model.rs` holds the committed model to > 90 %). The floors
    // are what this run reliably clears (measured BLEU-4 0.57, ROUGE-L 0.77, CIDEr 2.2): a
    // broken decode, tokenizer or metric falls below them.
    for (metric, floor) in [("Bleu_4", 0.4), ("ROUGE_L", 0.6), ("CIDEr", 1.0)] {
        let v = scores[metric].as_f64().unwrap();
        assert!(v >= floor, "{metric} {v} < {floor}: {scores}");
    }
    // Exact match is the share of predictions equal to their reference.
    let labels: Vec<String> = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(dir.join("data/val.json")).unwrap(),
    )
    .unwrap()
    .as_array()
    .unwrap()
    .iter()
    .map(|r| r["label"].as_str().unwrap().to_string())
    .collect();
    let predictions: Vec<String> = std::fs::read_to_string(dir.join("val_predictions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["caption"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(predictions.len(), labels.len());
    let norm = visualglm_eval::caption::exact::normalize_caption;
    let same = predictions
        .iter()
        .zip(&labels)
        .filter(|(p, l)| norm(p) == norm(l))
        .count();
    let em = scores["exact_match"].as_f64().unwrap();
    assert!(
        (em - same as f64 / labels.len() as f64).abs() < 1e-12,
        "{scores}"
    );
    let r: serde_json::Value = serde_json::from_str(&run(
        dir,
        &[
            "eval",
            "retrieval",
            "--model",
            "stage2/model",
            "--data",
            "data/val.json",
        ],
    ))
    .unwrap();
    println!("retrieval: {r}");
    // Recall@K in percent over the 24 held-out captions: ordered in K, and R@10 of an untrained
    // ranking is 10/24 on average (measured here: 46 %).
    let recall = |k: &str| r[k].as_f64().unwrap();
    for side in ["txt", "img"] {
        let (r1, r5, r10) = (
            recall(&format!("{side}_r1")),
            recall(&format!("{side}_r5")),
            recall(&format!("{side}_r10")),
        );
        assert!(0.0 <= r1 && r1 <= r5 && r5 <= r10 && r10 <= 100.0, "{r}");
        assert!(r10 >= 25.0, "{side} R@10 {r10} < 25: {r}");
    }
}
