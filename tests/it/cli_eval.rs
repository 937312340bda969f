//! `visualglm eval ...` end to end on small files in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/golden/eval");

fn golden(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{GOLDEN}/{name}")).expect("read golden");
    serde_json::from_str(&text).expect("parse golden")
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_visualglm"))
        .args(args)
        .output()
        .expect("run visualglm")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Prediction JSONL and COCO annotation JSON built from the caption golden.
fn caption_files(dir: &Path) -> (PathBuf, PathBuf, Value) {
    let g = golden("captions.json");
    let mut preds = String::new();
    let mut anns = Vec::new();
    for im in g["images"].as_array().expect("images") {
        preds
            .push_str(&json!({"image_id": im["image_id"], "caption": im["candidate"]}).to_string());
        preds.push('\n');
        for r in im["refs"].as_array().expect("refs") {
            anns.push(json!({"image_id": im["image_id"], "caption": r}));
        }
    }
    let p = write(dir, "pred.jsonl", &preds);
    let r = write(dir, "refs.json", &json!({"annotations": anns}).to_string());
    (p, r, g)
}

#[test]
fn score_prints_corpus_json_and_writes_report() {
    let dir = tempfile::tempdir().unwrap();
    let (p, r, g) = caption_files(dir.path());
    let out = dir.path().join("report.json");
    let o = run(&[
        "eval",
        "score",
        "--predictions",
        s(&p),
        "--references",
        s(&r),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let printed: Value = serde_json::from_slice(&o.stdout).expect("stdout is JSON");
    for name in ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"] {
        let want = g["scores_ptb"]["corpus"][name].as_f64().unwrap();
        let got = printed[name].as_f64().expect(name);
        assert!(
            (got - want).abs() <= 1e-9 * want.abs(),
            "{name}: {got} vs {want}"
        );
    }
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    for name in ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr"] {
        assert_eq!(report["corpus"][name], printed[name], "{name}");
    }
    assert_eq!(report["exact_match"], printed["exact_match"]);
    assert!(printed["exact_match"]
        .as_f64()
        .is_some_and(|x| (0.0..=1.0).contains(&x)));
    let per = report["per_image"].as_array().expect("per_image");
    assert_eq!(per.len(), 40);
    let want_cider = g["scores_ptb"]["per_image"]["CIDEr"][3].as_f64().unwrap();
    assert!((per[3]["CIDEr"].as_f64().unwrap() - want_cider).abs() <= 1e-9 * want_cider);
    assert_eq!(per[3]["image_id"], 3);
    // Atomic write: nothing but the inputs and the report in the directory.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

#[test]
fn score_markdown_table() {
    let dir = tempfile::tempdir().unwrap();
    let (p, r, _) = caption_files(dir.path());
    let o = run(&[
        "eval",
        "score",
        "--predictions",
        s(&p),
        "--references",
        s(&r),
        "--markdown",
    ]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("| metric | score |"), "{text}");
    assert!(text.contains("| CIDEr | 0.8849 |"), "{text}");
}

#[test]
fn malformed_predictions_fail_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_, r, _) = caption_files(dir.path());
    let bad = write(
        dir.path(),
        "bad.jsonl",
        "{\"image_id\": 0, \"caption\": \"a\"}\n{\"image_id\": 1, \"caption\": \n",
    );
    let o = run(&[
        "eval",
        "score",
        "--predictions",
        s(&bad),
        "--references",
        s(&r),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.jsonl:2:"), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn vqa_and_retrieval_scores() {
    let dir = tempfile::tempdir().unwrap();
    let g = golden("vqa.json");
    let items = g["items"].as_array().unwrap();
    let preds: Vec<Value> = items
        .iter()
        .map(|it| json!({"question_id": it["question_id"], "answer": it["prediction"]}))
        .collect();
    let anns: Vec<Value> = items
        .iter()
        .map(|it| {
            json!({"question_id": it["question_id"], "question_type": it["question_type"],
                   "answer_type": it["answer_type"], "answers": it["answers"]})
        })
        .collect();
    let p = write(dir.path(), "p.json", &Value::Array(preds).to_string());
    let a = write(
        dir.path(),
        "a.json",
        &json!({"annotations": anns}).to_string(),
    );
    let o = run(&[
        "eval",
        "vqa-score",
        "--predictions",
        s(&p),
        "--annotations",
        s(&a),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let acc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(acc, g["accuracy"]);

    let scores = format!("{GOLDEN}/retrieval.json");
    let o = run(&["eval", "retrieval-score", "--scores", &scores]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let metrics: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(metrics, golden("retrieval.json")["metrics"]);
}

#[test]
fn score_takes_release_references_and_batch_predictions_by_path() {
    // The shapes examples: `[{"img", "prompt", "label"}]`, as `data synth` writes.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/shapes/examples");
    let refs = examples.join("examples.json");
    let records: Value = serde_json::from_str(&std::fs::read_to_string(&refs).unwrap()).unwrap();
    let records = records.as_array().expect("a list");
    let dir = tempfile::tempdir().unwrap();
    // `batch` output for all but the last two images: each caption is the image's label.
    let mut preds = String::new();
    for r in &records[..records.len() - 2] {
        let image = examples.join(r["img"].as_str().unwrap());
        preds.push_str(&json!({"image": image, "caption": r["label"]}).to_string());
        preds.push('\n');
    }
    let p = write(dir.path(), "captions.jsonl", &preds);
    let o = run(&[
        "eval",
        "score",
        "--predictions",
        s(&p),
        "--references",
        s(&refs),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let missing = format!("2 of the {} images", records.len());
    assert!(
        stderr.contains(&missing) && stderr.contains("no prediction"),
        "{stderr}"
    );
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["exact_match"], 1.0);
    let o = run(&[
        "eval",
        "score",
        "--predictions",
        s(&p),
        "--references",
        s(&refs),
        "--strict",
    ]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains(&missing), "{stderr}");
    // A JSONL copy of the references reads the same.
    let lines: String = records.iter().map(|r| format!("{r}\n")).collect();
    let jsonl = write(dir.path(), "refs.jsonl", &lines);
    let o = run(&[
        "eval",
        "score",
        "--predictions",
        s(&p),
        "--references",
        s(&jsonl),
        "--images",
        s(&examples),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
