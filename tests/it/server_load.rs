//! Load test of `visualglm_server` on the tiny golden model: 64 concurrent requests of
//! different shapes (streamed or not, with or without an image, OpenAI or release endpoint)
//! on loopback, all must complete with the answer the library gives for each alone, and the
//! worker must have decoded them together (continuous batching: far fewer decode steps than
//! tokens).

use crate::support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use support::{golden, tiny_tokenizer};
use visualglm::generate::{generate, Flow};
use visualglm::pipeline::{Captioner, PromptOptions};
use visualglm_language::GenerationConfig;
use visualglm_server::{BatchOptions, Server, ServerConfig};
use visualglm_vision::decode::load_image;

const REQUESTS: usize = 64;
const QUERIES: [&str; 4] = [
    "描述这张图片。",
    "What is in the picture?",
    "这是哪里？",
    "Tell me more",
];
const IMAGES: [&str; 3] = ["chelsea.png", "camera.png", "astronaut.png"];

/// One request of the mix.
#[derive(Debug, Clone)]
struct Case {
    query: &'static str,
    image: Option<PathBuf>,
    max_tokens: usize,
    stream: bool,
    release: bool,
}

fn case(i: usize) -> Case {
    let image = (i % 5 != 4).then(|| golden(&format!("images/{}", IMAGES[i % 3])));
    let release = i % 7 == 3;
    Case {
        query: QUERIES[i % 4],
        image,
        max_tokens: 4 + (i * 5) % 17,
        stream: !release && i % 2 == 1,
        release,
    }
}

fn library_answer(c: &Captioner, case: &Case) -> String {
    let english = !case
        .query
        .chars()
        .any(|ch| ('\u{4e00}'..='\u{9fa5}').contains(&ch));
    let p = c
        .prompt(
            case.query,
            &[],
            2047,
            &PromptOptions {
                english,
                images: usize::from(case.image.is_some()),
                ..Default::default()
            },
        )
        .unwrap();
    let cfg = GenerationConfig {
        max_new_tokens: case.max_tokens,
        max_length: 2048,
        do_sample: false,
        temperature: 1.0,
        top_p: 0.4,
        top_k: 100,
        repetition_penalty: 1.2,
        num_beams: 1,
        seed: 0,
    };
    let embeds = case.image.as_ref().map(|i| {
        c.encode_images(&[load_image(i, &Default::default()).unwrap()])
            .unwrap()
    });
    let rows = generate(
        c.model(),
        &p.ids,
        &p.image_spans(&embeds.into_iter().collect::<Vec<_>>())
            .unwrap(),
        &cfg,
        &c.invalid_ids(english),
        &mut |_, _| Flow::Continue,
    )
    .unwrap();
    c.tokenizer()
        .decode(&rows[0], &Default::default())
        .unwrap()
        .trim()
        .to_string()
}

fn b64(path: &Path) -> String {
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap())
}

/// Sends one case; returns the answer text.
fn send(agent: &ureq::Agent, base: &str, case: &Case) -> Result<String, String> {
    if case.release {
        // The release endpoint has no max_tokens: max_length = prompt + max_tokens.
        return Err("release cases are sent by send_release".into());
    }
    let mut content = vec![json!({"type": "text", "text": case.query})];
    if let Some(img) = &case.image {
        content.push(json!({"type": "image_url",
                            "image_url": {"url": format!("data:image/png;base64,{}", b64(img))}}));
    }
    let body = json!({"messages": [{"role": "user", "content": content}],
                      "max_tokens": case.max_tokens, "temperature": 0, "stream": case.stream});
    let resp = agent
        .post(&format!("{base}/v1/chat/completions"))
        .send_json(body)
        .map_err(|e| e.to_string())?;
    if !case.stream {
        let v: Value = resp.into_json().map_err(|e| e.to_string())?;
        return v["choices"][0]["message"]["content"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| v.to_string());
    }
    let mut text = String::new();
    let mut done = false;
    for line in BufReader::new(resp.into_reader()).lines() {
        let line = line.map_err(|e| e.to_string())?;
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            done = true;
            break;
        }
        let v: Value = serde_json::from_str(data).map_err(|e| e.to_string())?;
        if let Some(piece) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(piece);
        }
    }
    if !done {
        return Err("stream ended without [DONE]".into());
    }
    Ok(text.trim().to_string())
}

