//! Caption metrics and tokenisation against the pycocoevalcap goldens.

use serde_json::Value;
use visualglm_eval::{score_captions, CaptionItem, ImageId, Tokenizer};

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/golden/eval/captions.json"
);

fn golden() -> Value {
    let text = std::fs::read_to_string(GOLDEN).expect("read captions.json");
    serde_json::from_str(&text).expect("parse captions.json")
}

fn items(g: &Value) -> Vec<CaptionItem> {
    g["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|im| CaptionItem {
            image_id: ImageId::Int(im["image_id"].as_i64().expect("id")),
            candidate: im["candidate"].as_str().expect("candidate").to_string(),
            references: im["refs"]
                .as_array()
                .expect("refs")
                .iter()
                .map(|r| r.as_str().expect("ref").to_string())
                .collect(),
        })
        .collect()
}

fn assert_close(got: f64, want: f64, what: &str) {
    let tol = 1e-9 * want.abs().max(1e-12);
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got:e}, want {want:e} (diff {:e})",
        (got - want).abs()
    );
}

fn check_scores(report: &visualglm_eval::CaptionReport, want: &Value, label: &str) {
    for (name, value) in report.corpus.named() {
        let expected = want["corpus"][name].as_f64().expect("corpus value");
        assert_close(value, expected, &format!("{label} corpus {name}"));
    }
    let per = &want["per_image"];
    for (i, item) in report.per_image.iter().enumerate() {
        let got = [
            item.bleu[0],
            item.bleu[1],
            item.bleu[2],
            item.bleu[3],
            item.rouge_l,
            item.cider,
        ];
        for (name, value) in visualglm_eval::report::METRIC_NAMES.iter().zip(got) {
            let expected = per[name][i].as_f64().expect("per-image value");
            assert_close(value, expected, &format!("{label} image {i} {name}"));
        }
    }
}

#[test]
fn ptb_tokenizer_reproduces_fixture_texts() {
    let g = golden();
    for im in g["images"].as_array().expect("images") {
        let raw = im["refs"].as_array().expect("refs");
        let ptb = im["refs_ptb"].as_array().expect("refs_ptb");
        for (r, p) in raw.iter().zip(ptb) {
            assert_eq!(
                Tokenizer::Ptb.apply(r.as_str().unwrap()),
                p.as_str().unwrap()
            );
        }
        assert_eq!(
            Tokenizer::Ptb.apply(im["candidate"].as_str().unwrap()),
            im["candidate_ptb"].as_str().unwrap()
        );
    }
}

#[test]
fn ptb_scores_match_pycocoevalcap() {
    let g = golden();
    let report = score_captions(&items(&g), Tokenizer::Ptb).expect("score");
    check_scores(&report, &g["scores_ptb"], "ptb");
    // BLEU's logged statistics: "{'testlen': .., 'reflen': .., 'guess': [..], 'correct': [..]}".
    let log = g["scores_ptb"]["bleu_log"][0].as_str().expect("bleu_log");
    let stats = &report.bleu_log.stats;
    let expected = format!(
        "{{'testlen': {}, 'reflen': {}, 'guess': {:?}, 'correct': {:?}}}",
        stats.testlen, stats.reflen, stats.guess, stats.correct
    );
    assert_eq!(log, expected);
}

#[test]
fn simple_tokenization_scores_match() {
    let g = golden();
    let report = score_captions(&items(&g), Tokenizer::Simple).expect("score");
    check_scores(&report, &g["scores_simple"], "simple");
}
