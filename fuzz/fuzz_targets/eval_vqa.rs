//! VQA annotations and predictions, as `visualglm eval vqa-score` reads them: the input up to
//! its first NUL byte is the annotations file, the rest the predictions file (the whole input
//! is both when it holds no NUL) → `read_vqa_annotations` / `read_vqa_predictions` →
//! `vqa::evaluate` (2 digits, the CLI's default) → the report as JSON and Markdown.
#![no_main]
use libfuzzer_sys::fuzz_target;
use visualglm_eval::io::vqa::{read_vqa_annotations, read_vqa_predictions};

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("vglm-fuzz-evvqa-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let (ann, preds) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let (a, p) = (dir.join("annotations.json"), dir.join("predictions.jsonl"));
    if std::fs::write(&a, ann).is_err() || std::fs::write(&p, preds).is_err() {
        return;
    }
    let questions = read_vqa_annotations(&a);
    let predictions = read_vqa_predictions(&p);
    if let (Ok(q), Ok(p)) = (questions, predictions) {
        if let Ok(report) = visualglm_eval::vqa::evaluate(&q, &p, 2) {
            let _ = serde_json::to_string_pretty(&report);
            let _ = serde_json::to_string_pretty(&report.accuracy);
            let _ = report.to_markdown();
        }
    }
});
