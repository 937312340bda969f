//! SentencePiece `.model` bytes → tokenizer → encode/decode a fixed text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("vglm-fuzz-spm-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("x.model");
    if std::fs::write(&path, data).is_ok() {
        if let Ok(tok) = visualglm_tokenizer::ChatGlmTokenizer::from_file(&path) {
            if let Ok(ids) = tok.encode("<img>问：a  b\n\t答：👋") {
                let _ = tok.decode(&ids, &Default::default());
            }
        }
    }
});
