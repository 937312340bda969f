//! Regression tests for what the fuzz targets in `fuzz/` found, run without the fuzzer.
//!
//! Every file under `tests/data/fuzz/TARGET/` is replayed through the same calls as the fuzz
//! target `TARGET` (see `fuzz/fuzz_targets/`): none may panic, hang or allocate without bound.
//! Findings small enough to read are also spelled out inline below, with what they must give.

mod support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine;
use candle_core::{DType, Device};
use support::tiny_tokenizer;
use visualglm::checkpoint::{pth, st};
use visualglm::pipeline::Captioner;
use visualglm::server::request::{conversation, prepare_chat, prepare_release, PromptLimits};
use visualglm::server::types::{ChatCompletionRequest, ReleaseRequest};
use visualglm::server::ImagePolicy;
use visualglm::{LoadOptions, VisualGlmConfig};
use visualglm_language::prompt::{Overflow, PromptBuilder, Template};
use visualglm_language::tokenizer::ChatGlmTokenizer;
use visualglm_train::data::{load_data_file, DataFormat, LoadOptions as DataOptions};
use visualglm_vision::preprocess::{decode_image_with_limits, DecodeLimits, ImagePreprocessor};

/// `tests/data/fuzz/TARGET`.
fn data_dir(target: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fuzz")).join(target)
}

/// The committed inputs of one target (none is fine).
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(data_dir(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("readable fuzz input");
            (p, bytes)
        })
        .collect()
}

/// Writes `data` to `name` in a fresh temporary directory.
fn as_file(data: &[u8], name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, data).unwrap();
    (dir, path)
}

// ---- the fuzz targets' bodies ----

fn image_decode(data: &[u8]) {
    let limits = DecodeLimits {
        max_pixels: 4_000_000,
        max_alloc: 64 << 20,
    };
    if let Ok(img) = decode_image_with_limits(data, "fuzz", &limits) {
        let _ = ImagePreprocessor::new(32).preprocess(&img, &Device::Cpu);
    }
}

fn spm_model(data: &[u8]) {
    let (_dir, path) = as_file(data, "x.model");
    if let Ok(tok) = ChatGlmTokenizer::from_file(&path) {
        if let Ok(ids) = tok.encode("<img>问：a  b\n\t答：👋") {
            let _ = tok.decode(&ids);
        }
    }
}

fn checkpoint_file(data: &[u8]) {
    let (_dir, path) = as_file(data, "m.safetensors");
    let _ = st::read_safetensors(&path);
    let (_dir, path) = as_file(data, "m.bin");
    let _ = pth::read_state_dict(&path);
}

fn config_json(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = VisualGlmConfig::from_json_str(text, Path::new("fuzz.json"));
    }
}

fn data_jsonl(data: &[u8]) {
    let (_dir, path) = as_file(data, "d.json");
    let opts = DataOptions {
        max_record_bytes: 1 << 16,
        max_document_bytes: 1 << 20,
        ..DataOptions::default()
    };
    for f in [
        DataFormat::JsonLines,
        DataFormat::JsonList,
        DataFormat::CocoCaptions,
    ] {
        let _ = load_data_file(&path, Some(f), &opts);
    }
}

fn gguf_file(data: &[u8]) {
    let (_dir, path) = as_file(data, "m.gguf");
    let _ = visualglm::gguf::load_gguf(&path, &Device::Cpu, DType::F32, &LoadOptions::default());
}

fn tokenizer() -> &'static ChatGlmTokenizer {
    static TOK: OnceLock<ChatGlmTokenizer> = OnceLock::new();
    TOK.get_or_init(|| ChatGlmTokenizer::from_file(tiny_tokenizer(Path::new("."))).unwrap())
}

fn prompt_builder(data: &[u8]) {
    let tok = tokenizer();
    let Ok(text) = std::str::from_utf8(data) else {
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
}

fn captioner() -> &'static Captioner {
    static CAPTIONER: OnceLock<Captioner> = OnceLock::new();
    CAPTIONER.get_or_init(|| Captioner::new(support::golden_model(), tokenizer().clone()).unwrap())
}

