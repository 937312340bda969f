//! `logprobs` / `top_logprobs`: each generated token's log-probability is the log-softmax of
//! the model's raw logits at its step (computed here, in f64, from the library's logits), and
//! the alternatives are the most likely tokens, sorted, the first the greedy choice.

use std::io::{BufRead, BufReader};

use serde_json::{json, Value};
use visualglm::generate::{BatchDecoder, Flow, GenRequest};
use visualglm::pipeline::{Captioner, PromptOptions};

use super::helpers::{config, golden_captioner, release_greedy, start};

/// A Chinese question: English mode would suppress the Chinese block, whose tokens the tiny
/// model ranks first, and the raw most likely token would not be the greedy choice.
const QUERY: &str = "你好";

/// Greedy decoding (no repetition penalty) of `QUERY` with the library: each step's token
/// and the log-softmax of the raw logits it was chosen from.
fn reference(c: &Captioner, max_new_tokens: usize) -> Vec<(u32, Vec<f64>)> {
    let mut cfg = release_greedy(max_new_tokens);
    cfg.repetition_penalty = 1.0;
    let p = c
        .prompt(
            QUERY,
            &[],
            cfg.max_length - 1,
            &PromptOptions {
                english: false,
                ..Default::default()
            },
        )
        .unwrap();
    let invalid = c.invalid_ids(false);
    let mut d = BatchDecoder::new(c.model());
    d.add(&[GenRequest {
        ids: &p.ids,
        images: &[],
        config: &cfg,
        invalid: &invalid,
    }])
    .unwrap();
    let mut steps = Vec::new();
    while let Some(logits) = d.pending_logits() {
        let row: Vec<f32> = logits.get(0).unwrap().to_vec1().unwrap();
        let max = row
            .iter()
            .map(|&l| l as f64)
            .fold(f64::NEG_INFINITY, f64::max);
        let log_sum = max
            + row
                .iter()
                .map(|&l| (l as f64 - max).exp())
                .sum::<f64>()
                .ln();
        let lp: Vec<f64> = row.iter().map(|&l| l as f64 - log_sum).collect();
        let mut token = None;
        d.step(&mut |_, t| {
            token = Some(t);
            Flow::Continue
        })
        .unwrap();
        let t = token.unwrap();
        if t == c.model().config().glm.eos_id() {
            break;
        }
        steps.push((t, lp));
    }
    steps
}

fn check_entry(c: &Captioner, e: &Value, token: u32, lp: &[f64], k: usize) {
    let text = c.tokenizer().decode(&[token], &Default::default()).unwrap();
    assert_eq!(e["token"], text.as_str(), "{e}");
    assert_eq!(e["bytes"], json!(text.as_bytes()), "{e}");
    let got = e["logprob"].as_f64().unwrap();
    assert!(
        (got - lp[token as usize]).abs() < 1e-4,
        "{got} vs {}",
        lp[token as usize]
    );
    let top = e["top_logprobs"].as_array().unwrap();
    assert_eq!(top.len(), k, "{e}");
    let mut sorted = lp.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    for (j, alt) in top.iter().enumerate() {
        let l = alt["logprob"].as_f64().unwrap();
        assert!(
            (l - sorted[j]).abs() < 1e-4,
            "alternative {j}: {l} vs {}",
            sorted[j]
        );
        assert!(alt["token"].is_string() && alt["bytes"].is_array(), "{alt}");
    }
    // Greedy without penalty: the first alternative is the chosen token.
    assert_eq!(top[0]["token"], e["token"], "{e}");
    assert!(
        (top[0]["logprob"].as_f64().unwrap() - got).abs() < 1e-6,
        "{e}"
    );
}

#[test]
fn logprobs_are_the_raw_log_softmax_of_each_steps_logits() {
    let c = golden_captioner();
    let steps = reference(&c, 5);
    assert!(!steps.is_empty());
    let client = start(&c, config());
    let body = json!({"messages": [{"role": "user", "content": QUERY}], "max_tokens": 5,
                      "temperature": 0, "repetition_penalty": 1, "logprobs": true,
                      "top_logprobs": 3, "n": 2});
    let (status, v) = client.chat(&body);
    assert_eq!(status, 200, "{v}");
    for choice in v["choices"].as_array().unwrap() {
        let content = choice["logprobs"]["content"].as_array().unwrap();
        assert_eq!(content.len(), steps.len(), "{v}");
        for (e, (t, lp)) in content.iter().zip(&steps) {
            check_entry(&c, e, *t, lp, 3);
        }
    }
    // Without alternatives: empty lists; without logprobs: null.
    let (_, v) = client.chat(&json!({"messages": [{"role": "user", "content": QUERY}],
                                     "max_tokens": 2, "temperature": 0, "logprobs": true}));
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 2, "{v}");
    assert!(
        content.iter().all(|e| e["top_logprobs"] == json!([])),
        "{v}"
    );
    let (_, v) = client.chat(&json!({"messages": [{"role": "user", "content": QUERY}],
                                     "max_tokens": 2, "temperature": 0}));
    assert!(v["choices"][0]["logprobs"].is_null(), "{v}");

    // Streamed: the chunks' entries, in order, are the same.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["n"] = json!(1);
    let r = client
        .agent
        .post(&format!("{}/v1/chat/completions", client.base))
        .send_json(streamed)
        .unwrap();
    let mut entries = Vec::new();
    for line in BufReader::new(r.into_reader()).lines() {
        let line = line.unwrap();
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(data).unwrap();
        if let Some(content) = chunk["choices"][0]["logprobs"]["content"].as_array() {
            entries.extend(content.iter().cloned());
        }
    }
    assert_eq!(entries.len(), steps.len());
    for (e, (t, lp)) in entries.iter().zip(&steps) {
        check_entry(&c, e, *t, lp, 3);
    }
}
