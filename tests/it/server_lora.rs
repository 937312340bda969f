//! `visualglm_server` with LoRA adapters, on the tiny golden model: a request naming an adapter
//! gets exactly the library's answer with that adapter attached, the base name (or no name) the
//! base answer, an unknown name a 404. The request and library-answer helpers here also serve
//! the continuous-batching tests (`server_batching`).

use crate::support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use candle_core::{DType, Device};
use serde_json::{json, Value};
use support::{golden, tiny_tokenizer};
use visualglm::generate::{generate, Flow};
use visualglm::lora::{self, LoraAdapters, LoraLoadOptions, TensorNaming};
use visualglm::pipeline::{Captioner, PromptOptions};
use visualglm::{LoadOptions, VisualGlm};
use visualglm_language::GenerationConfig;
use visualglm_server::{BatchOptions, ServedAdapter, Server, ServerConfig};
use visualglm_tokenizer::ChatGlmTokenizer;
use visualglm_vision::decode::load_image;

pub(crate) const NAME: &str = "visualglm-tiny";

pub(crate) fn base_model() -> VisualGlm {
    VisualGlm::load(
        &golden("checkpoints/hf"),
        &Device::Cpu,
        DType::F32,
        &Default::default(),
    )
    .unwrap()
}

pub(crate) fn captioner(model: VisualGlm, tokenizer: &Path) -> Captioner {
    Captioner::new(model, ChatGlmTokenizer::from_file(tokenizer).unwrap()).unwrap()
}

/// The adapters of the golden SAT LoRA fine-tune (layer 0's attention).
fn finetune_adapters() -> LoraAdapters {
    lora::load_sat_lora(
        &golden("lora/finetune-visualglm-tiny-lora"),
        &LoadOptions::default(),
    )
    .unwrap()
    .adapters
}

/// `adapters` with every B multiplied by `factor`.
fn scaled(adapters: &LoraAdapters, factor: f64) -> LoraAdapters {
    let tensors: HashMap<String, candle_core::Tensor> = adapters
        .to_tensors(TensorNaming::LORA)
        .into_iter()
        .map(|(n, t)| {
            let t = if n.contains(".lora_B.") {
                (t * factor).unwrap()
            } else {
                t
            };
            (n, t)
        })
        .collect();
    LoraAdapters::from_tensors(adapters.config().clone(), &tensors, TensorNaming::LORA, "").unwrap()
}

fn greedy(max_new_tokens: usize) -> GenerationConfig {
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

/// The library's greedy answer of `c` to `query` (with `image` if any).
pub(crate) fn library_answer(
    c: &Captioner,
    query: &str,
    image: Option<&Path>,
    max_tokens: usize,
) -> String {
    let english = !query
        .chars()
        .any(|ch| ('\u{4e00}'..='\u{9fa5}').contains(&ch));
    let opts = PromptOptions {
        english,
        images: usize::from(image.is_some()),
        ..Default::default()
    };
    let p = c.prompt(query, &[], 2047, &opts).unwrap();
    let image = image.map(|i| load_image(i, &Default::default()).unwrap());
    let embeds = image.map(|i| c.encode_images(&[i]).unwrap());
    let rows = generate(
        c.model(),
        &p.ids,
        &p.image_spans(&embeds.into_iter().collect::<Vec<_>>())
            .unwrap(),
        &greedy(max_tokens),
        &c.invalid_ids(english),
        &mut |_, _| Flow::Continue,
    )
    .unwrap();
    let text = c.tokenizer().decode(&rows[0], &Default::default()).unwrap();
    text.trim().to_string()
}

fn b64(path: &Path) -> String {
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap())
}

pub(crate) fn chat_body(
    model: Option<&str>,
    query: &str,
    image: Option<&Path>,
    max_tokens: usize,
) -> Value {
    let mut content = vec![json!({"type": "text", "text": query})];
    if let Some(img) = image {
        content.push(json!({"type": "image_url",
                            "image_url": {"url": format!("data:image/png;base64,{}", b64(img))}}));
    }
    let mut body = json!({"messages": [{"role": "user", "content": content}],
                          "max_tokens": max_tokens, "temperature": 0});
    if let Some(m) = model {
        body["model"] = json!(m);
    }
    body
}

