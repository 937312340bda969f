//! `visualglm batch --shard K/N`: shards caption disjoint images into their own files, resume
//! on their own, and the last one merges them into the output a single process writes.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{golden, tiny_tokenizer};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_visualglm"))
}

/// Runs `batch` over `list` into `out`, with `extra` flags.
fn batch(dir: &Path, list: &Path, out: &Path, extra: &[&str]) -> Output {
    let o = bin()
        .arg("batch")
        .arg(list)
        .arg("--out")
        .arg(out)
        .arg("--model")
        .arg(golden("checkpoints/hf"))
        .arg("--tokenizer")
        .arg(tiny_tokenizer(dir))
        .args([
            "--greedy",
            "--max-new-tokens",
            "6",
            "--batch-size",
            "2",
            "--device",
            "cpu",
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

#[test]
fn three_shards_merge_into_the_single_process_output() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("images.txt");
    let names = [
        "chelsea.png",
        "bad_truncated_rocket.jpg",
        "camera.png",
        "astronaut.png",
        "coffee.png",
        "rocket.jpg",
        "grace_hopper.jpg",
    ];
    let text: String = names
        .iter()
        .map(|n| format!("{}\n", golden(&format!("images/{n}")).display()))
        .collect();
    std::fs::write(&list, &text).unwrap();
    let single = dir.path().join("single.jsonl");
    batch(dir.path(), &list, &single, &[]);

    let out = dir.path().join("sharded.jsonl");
    let o = batch(dir.path(), &list, &out, &["--shard", "0/3"]);
    assert!(!out.exists(), "merged before every shard finished");
    assert!(String::from_utf8_lossy(&o.stderr).contains("3 of 7 images"));
    batch(dir.path(), &list, &out, &["--shard", "2/3"]);
    assert!(!out.exists());
    // Shard 1 is interrupted (its file holds its first image and half a line), then resumed.
    let first_of_shard_1 = std::fs::read_to_string(&single)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    std::fs::write(
        dir.path().join("sharded.shard-1-of-3.jsonl"),
        format!("{first_of_shard_1}\n{{\"image\": \"cut"),
    )
    .unwrap();
    let o = batch(dir.path(), &list, &out, &["--shard", "1/3"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("merged 3 shards"));
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        std::fs::read_to_string(&single).unwrap()
    );
}

#[test]
fn shards_agree_on_their_settings_and_the_merge_records_them() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("images.txt");
    let names = ["chelsea.png", "camera.png", "astronaut.png"];
    let text: String = names
        .iter()
        .map(|n| format!("{}\n", golden(&format!("images/{n}")).display()))
        .collect();
    std::fs::write(&list, &text).unwrap();
    let out = dir.path().join("c.jsonl");
    let o = batch(dir.path(), &list, &out, &["--shard", "0/2"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("2 of 3 images"));
    assert!(dir.path().join("c.shard-0-of-2.jsonl.meta.json").exists());
    // The other shard with another prompt would mix two settings in one output: refused.
    let o = bin()
        .arg("batch")
        .arg(&list)
        .arg("--out")
        .arg(&out)
        .arg("--model")
        .arg(golden("checkpoints/hf"))
        .arg("--tokenizer")
        .arg(tiny_tokenizer(dir.path()))
        .args(["--greedy", "--max-new-tokens", "6", "--shard", "1/2"])
        .args(["--prompt", "What is it?"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("c.shard-0-of-2.jsonl") && err.contains("prompt"),
        "{err}"
    );
    assert!(!dir.path().join("c.shard-1-of-2.jsonl").exists());
    let o = batch(dir.path(), &list, &out, &["--shard", "1/2"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("merged 2 shards"));
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 3);
    let shard_meta = std::fs::read_to_string(dir.path().join("c.shard-1-of-2.jsonl.meta.json"));
    let merged_meta = std::fs::read_to_string(dir.path().join("c.jsonl.meta.json"));
    let settings = |text: std::io::Result<String>| {
        let mut v: serde_json::Value = serde_json::from_str(&text.unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("written_by");
        v
    };
    assert_eq!(settings(merged_meta), settings(shard_meta));
}
