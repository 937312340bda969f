//! Request bodies of `POST /v1/chat/completions` and the release's `POST /` → the server's
//! request types → `conversation` and prompt preparation (tiny model and tokenizer), with
//! `data:` image URLs decoded under small limits.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use visualglm::pipeline::Captioner;
use visualglm_server::request::{conversation, prepare_chat, prepare_release, PromptLimits};
use visualglm_server::types::{ChatCompletionRequest, ReleaseRequest};
use visualglm_server::ImagePolicy;
use visualglm_vision::decode::DecodeLimits;

static CAPTIONER: OnceLock<Captioner> = OnceLock::new();

fn captioner() -> &'static Captioner {
    CAPTIONER.get_or_init(|| {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let model = visualglm::VisualGlm::load(
            format!("{root}/../shared/golden/checkpoints/hf").as_ref(),
            &candle_core::Device::Cpu,
            candle_core::DType::F32,
            &visualglm::LoadOptions::default(),
        )
        .expect("the tiny golden model loads");
        let tokenizer = visualglm_tokenizer::ChatGlmTokenizer::from_file(format!(
            "{root}/assets/tiny/tokenizer.model"
        ))
        .expect("the tiny tokenizer loads");
        Captioner::new(model, tokenizer).expect("model and tokenizer agree")
    })
}

fuzz_target!(|data: &[u8]| {
    let c = captioner();
    let policy = ImagePolicy {
        limits: DecodeLimits {
            max_pixels: 1 << 20,
            max_alloc: 16 << 20,
        },
        local_dir: None,
    };
    let limits = PromptLimits {
        max_length: 512,
        default_max_tokens: Some(16),
        max_images: visualglm_server::DEFAULT_MAX_IMAGES,
    };
    if let Ok(req) = serde_json::from_slice::<ChatCompletionRequest>(data) {
        let conv = conversation(&req.messages);
        if let Ok(p) = prepare_chat(c, &req, &policy, &limits) {
            check(&p, conv.is_ok(), &limits);
        }
    }
    if let Ok(req) = serde_json::from_slice::<ReleaseRequest>(data) {
        if let Ok(p) = prepare_release(c, &req, &policy, &limits) {
            check(&p, true, &limits);
        }
    }
});

/// What every prepared prompt must satisfy.
fn check(p: &visualglm_server::request::Prepared, conv_ok: bool, limits: &PromptLimits) {
    assert!(conv_ok, "prepare_chat succeeded where conversation failed");
    assert!(
        p.ids.len() < p.config.max_length,
        "no room left for an answer"
    );
    assert!(p.config.max_length <= limits.max_length);
    assert_eq!(p.images.len(), p.image_starts.len());
    for &start in &p.image_starts {
        assert!(
            start + 32 <= p.ids.len(),
            "image placeholders out of the prompt"
        );
    }
}