fn server_policy() -> ImagePolicy {
    ImagePolicy {
        limits: DecodeLimits {
            max_pixels: 1 << 20,
            max_alloc: 16 << 20,
        },
        local_dir: None,
    }
}

const SERVER_LIMITS: PromptLimits = PromptLimits {
    max_length: 512,
    default_max_tokens: 16,
};

/// The `server_request` target: returns how many of the two endpoints prepared a prompt.
fn server_request(data: &[u8]) -> usize {
    let c = captioner();
    let policy = server_policy();
    let mut prepared = 0;
    if let Ok(req) = serde_json::from_slice::<ChatCompletionRequest>(data) {
        let conv = conversation(&req.messages);
        if let Ok(p) = prepare_chat(c, &req, &policy, &SERVER_LIMITS) {
            assert!(conv.is_ok());
            assert!(p.ids.len() < p.config.max_length);
            prepared += 1;
        }
    }
    if let Ok(req) = serde_json::from_slice::<ReleaseRequest>(data) {
        if let Ok(p) = prepare_release(c, &req, &policy, &SERVER_LIMITS) {
            assert!(p.ids.len() < p.config.max_length);
            prepared += 1;
        }
    }
    prepared
}

// ---- replays of the committed inputs ----

/// Runs `f` on every committed input of `target`, naming the file that panics.
fn replay(target: &str, f: impl Fn(&[u8])) {
    for (path, bytes) in inputs(target) {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&bytes)));
        assert!(result.is_ok(), "{target}: {} panics", path.display());
    }
}

#[test]
fn image_decode_inputs() {
    replay("image_decode", image_decode);
}

#[test]
fn spm_model_inputs() {
    replay("spm_model", spm_model);
}

#[test]
fn checkpoint_file_inputs() {
    replay("checkpoint_file", checkpoint_file);
}

#[test]
fn config_json_inputs() {
    replay("config_json", config_json);
}

#[test]
fn data_jsonl_inputs() {
    replay("data_jsonl", data_jsonl);
}

#[test]
fn gguf_file_inputs() {
    replay("gguf_file", gguf_file);
}

#[test]
fn prompt_builder_inputs() {
    replay("prompt_builder", prompt_builder);
}

#[test]
fn server_request_inputs() {
    replay("server_request", |d| {
        server_request(d);
    });
}

/// The seeds of the `server_request` corpus are valid requests: each prepares a prompt (the
/// chat shapes at the chat endpoint, the release shapes at `POST /`).
#[test]
fn server_request_seeds_prepare() {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/seeds/server_request"
    ));
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            server_request(&bytes) >= 1,
            "{} prepares nothing",
            path.display()
        );
        n += 1;
    }
    assert!(n >= 5, "the seeds are missing");
    // The PNG data URL of the seeds decodes to the 2×2 picture.
    let png = base64::engine::general_purpose::STANDARD
        .decode("iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR4nGPgEpEDIgYIBQAGTgDxOGMygQAAAABJRU5ErkJggg==")
        .unwrap();
    let img = decode_image_with_limits(&png, "seed", &server_policy().limits).unwrap();
    assert_eq!((img.width(), img.height()), (2, 2));
}

/// Long inputs, which the fuzzer's length control rarely reaches: a 1 MiB question (one long
/// word, spaced words, CJK) is tokenized in linear time and refused as too long, not hung on.
#[test]
fn server_request_long_text_is_refused_quickly() {
    let n = 1 << 20;
    for text in ["x".repeat(n), "a b c d ".repeat(n / 8), "描".repeat(n / 3)] {
        let body = serde_json::json!({"messages": [{"role": "user", "content": text}]});
        let req: ChatCompletionRequest = serde_json::from_value(body).unwrap();
        let t = std::time::Instant::now();
        let e = prepare_chat(captioner(), &req, &server_policy(), &SERVER_LIMITS).unwrap_err();
        assert_eq!(e.code, Some("context_length_exceeded"), "{e:?}");
        assert!(t.elapsed().as_secs() < 10, "took {:?}", t.elapsed());
    }
}
