//! `run.toml` as `visualglm train` reads it: paths relative to the file's folder (flags
//! relative to the current directory), a missing data file named as such, `--print-config`,
//! and the key table of docs/training.md.

use crate::support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use support::{golden, tiny_tokenizer};
use visualglm::finetune::{config_keys, FinetuneConfig};

fn train(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_visualglm"))
        .current_dir(cwd)
        .args(["train", "--device", "cpu"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn paths_in_run_toml_resolve_against_its_folder_and_flags_against_the_cwd() {
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("exp");
    std::fs::create_dir_all(exp.join("data")).unwrap();
    let records = serde_json::json!([
        {"img": "chelsea.png", "prompt": "Describe the image.", "label": "a cat on a floor"},
        {"img": "astronaut.png", "prompt": "Describe the image.", "label": "an astronaut"},
    ]);
    std::fs::write(exp.join("data/train.json"), records.to_string()).unwrap();
    // Relative image paths resolve against `image_root`, itself relative to the file.
    let images = exp.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for name in ["chelsea.png", "astronaut.png"] {
        std::fs::copy(golden(&format!("images/{name}")), images.join(name)).unwrap();
    }
    std::fs::copy(tiny_tokenizer(dir.path()), exp.join("tokenizer.model")).unwrap();
    let toml = format!(
        "data = \"data/train.json\"\nimage_root = \"images\"\ntokenizer = \"tokenizer.model\"\n\
         out = \"runs/a\"\nmodel = {:?}\ntrainable = [\"image_encoder.glm_proj\"]\nsteps = 1\n\
         batch_size = 2\nwarmup_steps = 0\nmax_source_length = 48\nmax_target_length = 16\nenglish = true\n\
         export = false\n",
        golden("checkpoints/hf")
    );
    std::fs::write(exp.join("run.toml"), toml).unwrap();
    // Run from the parent folder: the file's paths still mean exp/….
    let o = train(dir.path(), &["--config", "exp/run.toml"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(exp.join("runs/a/step-1").is_dir());
    assert!(!dir.path().join("runs").exists());
    // A flag is relative to the current directory.
    let o = train(
        dir.path(),
        &["--config", "exp/run.toml", "--out", "flagged"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(dir.path().join("flagged/step-1").is_dir());
}

#[test]
fn a_missing_data_file_is_named_as_the_training_data() {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "data = \"nope.json\"\nmodel = {:?}\nout = \"run\"\n",
        golden("checkpoints/hf")
    );
    std::fs::write(dir.path().join("run.toml"), toml).unwrap();
    let o = train(dir.path(), &["--config", "run.toml"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        stderr.contains("training data file nope.json does not exist"),
        "{stderr}"
    );
    assert!(!dir.path().join("run").exists(), "nothing is written first");
    // The validation data too.
    std::fs::write(dir.path().join("train.json"), "[]").unwrap();
    std::fs::write(
        dir.path().join("run.toml"),
        format!(
            "data = \"train.json\"\nval_data = \"val.json\"\nmodel = {:?}\n",
            golden("checkpoints/hf")
        ),
    )
    .unwrap();
    let o = train(dir.path(), &["--config", "run.toml"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("validation data file val.json does not exist"),
        "{stderr}"
    );
}

#[test]
fn print_config_is_a_commented_run_toml_of_every_default() {
    let dir = tempfile::tempdir().unwrap();
    let o = train(dir.path(), &["--print-config"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let cfg: FinetuneConfig = toml::from_str(&text).unwrap();
    assert_eq!(cfg, FinetuneConfig::default());
    for key in config_keys() {
        let set = text.contains(&format!("\n{key} = "));
        let commented = text.contains(&format!("\n# {key} = "));
        assert!(set ^ commented, "{key} appears once, set or commented out");
    }
    for key in [
        "english",
        "max_target_length",
        "clip",
        "save_every",
        "keep_last",
        "seed",
    ] {
        assert!(text.contains(&format!("\n{key} = ")), "{key}");
    }
    // Every key has a line of meaning above it.
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate().skip(1) {
        let is_key = config_keys().iter().any(|k| {
            line.starts_with(&format!("{k} = ")) || line.starts_with(&format!("# {k} = "))
        });
        if is_key {
            assert!(
                lines[i - 1].starts_with("# ") && lines[i - 1].len() > 10,
                "no meaning above {line}"
            );
        }
    }
}

/// The keys in the first column of the table under "### Keys of `run.toml`".
fn documented_keys(markdown: &str) -> BTreeSet<String> {
    let section = markdown
        .split("### Keys of `run.toml`")
        .nth(1)
        .expect("a section \"### Keys of `run.toml`\"");
    let mut keys = BTreeSet::new();
    for row in section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
    {
        let first = row.split('|').nth(1).unwrap_or_default();
        keys.extend(first.split('`').skip(1).step_by(2).map(str::to_owned));
    }
    keys
}

#[test]
fn the_training_docs_table_lists_every_key() {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/training.md")).unwrap();
    let documented = documented_keys(&docs);
    let keys: BTreeSet<String> = config_keys().iter().map(|k| k.to_string()).collect();
    let missing: Vec<_> = keys.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&keys).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "docs/training.md's key table lacks {missing:?} and lists unknown keys {unknown:?}"
    );
}
