//! An adapter directory, as `visualglm lora` and `visualglm serve --lora` read it: the input
//! up to its first NUL byte is `adapter_config.json`, the rest `adapter_model.safetensors`
//! (absent when the input holds no NUL) → `lora::read_any_adapters` on the directory.
#![no_main]
use libfuzzer_sys::fuzz_target;
use visualglm::lora::{read_any_adapters, ADAPTER_CONFIG, ADAPTER_WEIGHTS};

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("vglm-fuzz-lora-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let (config, weights) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    if std::fs::write(dir.join(ADAPTER_CONFIG), config).is_err() {
        return;
    }
    let tensors = dir.join(ADAPTER_WEIGHTS);
    match weights {
        Some(w) => {
            if std::fs::write(&tensors, w).is_err() {
                return;
            }
        }
        None => {
            let _ = std::fs::remove_file(&tensors);
        }
    }
    let _ = read_any_adapters(&dir, &visualglm::LoadOptions::default());
});
