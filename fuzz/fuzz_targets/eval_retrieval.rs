//! A retrieval score file, as `visualglm eval retrieval-score` reads it:
//! `read_retrieval_scores` → `retrieval::evaluate` → the report as JSON and Markdown.
#![no_main]
use libfuzzer_sys::fuzz_target;
use visualglm_eval::io::retrieval::read_retrieval_scores;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("vglm-fuzz-evret-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("scores.json");
    if std::fs::write(&path, data).is_ok() {
        if let Ok(scores) = read_retrieval_scores(&path) {
            if let Ok(report) = visualglm_eval::retrieval::evaluate(&scores) {
                let _ = serde_json::to_string_pretty(&report);
                let _ = report.metrics.to_markdown();
            }
        }
    }
});
