//! `config.json` / `model_config.json` text → configuration.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = visualglm::VisualGlmConfig::from_json_str(text, std::path::Path::new("fuzz.json"));
    }
});
