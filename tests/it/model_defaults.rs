//! A model's own defaults (`generation_config.json`), the README's first command, `describe`
//! past unreadable images and from standard input, `eval captions` asking each record's
//! prompt, and a training run directory passed as `--model`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{golden, golden_captioner, tiny_tokenizer};
use visualglm::defaults::{ModelDefaults, GENERATION_CONFIG_FILE};
use visualglm::pipeline::Question;
use visualglm_language::GenerationConfig;
use visualglm_vision::decode::load_image;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_visualglm"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn shapes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/shapes")
}

/// The label `assets/shapes/examples/examples.json` gives `image`.
fn example_label(image: &str) -> String {
    let text = std::fs::read_to_string(shapes().join("examples/examples.json")).unwrap();
    let examples: serde_json::Value = serde_json::from_str(&text).unwrap();
    examples
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["img"] == image)
        .and_then(|e| e["label"].as_str())
        .unwrap()
        .to_string()
}

/// A copy of the shipped model's files in `dir` (without its generation_config.json).
fn copy_shapes_model(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.model",
        "itc.safetensors",
    ] {
        std::fs::copy(shapes().join(f), dir.join(f)).unwrap();
    }
}

#[test]
fn the_readmes_first_command_needs_no_flags_and_describes_the_image() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("cargo run --release -- describe"))
        .expect("the README's first command");
    assert!(!line.ends_with('\\'), "one line, no continuation: {line}");
    let args: Vec<&str> = line
        .split('#')
        .next()
        .unwrap()
        .split_whitespace()
        .skip(4)
        .collect();
    // Only the model is named: the shipped model's own defaults do the rest.
    let flags: Vec<&&str> = args.iter().filter(|a| a.starts_with('-')).collect();
    assert_eq!(flags, [&"--model"], "{line}");
    let image = args[1];
    let out = bin().args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let name = Path::new(image).file_name().unwrap().to_str().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        example_label(name)
    );
}

#[test]
fn a_model_without_generation_config_gets_the_release_demo_defaults() {
    let dir = tempfile::tempdir().unwrap();
    assert!(!golden("checkpoints/hf")
        .join(GENERATION_CONFIG_FILE)
        .exists());
    let c = golden_captioner(&tiny_tokenizer(dir.path()));
    let d = c.defaults();
    // cli_demo.py (spec §6.6): Chinese, sampling, 0.8 / 0.4 / 100 / 1.2, max_length 2048.
    assert!(!d.english);
    assert_eq!(d.question, None);
    let g = &d.generation;
    assert!(g.do_sample);
    assert_eq!(
        (g.temperature, g.top_p, g.top_k, g.repetition_penalty),
        (0.8, 0.4, 100, 1.2)
    );
    assert_eq!((g.max_length, g.num_beams), (2048, 1));
    assert_eq!(d.question(None).text(), "描述这张图片。");
}

#[test]
fn a_models_generation_config_sets_its_defaults_and_flags_override_them() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    copy_shapes_model(&model);
    // Chinese and sampling hot: without flags the shapes model's English caption is unlikely;
    // the flags bring back what the shipped model's own file says.
    let d = ModelDefaults {
        generation: GenerationConfig {
            temperature: 1.5,
            top_p: 1.0,
            top_k: 0,
            max_new_tokens: 7,
            ..GenerationConfig::default()
        },
        english: false,
        question: Some("What is in the picture?".into()),
    };
    d.write(&model).unwrap();
    let c = visualglm::pipeline::Captioner::load(
        &model,
        &candle_core::Device::Cpu,
        candle_core::DType::F32,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(c.defaults(), &d);
    assert_eq!(
        ModelDefaults::for_model(&model.join("model.safetensors")).unwrap(),
        d,
        "a weights file finds the file beside it"
    );

    let image = shapes().join("examples/shapes-1.png");
    let out = bin()
        .arg("describe")
        .arg(&image)
        .arg("--model")
        .arg(&model)
        .args([
            "--english",
            "--greedy",
            "--repetition-penalty",
            "1",
            "--max-new-tokens",
            "32",
            "--prompt",
            "Describe the image.",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        example_label("shapes-1.png")
    );
    // The library sees the same answer with the same settings spelled out.
    let q = Question {
        query: Some("Describe the image.".into()),
        english: true,
        generation: GenerationConfig {
            max_new_tokens: 32,
            ..GenerationConfig::greedy()
        },
    };
    let img = load_image(&image, &Default::default()).unwrap();
    assert_eq!(c.describe(&img, &q).unwrap(), example_label("shapes-1.png"));
}

#[test]
fn a_malformed_generation_config_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    copy_shapes_model(&model);
    for bad in [
        "{not json",
        r#"{"temperature": -1}"#,
        r#"{"top_p": 0}"#,
        r#"{"visualglm": {"language": "fr"}}"#,
    ] {
        std::fs::write(model.join(GENERATION_CONFIG_FILE), bad).unwrap();
        let out = bin()
            .arg("describe")
            .arg(shapes().join("examples/shapes-0.png"))
            .arg("--model")
            .arg(&model)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad}");
        assert!(stderr.contains(GENERATION_CONFIG_FILE), "{bad}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Keys of transformers' own that we do not use are ignored.
    std::fs::write(
        model.join(GENERATION_CONFIG_FILE),
        r#"{"do_sample": false, "repetition_penalty": 1.0, "bos_token_id": 1,
            "transformers_version": "4.33.0", "visualglm": {"language": "en"}}"#,
    )
    .unwrap();
    let d = ModelDefaults::for_model(&model).unwrap();
    assert!(d.english && !d.generation.do_sample);
    assert_eq!(
        d.generation.top_k, 100,
        "absent keys keep the release's value"
    );
}

