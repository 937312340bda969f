//! Retrieval Recall@K against the LAVIS `_report_metrics` goldens.

use serde_json::Value;
use visualglm_eval::retrieval::{evaluate, RetrievalScores};

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/golden/eval/retrieval.json"
);

#[test]
fn metrics_and_ranks_match() {
    let text = std::fs::read_to_string(GOLDEN).expect("read retrieval.json");
    let scores: RetrievalScores = serde_json::from_str(&text).expect("parse scores");
    let g: Value = serde_json::from_str(&text).expect("parse");
    let report = evaluate(&scores).expect("evaluate");
    let got = serde_json::to_value(&report).expect("serialise");
    for (k, v) in g["metrics"].as_object().expect("metrics") {
        assert_eq!(got[k].as_f64(), v.as_f64(), "{k}");
    }
    assert_eq!(got["tr_rank_per_image"], g["tr_rank_per_image"]);
    assert_eq!(got["ir_rank_per_text"], g["ir_rank_per_text"]);
    // Each image's top text has rank 0 exactly when the image is retrieved at rank 0.
    for (i, (&top, &rank)) in report
        .tr_top1_per_image
        .iter()
        .zip(&report.tr_rank_per_image)
        .enumerate()
    {
        assert_eq!(scores.img2txt[i].contains(&top), rank == 0, "image {i}");
    }
}

#[test]
fn bad_shapes_are_errors() {
    let text = std::fs::read_to_string(GOLDEN).expect("read retrieval.json");
    let mut scores: RetrievalScores = serde_json::from_str(&text).expect("parse scores");
    scores.scores_t2i[3].pop();
    let err = evaluate(&scores).unwrap_err().to_string();
    assert!(err.contains("scores_t2i row 3"), "{err}");
    scores.scores_t2i[3].push(f64::NAN);
    assert!(evaluate(&scores)
        .unwrap_err()
        .to_string()
        .contains("not finite"));
}

#[test]
fn ties_rank_later_index_first() {
    let scores = RetrievalScores {
        scores_i2t: vec![vec![1.0, 1.0]],
        scores_t2i: vec![vec![1.0], vec![1.0]],
        txt2img: vec![0, 0],
        img2txt: vec![vec![0]],
    };
    let r = evaluate(&scores).expect("evaluate");
    assert_eq!(r.tr_rank_per_image, vec![1]);
    // The winner is the text ranked first: the later of the tied two.
    assert_eq!(r.tr_top1_per_image, vec![1]);
    assert_eq!(r.metrics.txt_r1, 0.0);
    assert_eq!(r.metrics.img_r1, 100.0);
}
