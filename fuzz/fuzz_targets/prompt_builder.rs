//! Arbitrary query and history text → the VisualGLM prompt (stand-in tokenizer).
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use visualglm_language::prompt::{Overflow, PromptBuilder, Template};
use visualglm_tokenizer::ChatGlmTokenizer;

static TOK: OnceLock<Option<ChatGlmTokenizer>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let tok = TOK.get_or_init(|| {
        ChatGlmTokenizer::from_file(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../assets/tiny/tokenizer.model"
        ))
        .ok()
    });
    let (Some(tok), Ok(text)) = (tok, std::str::from_utf8(data)) else {
        return;
    };
    let mut parts = text.splitn(3, '\u{1}');
    let query = parts.next().unwrap_or_default();
    let history: Vec<(String, String)> = parts
        .next()
        .map(|h| vec![(h.to_string(), parts.next().unwrap_or_default().to_string())])
        .unwrap_or_default();
    for template in [Template::Chinese, Template::English] {
        let _ = PromptBuilder::new(tok)
            .template(template)
            .image(32, tok.pad_id())
            .max_length(256)
            .overflow(Overflow::DropOldestTurns)
            .build(query, &history);
    }
});
