//! `n > 1`: several answers to one prompt, decoded together; answer `i` samples with the
//! seed + `i` (so the library reproduces each), greedy answers are identical, usage counts
//! the prompt once, streams tag chunks with their `index`, and `n` beyond the cap is a 400.

use std::io::{BufRead, BufReader};

use serde_json::{json, Value};
use visualglm_language::GenerationConfig;

use super::helpers::{config, golden_captioner, library_tokens, release_greedy, start, text};

const QUERY: &str = "Hello there";

#[test]
fn n_answers_each_sampled_with_its_own_seed_and_counted_once_for_the_prompt() {
    let c = golden_captioner();
    let client = start(&c, config());
    let user = json!({"role": "user", "content": QUERY});

    // Greedy: n identical answers.
    let (greedy, prompt_len) = library_tokens(&c, QUERY, None, &release_greedy(4));
    let (status, v) = client.chat(&json!({"messages": [user], "n": 3, "max_tokens": 4,
                                          "temperature": 0}));
    assert_eq!(status, 200, "{v}");
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3, "{v}");
    for (i, ch) in choices.iter().enumerate() {
        assert_eq!(ch["index"], i, "{v}");
        assert_eq!(ch["message"]["content"], text(&c, &greedy).as_str(), "{v}");
        assert!(ch["finish_reason"].is_string(), "{v}");
    }
    assert_eq!(v["usage"]["prompt_tokens"], prompt_len, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 3 * greedy.len(), "{v}");
    // The three rows were prefilled together and decoded as one batch.
    let (_, health) = client.get("/health");
    assert_eq!(health["peak_batch"], 3, "{health}");
    assert_eq!(health["batches"], 1, "{health}");

    // Sampled with a seed: answer i is the library's answer with seed 5 + i.
    let want: Vec<Vec<u32>> = (0..3)
        .map(|i| {
            let cfg = GenerationConfig {
                max_new_tokens: 5,
                temperature: 1.5,
                top_p: 1.0,
                seed: 5 + i,
                ..GenerationConfig::default()
            };
            library_tokens(&c, QUERY, None, &cfg).0
        })
        .collect();
    assert!(
        want[0] != want[1] || want[1] != want[2],
        "the test needs seeds that answer differently"
    );
    let body = json!({"messages": [user], "n": 3, "max_tokens": 5, "temperature": 1.5,
                      "top_p": 1, "seed": 5});
    for _ in 0..2 {
        let (status, v) = client.chat(&body);
        assert_eq!(status, 200, "{v}");
        for (i, tokens) in want.iter().enumerate() {
            let ch = &v["choices"][i];
            assert_eq!(ch["index"], i, "{v}");
            assert_eq!(ch["message"]["content"], text(&c, tokens).as_str(), "{v}");
            let finish = if tokens.len() == 5 { "length" } else { "stop" };
            assert_eq!(ch["finish_reason"], finish, "{v}");
        }
        let total: usize = want.iter().map(Vec::len).sum();
        assert_eq!(v["usage"]["completion_tokens"], total, "{v}");
        assert_eq!(v["usage"]["prompt_tokens"], prompt_len, "{v}");
    }

    // Streamed: each chunk names its answer; each answer has its own role and finish chunks.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let r = client
        .agent
        .post(&format!("{}/v1/chat/completions", client.base))
        .send_json(streamed)
        .unwrap();
    let mut texts = vec![String::new(); 3];
    let mut roles = [0; 3];
    let mut finishes = vec![Value::Null; 3];
    let mut usage = Value::Null;
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
        if chunk["choices"].as_array().unwrap().is_empty() {
            usage = chunk["usage"].clone();
            continue;
        }
        let ch = &chunk["choices"][0];
        let i = ch["index"].as_u64().unwrap() as usize;
        if ch["delta"]["role"] == "assistant" {
            roles[i] += 1;
        }
        if let Some(t) = ch["delta"]["content"].as_str() {
            texts[i].push_str(t);
        }
        if !ch["finish_reason"].is_null() {
            assert!(finishes[i].is_null(), "two finish chunks for answer {i}");
            finishes[i] = ch["finish_reason"].clone();
        }
    }
    assert_eq!(roles, [1, 1, 1]);
    for (i, tokens) in want.iter().enumerate() {
        assert_eq!(texts[i].trim_end(), text(&c, tokens), "answer {i}");
        assert!(finishes[i].is_string(), "answer {i}");
    }
    let total: usize = want.iter().map(Vec::len).sum();
    assert_eq!(usage["completion_tokens"], total, "{usage}");
    assert_eq!(usage["prompt_tokens"], prompt_len, "{usage}");

    // Beyond the cap, or zero: a 400 naming `n`.
    for n in [0, 9, 1000] {
        let (status, v) = client.chat(&json!({"messages": [user], "n": n}));
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["param"], "n", "{v}");
    }
}
