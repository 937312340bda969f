//! Training data bytes read as JSONL, JSON list and COCO.
#![no_main]
use libfuzzer_sys::fuzz_target;
use visualglm_train::data::{load_data_file, DataFormat, LoadOptions};

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("vglm-fuzz-data-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("d.json");
    if std::fs::write(&path, data).is_ok() {
        let opts = LoadOptions {
            max_record_bytes: 1 << 16,
            max_document_bytes: 1 << 20,
            ..LoadOptions::default()
        };
        for f in [
            DataFormat::JsonLines,
            DataFormat::JsonList,
            DataFormat::CocoCaptions,
        ] {
            let _ = load_data_file(&path, Some(f), &opts);
        }
    }
});