#[test]
fn describe_reports_an_unreadable_image_once_and_describes_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.png");
    let corrupt = dir.path().join("corrupt.png");
    std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let good = shapes().join("examples/shapes-0.png");
    let out = bin()
        .arg("describe")
        .args([&missing, &good, &corrupt])
        .args(["--model", "assets/shapes"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "an unreadable image fails the command"
    );
    assert_eq!(
        stdout.trim(),
        format!("{}: {}", good.display(), example_label("shapes-0.png"))
    );
    let lines: Vec<&str> = stderr.lines().collect();
    let about = |p: &Path| {
        lines
            .iter()
            .filter(|l| l.contains(&format!("cannot describe {}", p.display())))
            .count()
    };
    assert_eq!((about(&missing), about(&corrupt)), (1, 1), "{stderr}");
    // The cause is printed once, not once per layer of the error chain.
    let os = lines.iter().find(|l| l.contains("missing.png")).unwrap();
    assert_eq!(os.matches("os error 2").count(), 1, "{os}");
    assert!(stderr.contains("2 of 3 images"), "{stderr}");

    // --json: one object per image, errors included, in order.
    let out = bin()
        .arg("describe")
        .args([&missing, &good])
        .args(["--model", "assets/shapes", "--json"])
        .output()
        .unwrap();
    let objs: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs.len(), 2);
    assert!(objs[0]["error"].as_str().unwrap().contains("missing.png"));
    assert_eq!(objs[1]["caption"], example_label("shapes-0.png"));
}

#[test]
fn describe_reads_an_image_from_standard_input() {
    let bytes = std::fs::read(shapes().join("examples/shapes-1.png")).unwrap();
    let mut child = bin()
        .args(["describe", "-", "--model", "assets/shapes"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&bytes).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        example_label("shapes-1.png")
    );
}

#[test]
fn eval_captions_asks_each_records_own_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tiny_tokenizer(dir.path());
    let prompts = ["这是什么？", "图中有几只猫？", ""];
    let images = ["chelsea.png", "astronaut.png", "camera.png"];
    let records: Vec<serde_json::Value> = images
        .iter()
        .zip(prompts)
        .map(|(img, prompt)| {
            serde_json::json!({
                "img": golden(&format!("images/{img}")).display().to_string(),
                "prompt": prompt,
                "label": "a reference caption",
            })
        })
        .collect();
    let data = dir.path().join("data.json");
    std::fs::write(&data, serde_json::to_string(&records).unwrap()).unwrap();
    let preds = dir.path().join("preds.jsonl");
    let out = bin()
        .args(["eval", "captions", "--data"])
        .arg(&data)
        .arg("--model")
        .arg(golden("checkpoints/hf"))
        .arg("--tokenizer")
        .arg(&tok)
        .args([
            "--greedy",
            "--repetition-penalty",
            "1",
            "--max-new-tokens",
            "6",
        ])
        .arg("--predictions-out")
        .arg(&preds)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<String> = std::fs::read_to_string(&preds)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["caption"].as_str().unwrap().to_string()
        })
        .collect();
    let c = golden_captioner(&tok);
    let want: Vec<String> = images
        .iter()
        .zip(prompts)
        .map(|(img, prompt)| {
            let image = load_image(golden(&format!("images/{img}")), &Default::default()).unwrap();
            let q = Question {
                // An empty prompt (COCO captions) asks the model's default question.
                query: (!prompt.is_empty()).then(|| prompt.to_string()),
                english: false,
                generation: GenerationConfig {
                    max_new_tokens: 6,
                    ..GenerationConfig::greedy()
                },
            };
            c.describe(&image, &q).unwrap()
        })
        .collect();
    assert_eq!(got, want);
    assert_ne!(want[0], want[1], "the prompts lead to different answers");
}

#[test]
fn a_training_run_directory_means_its_exported_model() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    copy_shapes_model(&run.join("model"));
    // A training checkpoint as `visualglm train` writes it: `latest` names a folder with a
    // manifest.
    std::fs::create_dir_all(run.join("step-00000010")).unwrap();
    std::fs::write(run.join("step-00000010/manifest.json"), "{}").unwrap();
    std::fs::write(run.join("latest"), "step-00000010").unwrap();
    let image = shapes().join("examples/shapes-0.png");
    let out = bin()
        .arg("describe")
        .arg(&image)
        .arg("--model")
        .arg(&run)
        .args(["--english", "--greedy", "--repetition-penalty", "1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        example_label("shapes-0.png")
    );
    // A run that has not exported yet says so.
    std::fs::remove_dir_all(run.join("model")).unwrap();
    let out = bin()
        .arg("describe")
        .arg(&image)
        .arg("--model")
        .arg(&run)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("training run directory"), "{stderr}");
}
