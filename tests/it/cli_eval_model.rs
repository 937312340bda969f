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
