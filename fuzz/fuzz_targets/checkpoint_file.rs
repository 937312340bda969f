//! Checkpoint bytes as a safetensors file, a PyTorch zip pickle and a SAT `.pt`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use visualglm::checkpoint::{pth, st};

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("vglm-fuzz-ck-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    for name in ["m.safetensors", "m.bin"] {
        let path = dir.join(name);
        if std::fs::write(&path, data).is_ok() {
            if name.ends_with(".safetensors") {
                let _ = st::read_safetensors(&path);
            } else {
                let _ = pth::read_state_dict(&path);
            }
        }
    }
});
