//! GGUF bytes → the quantized-model loader.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("vglm-fuzz-gguf-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("m.gguf");
    if std::fs::write(&path, data).is_ok() {
        let _ = visualglm::gguf::load_gguf(
            &path,
            &candle_core::Device::Cpu,
            candle_core::DType::F32,
            &visualglm::LoadOptions::default(),
        );
    }
});
