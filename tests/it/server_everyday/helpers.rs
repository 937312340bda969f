//! What the `server_everyday` tests share: a tiny model directory with its own
//! `generation_config.json`, a server on a captioner, an HTTP client, and the library's own
//! tokens to compare against.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use visualglm::generate::{generate, Flow};
use visualglm::pipeline::{Captioner, CaptionerOptions, PromptOptions};
use visualglm_language::GenerationConfig;
use visualglm_server::{BatchOptions, Server, ServerConfig};
use visualglm_vision::decode::load_image;

use crate::support::{golden, tiny_tokenizer};

pub(super) const NAME: &str = "tiny";

/// A copy of the tiny golden model (HF layout) with the tiny tokenizer and `generation_config`
/// as its `generation_config.json`, in `dir`.
pub(super) fn model_dir(dir: &Path, generation_config: &Value) -> PathBuf {
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    let src = golden("checkpoints/hf");
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, model.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::copy(tiny_tokenizer(dir), model.join("tokenizer.model")).unwrap();
    std::fs::write(
        model.join("generation_config.json"),
        generation_config.to_string(),
    )
    .unwrap();
    model
}

/// The model in `dir` as the CLI loads it (its `generation_config.json` included).
pub(super) fn load(dir: &Path) -> Captioner {
    Captioner::load(
        dir,
        &candle_core::Device::Cpu,
        candle_core::DType::F32,
        &CaptionerOptions::default(),
    )
    .unwrap()
}

/// The tiny golden model with the release's defaults (no `generation_config.json`).
pub(super) fn golden_captioner() -> Captioner {
    let dir = tempfile::tempdir().unwrap();
    crate::support::golden_captioner(&tiny_tokenizer(dir.path()))
}

/// A loopback server config on a free port with batches of up to 4.
pub(super) fn config() -> ServerConfig {
    ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        model_name: NAME.into(),
        batch: BatchOptions {
            max_batch: 4,
            ..BatchOptions::default()
        },
        ..ServerConfig::default()
    }
}

/// A running server with a client.
pub(super) struct Client {
    pub(super) _server: Server,
    pub(super) base: String,
    pub(super) agent: ureq::Agent,
}

pub(super) fn start(c: &Captioner, config: ServerConfig) -> Client {
    let server = Server::start(c.clone(), config).unwrap();
    let base = format!("http://{}", server.addr());
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build();
    Client {
        _server: server,
        base,
        agent,
    }
}

impl Client {
    pub(super) fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        read(
            self.agent
                .post(&format!("{}{path}", self.base))
                .send_json(body.clone()),
        )
    }

    pub(super) fn chat(&self, body: &Value) -> (u16, Value) {
        self.post("/v1/chat/completions", body)
    }

    pub(super) fn get(&self, path: &str) -> (u16, Value) {
        read(self.agent.get(&format!("{}{path}", self.base)).call())
    }

    /// A streamed chat completion: (the content of every chunk in order, the last chunk
    /// with choices).
    pub(super) fn stream(&self, body: &Value) -> (Vec<String>, Value) {
        let mut body = body.clone();
        body["stream"] = json!(true);
        stream_at(&self.agent, &self.base, &body)
    }
}

/// [`Client::stream`] for any server.
pub(super) fn stream_at(agent: &ureq::Agent, base: &str, body: &Value) -> (Vec<String>, Value) {
    let r = agent
        .post(&format!("{base}/v1/chat/completions"))
        .send_json(body.clone())
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut pieces = Vec::new();
    let mut last = Value::Null;
    for line in BufReader::new(r.into_reader()).lines() {
        let line = line.unwrap();
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(data).unwrap();
        assert!(chunk.get("error").is_none(), "{chunk}");
        if let Some(choice) = chunk["choices"].get(0) {
            if let Some(t) = choice["delta"]["content"].as_str() {
                pieces.push(t.to_string());
            }
            last = chunk.clone();
        }
    }
    (pieces, last)
}

pub(super) fn read(r: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    match r {
        Ok(resp) => (resp.status(), resp.into_json().unwrap()),
        Err(ureq::Error::Status(code, resp)) => (code, resp.into_json().unwrap()),
        Err(e) => panic!("transport error: {e}"),
    }
}

/// A user message with `text` and the image at `image` as a `data:` URL.
pub(super) fn image_message(text: &str, image: &Path) -> Value {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(image).unwrap());
    let mut content = vec![json!({"type": "image_url",
                                  "image_url": {"url": format!("data:image/png;base64,{b64}")}})];
    if !text.is_empty() {
        content.insert(0, json!({"type": "text", "text": text}));
    }
    json!({"role": "user", "content": content})
}

/// What the library generates for `query` about `image`: (tokens, prompt length).
pub(super) fn library_tokens(
    c: &Captioner,
    query: &str,
    image: Option<&Path>,
    cfg: &GenerationConfig,
) -> (Vec<u32>, usize) {
    let english = !query
        .chars()
        .any(|ch| ('\u{4e00}'..='\u{9fa5}').contains(&ch));
    let p = c
        .prompt(
            query,
            &[],
            cfg.max_length - 1,
            &PromptOptions {
                english,
                images: usize::from(image.is_some()),
                ..Default::default()
            },
        )
        .unwrap();
    let embeds = image.map(|i| {
        c.encode_images(&[load_image(i, &Default::default()).unwrap()])
            .unwrap()
    });
    let rows = generate(
        c.model(),
        &p.ids,
        &p.image_spans(&embeds.into_iter().collect::<Vec<_>>())
            .unwrap(),
        cfg,
        &c.invalid_ids(english),
        &mut |_, _| Flow::Continue,
    )
    .unwrap();
    (rows.into_iter().next().unwrap(), p.ids.len())
}

/// The text of `tokens` as the server answers it (decoded, trimmed).
pub(super) fn text(c: &Captioner, tokens: &[u32]) -> String {
    c.tokenizer()
        .decode(tokens, &Default::default())
        .unwrap()
        .trim()
        .to_string()
}

/// Greedy decoding with the release's other settings, `max_new_tokens` new tokens.
pub(super) fn release_greedy(max_new_tokens: usize) -> GenerationConfig {
    GenerationConfig {
        max_new_tokens,
        do_sample: false,
        temperature: 1.0,
        ..GenerationConfig::default()
    }
}

/// The image the tests ask about.
pub(super) fn chelsea() -> PathBuf {
    golden("images/chelsea.png")
}
