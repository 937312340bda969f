//! Caption predictions and references, as `visualglm eval score` reads them: the input up to
//! its first NUL byte is the predictions file, the rest the references file (the whole input
//! is both when it holds no NUL) → `read_caption_set` → `score_captions` with each tokenizer
//! → the report as JSON and Markdown.
#![no_main]
use libfuzzer_sys::fuzz_target;
use visualglm_eval::io::read_caption_set;
use visualglm_eval::{score_captions, Tokenizer};

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("vglm-fuzz-evcap-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let (preds, refs) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };
    let (p, r) = (dir.join("predictions.jsonl"), dir.join("references.json"));
    if std::fs::write(&p, preds).is_err() || std::fs::write(&r, refs).is_err() {
        return;
    }
    if let Ok(items) = read_caption_set(&p, &r) {
        for tokenizer in [Tokenizer::Ptb, Tokenizer::Simple, Tokenizer::None] {
            if let Ok(report) = score_captions(&items, tokenizer) {
                let _ = serde_json::to_string_pretty(&report);
                let _ = serde_json::to_string_pretty(&report.summary());
                let _ = report.to_markdown();
            }
        }
    }
});
