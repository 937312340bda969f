//! `visualglm eval captions` on the tiny model: captions a COCO-style set and scores it the
//! same way `eval score` scores the written predictions.

use crate::support;

use std::process::Command;

use support::{golden, tiny_tokenizer};

#[test]
fn eval_captions_scores_what_it_writes() {
    let dir = tempfile::tempdir().unwrap();
    let coco = dir.path().join("coco.json");
    let data = serde_json::json!({
        "images": [{"id": 1, "file_name": "chelsea.png"}, {"id": 2, "file_name": "astronaut.png"}],
        "annotations": [
            {"image_id": 1, "caption": "a cat lying on a floor"},
            {"image_id": 1, "caption": "an orange cat"},
            {"image_id": 2, "caption": "an astronaut in a white suit"},
        ]
    });
    std::fs::write(&coco, data.to_string()).unwrap();
    let preds = dir.path().join("preds.jsonl");
    let report = dir.path().join("report.json");
    let o = Command::new(env!("CARGO_BIN_EXE_visualglm"))
        .args(["eval", "captions", "--data"])
        .arg(&coco)
        .arg("--images")
        .arg(golden("images"))
        .arg("--model")
        .arg(golden("checkpoints/hf"))
        .arg("--tokenizer")
        .arg(tiny_tokenizer(dir.path()))
        .args([
            "--greedy",
            "--max-new-tokens",
            "6",
            "--device",
            "cpu",
            "--predictions-out",
        ])
        .arg(&preds)
        .arg("--out")
        .arg(&report)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let corpus: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in ["Bleu_1", "Bleu_4", "ROUGE_L", "CIDEr"] {
        assert!(corpus[key].is_number(), "{key} missing in {corpus}");
    }
    assert_eq!(std::fs::read_to_string(&preds).unwrap().lines().count(), 2);
    let rescored = Command::new(env!("CARGO_BIN_EXE_visualglm"))
        .args(["eval", "score", "--predictions"])
        .arg(&preds)
        .arg("--references")
        .arg(&coco)
        .output()
        .unwrap();
    assert!(
        rescored.status.success(),
        "{}",
        String::from_utf8_lossy(&rescored.stderr)
    );
    let again: serde_json::Value = serde_json::from_slice(&rescored.stdout).unwrap();
    assert_eq!(again, corpus);
    let full: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(full["exact_match"], corpus["exact_match"]);
    for key in ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"] {
        assert_eq!(full["corpus"][key], corpus[key], "{key}");
    }
}

/// `eval captions` on the golden model over `coco` with `extra` arguments; its stdout.
fn eval_captions(dir: &std::path::Path, coco: &std::path::Path, extra: &[&str]) -> Vec<u8> {
    let o = Command::new(env!("CARGO_BIN_EXE_visualglm"))
        .args(["eval", "captions", "--data"])
        .arg(coco)
        .arg("--images")
        .arg(golden("images"))
        .arg("--model")
        .arg(golden("checkpoints/hf"))
        .arg("--tokenizer")
        .arg(tiny_tokenizer(dir))
        .args([
            "--greedy",
            "--max-new-tokens",
            "6",
            "--device",
            "cpu",
            "--batch-size",
            "2",
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

#[test]
fn two_shards_merge_into_the_single_process_predictions_and_scores() {
    let dir = tempfile::tempdir().unwrap();
    let coco = dir.path().join("coco.json");
    let data = serde_json::json!({
        "images": [
            {"id": 1, "file_name": "chelsea.png"},
            {"id": 2, "file_name": "astronaut.png"},
            {"id": 3, "file_name": "chelsea.png"},
        ],
        "annotations": [
            {"image_id": 1, "caption": "a cat lying on a floor"},
            {"image_id": 2, "caption": "an astronaut in a white suit"},
            {"image_id": 3, "caption": "an orange cat"},
        ]
    });
    std::fs::write(&coco, data.to_string()).unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let one = eval_captions(
        dir.path(),
        &coco,
        &[
            "--predictions-out",
            &path("one.jsonl"),
            "--out",
            &path("one.json"),
        ],
    );
    let sharded = |k: usize| {
        let shard = format!("{k}/2");
        let args = ["--shard", &shard, "--predictions-out", &path("two.jsonl")];
        eval_captions(
            dir.path(),
            &coco,
            &[&args[..], &["--out", &path("two.json")]].concat(),
        )
    };
    // Shard 1 (item 1 of 0..3) alone: nothing merged or scored yet.
    assert!(sharded(1).is_empty());
    assert!(!dir.path().join("two.jsonl").exists());
    let shard1 = std::fs::read_to_string(dir.path().join("two.shard-1-of-2.jsonl")).unwrap();
    assert_eq!(shard1.lines().count(), 1);
    // Shard 0 (items 0 and 2) finishes last: merges and scores what one process does.
    let two = sharded(0);
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    assert_eq!(read("one.jsonl").lines().count(), 3);
    assert_eq!(read("two.jsonl"), read("one.jsonl"));
    assert_eq!(read("two.json"), read("one.json"));
    assert_eq!(two, one);
    // A re-run reuses the shard files (a caption edited there is what it scores).
    let mut line: serde_json::Value = serde_json::from_str(shard1.trim()).unwrap();
    line["caption"] = "an astronaut in a white suit".into();
    let edited = format!("{line}\n");
    std::fs::write(dir.path().join("two.shard-1-of-2.jsonl"), edited).unwrap();
    let again: serde_json::Value = serde_json::from_slice(&sharded(1)).unwrap();
    let first: serde_json::Value = serde_json::from_slice(&one).unwrap();
    assert!(
        again["exact_match"].as_f64() > first["exact_match"].as_f64(),
        "{again} vs {first}"
    );
}
