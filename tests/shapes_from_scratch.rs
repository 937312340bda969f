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
        ],
    ))
    .unwrap();
    let em = scores["exact_match"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&em), "{scores}");
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
    assert!(r["txt_r1"].as_f64().is_some(), "{r}");
}