pub(crate) fn read(r: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    match r {
        Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or(Value::Null)),
        Err(e) => panic!("transport error: {e}"),
    }
}

/// Sends a chat completion, streamed or not; returns (model field, answer).
pub(crate) fn ask(agent: &ureq::Agent, base: &str, body: &Value, stream: bool) -> (String, String) {
    let mut body = body.clone();
    body["stream"] = json!(stream);
    let r = agent
        .post(&format!("{base}/v1/chat/completions"))
        .send_json(body)
        .unwrap();
    if !stream {
        let v: Value = r.into_json().unwrap();
        return (
            v["model"].as_str().unwrap().to_string(),
            v["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let mut text = String::new();
    let mut model = String::new();
    let mut done = false;
    for line in BufReader::new(r.into_reader()).lines() {
        let line = line.unwrap();
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            done = true;
            break;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        model = v["model"].as_str().unwrap_or_default().to_string();
        if let Some(piece) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(piece);
        }
    }
    assert!(done, "stream ended without [DONE]");
    (model, text.trim().to_string())
}

#[test]
fn adapters_are_served_by_name_with_the_library_answers() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tiny_tokenizer(dir.path());
    // The golden fine-tune's adapters are too small to change a greedy answer of the tiny
    // model; scaled up (and flipped) they do.
    let golden_ft = finetune_adapters();
    let ft = scaled(&golden_ft, -25.0);
    let strong = scaled(&golden_ft, 40.0);
    // The library references: the adapter file loaded on the HF base (an independent path),
    // and the stronger adapter attached by hand.
    let ft_dir = dir.path().join("ft-adapter");
    lora::save_adapters(&ft, &ft_dir, None).unwrap();
    let ft_model = VisualGlm::load_adapted(
        &golden("checkpoints/hf"),
        &ft_dir,
        &Device::Cpu,
        DType::F32,
        &LoraLoadOptions::default(),
    )
    .unwrap();
    let mut strong_model = base_model();
    strong_model.attach_lora(&strong).unwrap();
    let base = captioner(base_model(), &tok);
    let references = [
        (None, base.clone()),
        (Some(NAME), base.clone()),
        (Some("ft"), captioner(ft_model, &tok)),
        (Some("strong"), captioner(strong_model, &tok)),
    ];
    let image = golden("images/chelsea.png");
    let cases: [(&str, Option<&Path>); 2] = [
        ("描述这张图片。", Some(image.as_path())),
        ("What is in the picture?", None),
    ];
    let max_tokens = 10;
    let mut expected = HashMap::new();
    for (name, c) in &references {
        for (q, img) in &cases {
            expected.insert((*name, *q), library_answer(c, q, *img, max_tokens));
        }
    }
    // The adapters really change the answers, so serving the wrong model would fail.
    for (q, _) in &cases {
        let b = &expected[&(None, *q)];
        assert_ne!(b, &expected[&(Some("strong"), *q)], "{q}");
    }
    assert!(
        cases
            .iter()
            .any(|(q, _)| expected[&(None, *q)] != expected[&(Some("ft"), *q)]),
        "the `ft` adapters change no answer: {expected:?}"
    );
    assert!(
        cases
            .iter()
            .any(|(q, _)| expected[&(Some("strong"), *q)] != expected[&(Some("ft"), *q)]),
        "the two adapters give the same answers: {expected:?}"
    );

    let server = Server::start(
        base.clone(),
        ServerConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            model_name: NAME.into(),
            adapters: vec![
                ServedAdapter {
                    name: "ft".into(),
                    adapters: ft.clone(),
                },
                ServedAdapter {
                    name: "strong".into(),
                    adapters: strong.clone(),
                },
            ],
            batch: BatchOptions {
                max_batch: 8,
                window: Duration::from_millis(20),
                ..BatchOptions::default()
            },
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let base_url = format!("http://{}", server.addr());
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build();

    let (s, v) = read(agent.get(&format!("{base_url}/v1/models")).call());
    assert_eq!(s, 200);
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [NAME, "ft", "strong"]);
    let (s, v) = read(agent.get(&format!("{base_url}/v1/models/strong")).call());
    assert_eq!((s, v["id"].as_str()), (200, Some("strong")));
    let (s, v) = read(agent.get(&format!("{base_url}/v1/models/nope")).call());
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );

    // Every model and prompt, streamed and not, all at once: the worker batches requests of
    // the same model together and steps the models' batches in turn.
    let mut jobs = Vec::new();
    for (name, _) in &references {
        for (q, img) in &cases {
            for stream in [false, true] {
                jobs.push((*name, *q, img.map(Path::to_path_buf), stream));
            }
        }
    }
    let handles: Vec<_> = jobs
        .iter()
        .cloned()
        .map(|(name, q, img, stream)| {
            let (agent, base_url) = (agent.clone(), base_url.clone());
            std::thread::spawn(move || {
                let body = chat_body(name, q, img.as_deref(), max_tokens);
                ask(&agent, &base_url, &body, stream)
            })
        })
        .collect();
    for ((name, q, _, stream), h) in jobs.iter().zip(handles) {
        let (model, answer) = h.join().expect("client thread");
        assert_eq!(
            answer,
            expected[&(*name, *q)],
            "model {name:?}, {q}, stream {stream}"
        );
        assert_eq!(model, name.unwrap_or(NAME), "the answer names its model");
    }

    let (s, v) = read(
        agent
            .post(&format!("{base_url}/v1/chat/completions"))
            .send_json(chat_body(Some("nope"), "hi", None, 2)),
    );
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["error"]["code"], "model_not_found");
    assert_eq!(v["error"]["param"], "model");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"]["message"].as_str().unwrap().contains("nope"));

    let (s, h) = read(agent.get(&format!("{base_url}/health")).call());
    assert_eq!(s, 200);
    assert_eq!(h["adapters"], json!(["ft", "strong"]));
    assert_eq!(h["in_flight"], 0);
    server.stop().unwrap();
}

