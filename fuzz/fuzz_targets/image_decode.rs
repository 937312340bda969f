//! Image bytes → decode (with small limits) → the release's preprocessing.
#![no_main]
use libfuzzer_sys::fuzz_target;
use visualglm_vision::decode::{decode_image, DecodeLimits};
use visualglm_vision::preprocess::ImagePreprocessor;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits {
        max_pixels: 4_000_000,
        max_alloc: 64 << 20,
    };
    if let Ok(img) = decode_image(data, "fuzz", &limits) {
        let _ = ImagePreprocessor::new(32).preprocess(&img, &candle_core::Device::Cpu);
    }
});
