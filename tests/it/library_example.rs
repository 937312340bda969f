//! `examples/caption.rs`, the README's library example, runs and captions the shipped model's
//! example image.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The built example (`cargo test` builds the examples beside the test binaries; built here
/// when a filtered run did not).
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = profile_dir.join("examples").join("caption");
    if !bin.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--locked", "--example", "caption"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(status.success());
    }
    bin
}

#[test]
fn the_caption_example_describes_the_shipped_example_image() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let examples: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("assets/shapes/examples/examples.json")).unwrap(),
    )
    .unwrap();
    let label = examples[0]["label"].as_str().unwrap();
    let image = root
        .join("assets/shapes/examples")
        .join(examples[0]["img"].as_str().unwrap());
    let out = Command::new(example_binary())
        .arg(&image)
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    // The model's defaults (English, greedy) and the explicit English question agree.
    assert_eq!(lines, [label, label], "{stdout}");
    // No image: a usage line, exit status 2.
    let out = Command::new(example_binary()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