#[test]
fn bad_adapters_are_refused_at_start_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tiny_tokenizer(dir.path());
    let c = captioner(base_model(), &tok);
    let ft = finetune_adapters();
    let start = |adapters: Vec<(&str, LoraAdapters)>| {
        Server::start(
            c.clone(),
            ServerConfig {
                addr: "127.0.0.1:0".parse().unwrap(),
                model_name: NAME.into(),
                adapters: adapters
                    .into_iter()
                    .map(|(name, adapters)| ServedAdapter {
                        name: name.into(),
                        adapters,
                    })
                    .collect(),
                ..ServerConfig::default()
            },
        )
        .map(|s| s.stop())
    };
    for (adapters, want) in [
        (vec![(NAME, ft.clone())], "base model's name"),
        (vec![("a", ft.clone()), ("a", ft.clone())], "two adapters"),
        (vec![(" ", ft.clone())], "must not be empty"),
    ] {
        let err = start(adapters).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains(want), "{err}");
    }
    // Image-encoder adapters cannot run unmerged.
    use visualglm::lora::{LoraConfig, TargetRule, QKV, VIT_LAYERS};
    let ck = visualglm::load(&golden("checkpoints/hf"), &LoadOptions::default()).unwrap();
    let vit = LoraAdapters::init(
        LoraConfig {
            rank: 2,
            alpha: 1.0,
            dropout: 0.0,
            targets: vec![TargetRule::new(VIT_LAYERS, QKV, 3, Some(vec![0]))],
        },
        &ck.tensors,
        1,
        &Device::Cpu,
    )
    .unwrap();
    let err = start(vec![("vit", vit)]).unwrap_err();
    assert!(err.to_string().contains("LoRA adapter `vit`"), "{err}");
}
