//! The server fixture of the `server_api` tests: a server on the tiny golden model, an HTTP
//! client, request builders and the library's own answers to compare against.

use crate::support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use support::tiny_tokenizer;
use visualglm::generate::{generate, Flow};
use visualglm::pipeline::{Captioner, PromptOptions};
use visualglm_language::GenerationConfig;
use visualglm_server::{BatchOptions, ImagePolicy, PromptLimits, Server, ServerConfig};
use visualglm_vision::decode::{load_image, DecodeLimits};

pub(super) const NAME: &str = "visualglm-tiny";

pub(super) fn captioner(tokenizer: &Path) -> Captioner {
    support::golden_captioner(tokenizer)
}

pub(super) fn config() -> ServerConfig {
    ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        model_name: NAME.into(),
        batch: BatchOptions {
            max_batch: 4,
            ..BatchOptions::default()
        },
        max_body_bytes: 1 << 20,
        images: ImagePolicy {
            limits: DecodeLimits {
                max_pixels: 1_000_000,
                max_alloc: 64 << 20,
            },
            local_dir: None,
        },
        limits: PromptLimits::default(),
        ..ServerConfig::default()
    }
}

/// A running server on the tiny golden model, with a client.
pub(super) struct Fixture {
    pub(super) _dir: tempfile::TempDir,
    pub(super) captioner: Captioner,
    pub(super) server: Server,
    pub(super) base: String,
    pub(super) agent: ureq::Agent,
}

pub(super) fn start(config: ServerConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let tok = tiny_tokenizer(dir.path());
    let c = captioner(&tok);
    let server = Server::start(c.clone(), config).unwrap();
    assert!(server.addr().ip().is_loopback());
    let base = format!("http://{}", server.addr());
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build();
    Fixture {
        _dir: dir,
        captioner: c,
        server,
        base,
        agent,
    }
}

impl Fixture {
    pub(super) fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        let r = self
            .agent
            .post(&format!("{}{path}", self.base))
            .set("Content-Type", "application/json")
            .send_string(body);
        read(r)
    }

    pub(super) fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, &body.to_string())
    }

    pub(super) fn get(&self, path: &str) -> (u16, Value) {
        read(self.agent.get(&format!("{}{path}", self.base)).call())
    }

    /// The SSE `data:` payloads of a streamed request.
    pub(super) fn stream(&self, body: &Value) -> Vec<String> {
        let r = self
            .agent
            .post(&format!("{}/v1/chat/completions", self.base))
            .send_json(body.clone())
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.content_type().starts_with("text/event-stream"),
            "{}",
            r.content_type()
        );
        BufReader::new(r.into_reader())
            .lines()
            .map(|l| l.unwrap())
            .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
            .collect()
    }
}

pub(super) fn read(r: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    match r {
        Ok(resp) => (resp.status(), resp.into_json().unwrap()),
        Err(ureq::Error::Status(code, resp)) => (code, resp.into_json().unwrap()),
        Err(e) => panic!("transport error: {e}"),
    }
}

pub(super) fn data_url(path: &Path) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap());
    format!("data:image/png;base64,{b64}")
}

pub(super) fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb([200, 100, 50]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

pub(super) fn image_message(text: &str, url: &str) -> Value {
    json!({"role": "user", "content": [
        {"type": "text", "text": text},
        {"type": "image_url", "image_url": {"url": url}}
    ]})
}

/// The server's sampling defaults with temperature 0.
pub(super) fn greedy_defaults(max_new_tokens: usize) -> GenerationConfig {
    GenerationConfig {
        max_new_tokens,
        max_length: 2048,
        do_sample: false,
        temperature: 1.0,
        top_p: 0.4,
        top_k: 100,
        repetition_penalty: 1.2,
        num_beams: 1,
        seed: 0,
    }
}

/// What the library answers, with the prompt length: the reference for the server.
pub(super) fn library_answer(
    c: &Captioner,
    query: &str,
    history: &[(String, String)],
    image: Option<&Path>,
    cfg: &GenerationConfig,
) -> (String, usize, usize) {
    let images: Vec<&Path> = image.into_iter().collect();
    library_answer_images(c, query, history, &images, cfg)
}

/// [`library_answer`] about any number of images (one `<img>` block each, in order).
pub(super) fn library_answer_images(
    c: &Captioner,
    query: &str,
    history: &[(String, String)],
    images: &[&Path],
    cfg: &GenerationConfig,
) -> (String, usize, usize) {
    let english = !query
        .chars()
        .any(|ch| ('\u{4e00}'..='\u{9fa5}').contains(&ch));
    let p = c
        .prompt(
            query,
            history,
            cfg.max_length - 1,
            &PromptOptions {
                english,
                images: images.len(),
                ..Default::default()
            },
        )
        .unwrap();
    let embeds: Vec<_> = images
        .iter()
        .map(|i| {
            c.encode_images(&[load_image(i, &Default::default()).unwrap()])
                .unwrap()
        })
        .collect();
    let rows = generate(
        c.model(),
        &p.ids,
        &p.image_spans(&embeds).unwrap(),
        cfg,
        &c.invalid_ids(english),
        &mut |_, _| Flow::Continue,
    )
    .unwrap();
    let text = c
        .tokenizer()
        .decode(&rows[0], &Default::default())
        .unwrap()
        .trim()
        .to_string();
    (text, p.ids.len(), rows[0].len())
}

pub(super) fn assert_error(
    status: u16,
    body: &Value,
    want_status: u16,
    want_code: Option<&str>,
    what: &str,
) {
    assert_eq!(status, want_status, "{what}: {body}");
    let e = &body["error"];
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
    assert!(e["type"].is_string(), "{what}: {body}");
    assert!(
        e.get("param").is_some() && e.get("code").is_some(),
        "{what}: {body}"
    );
    if let Some(code) = want_code {
        assert_eq!(e["code"], code, "{what}: {body}");
    }
}
