//! `visualglm batch` on the shipped shapes model: inputs of every kind, resuming by canonical
//! path, `--retry-errors` in place, the settings sidecar, and empty inputs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{golden, tiny_tokenizer};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_visualglm"))
}

/// The shipped shapes model (English, greedy) and its example images.
fn shapes(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("assets/shapes")
        .join(rel)
}

/// Runs `batch ARGS --model assets/shapes` in `dir`.
fn shapes_batch(dir: &Path, args: &[&str]) -> Output {
    bin()
        .current_dir(dir)
        .arg("batch")
        .args(args)
        .arg("--model")
        .arg(shapes(""))
        .args(["--device", "cpu"])
        .output()
        .unwrap()
}

/// `n` example images of the shapes model copied into `dir/imgs`.
fn shapes_images(dir: &Path, n: usize) -> PathBuf {
    let imgs = dir.join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    for i in 0..n {
        let name = format!("shapes-{i}.png");
        std::fs::copy(shapes(&format!("examples/{name}")), imgs.join(name)).unwrap();
    }
    imgs
}

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn batch_resume_knows_an_image_by_any_path_and_counts_what_it_skips() {
    let dir = tempfile::tempdir().unwrap();
    shapes_images(dir.path(), 3);
    // An image file as input, then the folder as `./imgs`, then through a symlink.
    let o = shapes_batch(dir.path(), &["imgs/shapes-1.png", "--out", "c.jsonl"]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("1 captioned, 0 failed, 0 skipped"));
    let o = shapes_batch(dir.path(), &["./imgs", "--out", "c.jsonl"]);
    assert!(
        stderr_of(&o).contains("2 captioned, 0 failed, 1 skipped"),
        "{}",
        stderr_of(&o)
    );
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(dir.path().join("imgs"), dir.path().join("link")).unwrap();
        let o = shapes_batch(dir.path(), &["link", "--out", "c.jsonl"]);
        assert!(
            stderr_of(&o).contains("nothing to do: all 3 images"),
            "{}",
            stderr_of(&o)
        );
    }
    let text = std::fs::read_to_string(dir.path().join("c.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    // The labels of the examples are what the model answers.
    let labels: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shapes("examples/examples.json")).unwrap())
            .unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["image"], "imgs/shapes-1.png");
    assert_eq!(first["caption"], labels[1]["label"]);
}

#[test]
fn batch_retry_errors_replaces_the_error_line_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = shapes_images(dir.path(), 3);
    let good = std::fs::read(imgs.join("shapes-1.png")).unwrap();
    std::fs::write(imgs.join("shapes-1.png"), &good[..good.len() / 3]).unwrap();
    let o = shapes_batch(dir.path(), &["imgs", "--out", "c.jsonl"]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let out = dir.path().join("c.jsonl");
    let before = std::fs::read_to_string(&out).unwrap();
    let line = |text: &str, i: usize| -> serde_json::Value {
        serde_json::from_str(text.lines().nth(i).unwrap()).unwrap()
    };
    assert!(line(&before, 1).get("error").is_some(), "{before}");
    std::fs::write(imgs.join("shapes-1.png"), &good).unwrap();
    let o = shapes_batch(dir.path(), &["imgs", "--out", "c.jsonl", "--retry-errors"]);
    assert!(
        stderr_of(&o).contains("1 captioned, 0 failed, 2 skipped"),
        "{}",
        stderr_of(&o)
    );
    let after = std::fs::read_to_string(&out).unwrap();
    assert_eq!(after.lines().count(), 3, "{after}");
    assert_eq!(line(&after, 1)["image"], "imgs/shapes-1.png");
    assert!(line(&after, 1)["caption"].is_string(), "{after}");
    assert_eq!(line(&after, 0), line(&before, 0));
    assert_eq!(line(&after, 2), line(&before, 2));
}

#[test]
fn batch_refuses_to_resume_with_another_model_or_prompt_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    shapes_images(dir.path(), 2);
    let o = shapes_batch(dir.path(), &["imgs", "--out", "c.jsonl"]);
    assert!(o.status.success(), "{}", stderr_of(&o));
    let out = dir.path().join("c.jsonl");
    let meta_path = dir.path().join("c.jsonl.meta.json");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    assert_eq!(meta["prompt"], "Describe the image.");
    assert!(
        meta["model"].as_str().unwrap().ends_with("shapes"),
        "{meta}"
    );
    let captions = std::fs::read_to_string(&out).unwrap();
    // Another prompt, or more images with another model: refused, the files untouched.
    shapes_images(dir.path(), 3);
    let o = shapes_batch(dir.path(), &["imgs", "--out", "c.jsonl", "-p", "What?"]);
    assert!(!o.status.success());
    let err = stderr_of(&o);
    assert!(
        err.contains("other settings") && err.contains("\"What?\"") && err.contains("--force"),
        "{err}"
    );
    let o = bin()
        .current_dir(dir.path())
        .args(["batch", "imgs", "--out", "c.jsonl", "--model"])
        .arg(golden("checkpoints/hf"))
        .arg("--tokenizer")
        .arg(tiny_tokenizer(dir.path()))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr_of(&o).contains("model"), "{}", stderr_of(&o));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), captions);
    // --force goes on, and the sidecar then records this run.
    let o = shapes_batch(
        dir.path(),
        &["imgs", "--out", "c.jsonl", "-p", "What?", "--force"],
    );
    assert!(o.status.success(), "{}", stderr_of(&o));
    assert!(stderr_of(&o).contains("1 captioned, 0 failed, 2 skipped"));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    assert_eq!(meta["prompt"], "What?");
}

#[test]
fn batch_of_an_empty_folder_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let o = shapes_batch(dir.path(), &["empty", "--out", "c.jsonl"]);
    assert!(!o.status.success());
    assert!(
        stderr_of(&o).contains("no images found in empty"),
        "{}",
        stderr_of(&o)
    );
    assert!(!dir.path().join("c.jsonl").exists());
}
