//! Regression tests for what the fuzz targets in `fuzz/` found, run without the fuzzer.
//!
//! Every file under `tests/data/fuzz/TARGET/` (the target's minimised corpus plus any finding)
//! is replayed through the same calls as the fuzz target `TARGET` (see `fuzz/fuzz_targets/`):
//! none may panic, hang or allocate without bound. A replay that finds no input fails, and every
//! target of `fuzz/Cargo.toml` must have a replay here. Findings small enough to read are also
//! spelled out inline below, with what they must give.

use crate::support;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine;
use candle_core::{DType, Device};
use support::tiny_tokenizer;
use visualglm::checkpoint::{pth, st};
use visualglm::finetune::FinetuneConfig;
use visualglm::lora::{read_any_adapters, ADAPTER_CONFIG, ADAPTER_WEIGHTS};
use visualglm::pipeline::Captioner;
use visualglm::{LoadOptions, VisualGlmConfig};
use visualglm_eval::io::read_caption_set;
use visualglm_eval::io::retrieval::read_retrieval_scores;
use visualglm_eval::io::vqa::{read_vqa_annotations, read_vqa_predictions};
use visualglm_eval::{score_captions, Tokenizer};
use visualglm_language::prompt::{Overflow, PromptBuilder, Template};
use visualglm_server::request::{conversation, prepare_chat, prepare_release, PromptLimits};
use visualglm_server::types::{ChatCompletionRequest, ReleaseRequest};
use visualglm_server::ImagePolicy;
use visualglm_tokenizer::ChatGlmTokenizer;
use visualglm_train::data::{load_data_file, DataFormat, LoadOptions as DataOptions};
use visualglm_train::schedule::LrSchedule;
use visualglm_vision::decode::{decode_image, DecodeLimits};
use visualglm_vision::preprocess::ImagePreprocessor;

/// `tests/data/fuzz/TARGET`.
fn data_dir(target: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fuzz")).join(target)
}

/// The committed inputs of one target (none when the directory is missing).
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
    if let Ok(img) = decode_image(data, "fuzz", &limits) {
        let _ = ImagePreprocessor::new(32).preprocess(&img, &Device::Cpu);
    }
}