fn send_release(
    agent: &ureq::Agent,
    base: &str,
    case: &Case,
    prompt_len: usize,
) -> Result<String, String> {
    let mut body = json!({"text": case.query, "history": [],
                          "max_length": prompt_len + case.max_tokens, "temperature": 0});
    if let Some(img) = &case.image {
        body["image"] = json!(b64(img));
    }
    let v: Value = agent
        .post(&format!("{base}/"))
        .send_json(body)
        .map_err(|e| e.to_string())?
        .into_json()
        .map_err(|e| e.to_string())?;
    v["result"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| v.to_string())
}

#[test]
fn sixty_four_concurrent_requests_all_complete_correctly_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tiny_tokenizer(dir.path());
    let c = support::golden_captioner(&tok);

    let cases: Vec<Case> = (0..REQUESTS).map(case).collect();
    let mut expected: HashMap<String, String> = HashMap::new();
    let key = |cs: &Case| format!("{}|{:?}|{}", cs.query, cs.image, cs.max_tokens);
    for cs in &cases {
        expected
            .entry(key(cs))
            .or_insert_with(|| library_answer(&c, cs));
    }
    let prompt_lens: Vec<usize> = cases
        .iter()
        .map(|cs| {
            let english = !cs
                .query
                .chars()
                .any(|ch| ('\u{4e00}'..='\u{9fa5}').contains(&ch));
            c.prompt(
                cs.query,
                &[],
                2047,
                &PromptOptions {
                    english,
                    images: usize::from(cs.image.is_some()),
                    ..Default::default()
                },
            )
            .unwrap()
            .ids
            .len()
        })
        .collect();

    let server = Server::start(
        c.clone(),
        ServerConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            batch: BatchOptions {
                max_batch: 16,
                window: Duration::from_millis(20),
                ..BatchOptions::default()
            },
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let base = Arc::new(format!("http://{}", server.addr()));
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(240))
        .max_idle_connections(0)
        .build();
    let start = Instant::now();
    let handles: Vec<_> = cases
        .iter()
        .cloned()
        .zip(prompt_lens)
        .map(|(cs, plen)| {
            let (agent, base) = (agent.clone(), base.clone());
            std::thread::spawn(move || {
                if cs.release {
                    send_release(&agent, &base, &cs, plen)
                } else {
                    send(&agent, &base, &cs)
                }
            })
        })
        .collect();
    let results: Vec<Result<String, String>> = handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or_else(|_| Err("client thread panicked".into()))
        })
        .collect();
    let elapsed = start.elapsed();
    let mut wrong = Vec::new();
    for (i, (cs, r)) in cases.iter().zip(&results).enumerate() {
        match r {
            Ok(text) if text == &expected[&key(cs)] => {}
            other => wrong.push(format!(
                "#{i} {cs:?}: got {other:?}, want {:?}",
                expected[&key(cs)]
            )),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {REQUESTS} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    let health: Value = agent
        .get(&format!("{base}/health"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    let batches = health["batches"].as_u64().unwrap();
    let steps = health["decode_steps"].as_u64().unwrap();
    let tokens = health["tokens_generated"].as_u64().unwrap();
    let peak = health["peak_batch"].as_u64().unwrap();
    eprintln!(
        "{REQUESTS} requests in {elapsed:?}: {batches} prefill groups, {steps} decode steps \
         for {tokens} tokens, up to {peak} requests at once"
    );
    assert_eq!(health["in_flight"], 0);
    assert!(batches >= (REQUESTS / 16) as u64, "{health}");
    assert!(peak > 1 && peak <= 16, "max_batch is 16: {health}");
    // One at a time, every token is a decode step of its own.
    assert!(
        steps * 2 < tokens,
        "requests were not decoded together: {health}"
    );
    assert!(elapsed < Duration::from_secs(240));
}
