//! The PTB tokenizer and the caption scores against pycocoevalcap 1.2 / CoreNLP 3.4.1, on
//! the committed differential fixtures of `tests/data/ptb/` (made by
//! `eval/fixtures/make_ptb_fixtures.py`; see `eval/README.md`).

use serde_json::Value;
use visualglm_eval::caption::tokenize::{ptb_tokenize, ptb_tokenize_all};
use visualglm_eval::{score_captions, CaptionItem, ImageId, Tokenizer};

const TOKENS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ptb/tokens.jsonl");
const SCORES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ptb/scores.json");

/// Scores must match the reference to this absolute difference.
const SCORE_TOLERANCE: f64 = 1e-9;

/// One fixture caption: its sequence (`None` = tokenised alone), text and expected tokens.
struct Line {
    seq: Option<String>,
    caption: String,
    ptb: String,
}

fn read_lines() -> (Value, Vec<Line>) {
    let text = std::fs::read_to_string(TOKENS).expect("read tokens.jsonl");
    let mut rows = text.lines();
    let header: Value = serde_json::from_str(rows.next().expect("header")).expect("header");
    let lines: Vec<Line> = rows
        .map(|row| {
            let v: Value = serde_json::from_str(row).expect("fixture line");
            Line {
                seq: v["seq"].as_str().map(str::to_string),
                caption: v["caption"].as_str().expect("caption").to_string(),
                ptb: v["ptb"].as_str().expect("ptb").to_string(),
            }
        })
        .collect();
    assert_eq!(header["captions"].as_u64(), Some(lines.len() as u64));
    (header, lines)
}

/// Runs the Rust tokenizer the way each fixture line was made: consecutive lines of one
/// sequence as one `PTBTokenizer.tokenize` call, `null` ones alone.
fn tokenize_like_fixture(lines: &[Line]) -> Vec<String> {
    let mut out = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        match &lines[i].seq {
            None => {
                out.push(ptb_tokenize(&lines[i].caption));
                i += 1;
            }
            Some(seq) => {
                let len = lines[i..]
                    .iter()
                    .take_while(|l| l.seq.as_deref() == Some(seq))
                    .count();
                let texts: Vec<&str> = lines[i..i + len]
                    .iter()
                    .map(|l| l.caption.as_str())
                    .collect();
                out.extend(ptb_tokenize_all(&texts));
                i += len;
            }
        }
    }
    out
}

fn is_ascii_line(line: &Line) -> bool {
    line.caption.is_ascii()
}

#[test]
fn ptb_tokens_match_corenlp_on_every_fixture_caption() {
    let (header, lines) = read_lines();
    assert!(header["meta"]["corenlp_jar"]
        .as_str()
        .is_some_and(|j| j.contains("3.4.1")));
    let random = lines
        .iter()
        .filter(|l| l.seq.as_deref().is_some_and(|s| s.starts_with("random")))
        .count();
    assert!(random >= 10_000, "only {random} random captions");
    let got = tokenize_like_fixture(&lines);
    let mismatches: Vec<String> = lines
        .iter()
        .zip(&got)
        .filter(|(line, got)| line.ptb != **got)
        .map(|(line, got)| {
            format!(
                "[{}] {:?}: got {:?}, want {:?}",
                line.seq.as_deref().unwrap_or("alone"),
                line.caption,
                got,
                line.ptb
            )
        })
        .collect();
    let ascii = lines.iter().filter(|l| is_ascii_line(l)).count();
    assert!(
        mismatches.is_empty(),
        "{} of {} captions ({} ASCII) differ from CoreNLP, e.g.\n{}",
        mismatches.len(),
        lines.len(),
        ascii,
        mismatches[..mismatches.len().min(40)].join("\n")
    );
}

/// The score corpus's images as caption items.
fn score_items(fixture: &Value) -> Vec<CaptionItem> {
    fixture["images"]
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

fn read_scores() -> Value {
    let text = std::fs::read_to_string(SCORES).expect("read scores.json");
    serde_json::from_str(&text).expect("parse scores.json")
}

#[test]
fn score_corpus_tokens_match_corenlp() {
    let fixture = read_scores();
    let items = score_items(&fixture);
    let images = fixture["images"].as_array().expect("images");
    let refs: Vec<&str> = items
        .iter()
        .flat_map(|it| it.references.iter().map(String::as_str))
        .collect();
    let cands: Vec<&str> = items.iter().map(|it| it.candidate.as_str()).collect();
    let want_refs: Vec<&str> = images
        .iter()
        .flat_map(|im| im["refs_ptb"].as_array().expect("refs_ptb"))
        .map(|r| r.as_str().expect("ref"))
        .collect();
    let want_cands: Vec<&str> = images
        .iter()
        .map(|im| im["candidate_ptb"].as_str().expect("candidate_ptb"))
        .collect();
    assert_eq!(Tokenizer::Ptb.apply_all(&refs), want_refs);
    assert_eq!(Tokenizer::Ptb.apply_all(&cands), want_cands);
}

#[test]
fn scores_match_pycocoevalcap_within_1e9() {
    let fixture = read_scores();
    let items = score_items(&fixture);
    let report = score_captions(&items, Tokenizer::Ptb).expect("score");
    let want = &fixture["scores"];
    let mut worst = (0.0f64, String::new());
    let mut check = |got: f64, want: &Value, what: String| {
        let want = want.as_f64().expect("score value");
        let diff = (got - want).abs();
        assert!(
            diff <= SCORE_TOLERANCE,
            "{what}: got {got:e}, want {want:e} (diff {diff:e})"
        );
        if diff > worst.0 {
            worst = (diff, what);
        }
    };
    for (name, value) in report.corpus.named() {
        check(value, &want["corpus"][name], format!("corpus {name}"));
    }
    assert_eq!(report.per_image.len(), items.len());
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
            check(
                value,
                &want["per_image"][name][i],
                format!("image {i} {name}"),
            );
        }
    }
    // Documented in eval/README.md; printed with `--nocapture`.
    println!("largest score difference: {:e} ({})", worst.0, worst.1);
}