fn spm_model(data: &[u8]) {
    let (_dir, path) = as_file(data, "x.model");
    if let Ok(tok) = ChatGlmTokenizer::from_file(&path) {
        if let Ok(ids) = tok.encode("<img>问：a  b\n\t答：👋") {
            let _ = tok.decode(&ids, &Default::default());
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

/// The two files of the targets that read a pair: the input up to its first NUL byte and the
/// rest, or the whole input twice when it holds no NUL.
fn two_files(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    }
}

/// Returns whether a report came out.
fn eval_captions(data: &[u8]) -> bool {
    let (preds, refs) = two_files(data);
    let dir = tempfile::tempdir().unwrap();
    let (p, r) = (
        dir.path().join("predictions.jsonl"),
        dir.path().join("references.json"),
    );
    std::fs::write(&p, preds).unwrap();
    std::fs::write(&r, refs).unwrap();
    let mut scored = false;
    if let Ok(items) = read_caption_set(&p, &r) {
        for tokenizer in [Tokenizer::Ptb, Tokenizer::Simple, Tokenizer::None] {
            if let Ok(report) = score_captions(&items, tokenizer) {
                let _ = serde_json::to_string_pretty(&report);
                let _ = serde_json::to_string_pretty(&report.summary());
                let _ = report.to_markdown();
                scored = true;
            }
        }
    }
    scored
}

/// Returns whether a report came out.
fn eval_vqa(data: &[u8]) -> bool {
    let (ann, preds) = two_files(data);
    let dir = tempfile::tempdir().unwrap();
    let (a, p) = (
        dir.path().join("annotations.json"),
        dir.path().join("predictions.jsonl"),
    );
    std::fs::write(&a, ann).unwrap();
    std::fs::write(&p, preds).unwrap();
    let questions = read_vqa_annotations(&a);
    let predictions = read_vqa_predictions(&p);
    if let (Ok(q), Ok(p)) = (questions, predictions) {
        if let Ok(report) = visualglm_eval::vqa::evaluate(&q, &p, 2) {
            let _ = serde_json::to_string_pretty(&report);
            let _ = serde_json::to_string_pretty(&report.accuracy);
            let _ = report.to_markdown();
            return true;
        }
    }
    false
}

/// Returns whether a report came out.
fn eval_retrieval(data: &[u8]) -> bool {
    let (_dir, path) = as_file(data, "scores.json");
    if let Ok(scores) = read_retrieval_scores(&path) {
        if let Ok(report) = visualglm_eval::retrieval::evaluate(&scores) {
            let _ = serde_json::to_string_pretty(&report);
            let _ = report.metrics.to_markdown();
            return true;
        }
    }
    false
}

/// The `adapter_config` target: `adapter_config.json` up to the first NUL byte,
/// `adapter_model.safetensors` after it (absent without one). Returns what loading gave.
fn adapter_config(data: &[u8]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let (config, weights) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    std::fs::write(dir.path().join(ADAPTER_CONFIG), config).unwrap();
    if let Some(w) = weights {
        std::fs::write(dir.path().join(ADAPTER_WEIGHTS), w).unwrap();
    }
    read_any_adapters(dir.path(), &LoadOptions::default())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The `run_toml` target: the configuration as `visualglm train --config` parses it, then the
/// learning-rate schedule (every rate finite and within `[0, lr]`) and the LoRA configuration.
/// Returns whether the text parsed.
fn run_toml(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(cfg) = toml::from_str::<FinetuneConfig>(text) else {
        return false;
    };
    if let Ok(s) = LrSchedule::cosine(cfg.lr, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio) {
        for step in [
            0,
            1,
            cfg.warmup_steps,
            cfg.steps / 2,
            cfg.steps,
            cfg.steps.saturating_add(1),
        ] {
            let lr = s.lr_at(step);
            assert!(
                lr.is_finite() && (0.0..=cfg.lr).contains(&lr),
                "lr {lr} at step {step} of {cfg:?}"
            );
        }
    }
    if let Some(config) = cfg.lora_config() {
        let _ = config.validate();
    }
    true
}

/// Returns whether the tokenizer loaded and encoded the text.
fn tokenizer_json(data: &[u8]) -> bool {
    let (_dir, path) = as_file(data, "tokenizer.json");
    if let Ok(tok) = ChatGlmTokenizer::from_file(&path) {
        if let Ok(ids) = tok.encode("<img>问：a  b\n\t答：👋") {
            let _ = tok.decode(&ids, &Default::default());
            return true;
        }
    }
    false
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
    default_max_tokens: Some(16),
    max_images: visualglm_server::DEFAULT_MAX_IMAGES,
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

/// Runs `f` on every committed input of `target`, naming the file that panics; fails when
/// there is no input (a replay of nothing would pass whatever the target does).
fn replay(target: &str, f: impl Fn(&[u8])) {
    let inputs = inputs(target);
    assert!(
        !inputs.is_empty(),
        "{target}: no input files in {}: commit the target's minimised corpus there \
         (see tests/data/fuzz/README.md)",
        data_dir(target).display()
    );
    for (path, bytes) in inputs {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&bytes)));
        assert!(result.is_ok(), "{target}: {} panics", path.display());
    }
}

/// The targets replayed below, as `fuzz/Cargo.toml` names them.
const TARGETS: [&str; 14] = [
    "image_decode",
    "spm_model",
    "checkpoint_file",
    "config_json",
    "data_jsonl",
    "gguf_file",
    "prompt_builder",
    "server_request",
    "eval_captions",
    "eval_vqa",
    "eval_retrieval",
    "adapter_config",
    "run_toml",
    "tokenizer_json",
];

/// Every fuzz target has a replay here and a corpus directory, and every corpus directory
/// belongs to a target.
#[test]
fn every_fuzz_target_is_replayed() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/Cargo.toml"))
        .expect("fuzz/Cargo.toml");
    let manifest: toml::Value = toml::from_str(&manifest).expect("fuzz/Cargo.toml parses");
    let mut bins: Vec<String> = manifest["bin"]
        .as_array()
        .expect("[[bin]] entries")
        .iter()
        .map(|b| b["name"].as_str().expect("a bin name").to_string())
        .collect();
    bins.sort();
    let mut replayed: Vec<String> = TARGETS.iter().map(|t| t.to_string()).collect();
    replayed.sort();
    assert_eq!(bins, replayed, "fuzz targets vs the replays of this file");
    let root = data_dir("");
    let mut dirs: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    assert_eq!(dirs, replayed, "corpus directories in {}", root.display());
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

#[test]
fn eval_captions_inputs() {
    replay("eval_captions", |d| {
        eval_captions(d);
    });
}

#[test]
fn eval_vqa_inputs() {
    replay("eval_vqa", |d| {
        eval_vqa(d);
    });
}

#[test]
fn eval_retrieval_inputs() {
    replay("eval_retrieval", |d| {
        eval_retrieval(d);
    });
}

#[test]
fn adapter_config_inputs() {
    replay("adapter_config", |d| {
        let _ = adapter_config(d);
    });
}

#[test]
fn run_toml_inputs() {
    replay("run_toml", |d| {
        run_toml(d);
    });
}

#[test]
fn tokenizer_json_inputs() {
    replay("tokenizer_json", |d| {
        tokenizer_json(d);
    });
}

/// The hand-written seeds in `fuzz/seeds/TARGET` of these targets are valid inputs, so that the
/// fuzzer starts from inputs that reach the end of each target: every one gives a report,
/// parses, loads, or (an adapter config without tensors) passes every check of the config.
#[test]
fn seeds_are_accepted() {
    let seeds = |target: &str| {
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds")).join(target);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 2, "{}: too few seeds", dir.display());
        files
            .into_iter()
            .map(|p| (std::fs::read(&p).unwrap(), p))
            .collect::<Vec<_>>()
    };
    type Check = fn(&[u8]) -> bool;
    let checks: [(&str, Check); 5] = [
        ("eval_captions", eval_captions),
        ("eval_vqa", eval_vqa),
        ("eval_retrieval", eval_retrieval),
        ("run_toml", run_toml),
        ("tokenizer_json", tokenizer_json),
    ];
    for (target, check) in checks {
        for (bytes, path) in seeds(target) {
            assert!(check(&bytes), "{} is not accepted", path.display());
        }
    }
    for (bytes, path) in seeds("adapter_config") {
        if let Err(e) = adapter_config(&bytes) {
            assert!(
                !bytes.contains(&0) && e.contains("adapter tensors not found"),
                "{}: {e}",
                path.display()
            );
        }
    }
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
    let img = decode_image(&png, "seed", &server_policy().limits).unwrap();
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

/// Finding of the `tokenizer_json` target (2026-12-07, fixed): a `tokenizer.json` whose
/// `decoder` value is cut short or malformed panicked inside `tokenizers` 0.23.2
/// (`DecoderWrapper::deserialize` calls `expect("Helper")` on its serde error) instead of
/// being refused with `TokenizerError::BadJson`; the JSON syntax is now checked first.
/// Minimised: `{"decoder":`; also a real converted tokenizer truncated inside its decoder
/// section, as an interrupted download leaves it.
#[test]
fn tokenizer_json_bad_decoder_is_refused() {
    let seed = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/seeds/tokenizer_json/shapes_unigram.json"
    ))
    .unwrap();
    let cut = seed
        .windows(10)
        .position(|w| w == b"\"decoder\":")
        .expect("a decoder section")
        + 30;
    for data in [&b"{\"decoder\":"[..], &seed[..cut]] {
        let result = std::panic::catch_unwind(|| tokenizer_json(data));
        assert!(
            matches!(result, Ok(false)),
            "{} bytes: not refused",
            data.len()
        );
    }
}
