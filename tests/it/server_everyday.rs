//! `visualglm serve` for everyday use (issue 21): a model's own `generation_config.json`
//! fills the fields a request leaves unset, `stop` sequences end answers (plain, streamed and
//! batched; see `stop`), parameters the server does not implement are refused by name while
//! their no-op defaults pass, and every request writes one access line (see `access_log`).
//! All on the tiny golden model, loopback only.

mod access_log;
mod choices;
mod embeddings;
mod helpers;
mod logprobs;
mod metrics;
mod stop;

use serde_json::{json, Value};
use visualglm_language::GenerationConfig;
use visualglm_server::PromptLimits;

use helpers::{
    chelsea, config, golden_captioner, image_message, library_tokens, load, model_dir,
    release_greedy, start, text, NAME,
};

/// The model's defaults in the tests below: greedy, no repetition penalty, 6 new tokens, and
/// its own question for a message with only an image.
fn greedy_model_config() -> Value {
    json!({"do_sample": false, "repetition_penalty": 1.0, "max_new_tokens": 6,
           "visualglm": {"question": "Hello there"}})
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

#[test]
fn the_models_generation_config_fills_unset_fields_and_the_request_wins() {
    let dir = tempfile::tempdir().unwrap();
    let c = load(&model_dir(dir.path(), &greedy_model_config()));
    let model = c.defaults().generation.clone();
    assert!(!model.do_sample && model.repetition_penalty == 1.0 && model.max_new_tokens == 6);
    let client = start(&c, config());
    let query = "Hello there";

    // No temperature, no max_tokens: the model's greedy decoding and its 6 tokens.
    let (want_tokens, prompt_len) = library_tokens(&c, query, None, &model);
    let want = text(&c, &want_tokens);
    // The model's repetition penalty matters: the release's 1.2 answers differently.
    let (release_tokens, _) = library_tokens(&c, query, None, &release_greedy(6));
    assert_ne!(
        text(&c, &release_tokens),
        want,
        "the test needs answers that differ"
    );
    let body = json!({"model": NAME, "messages": [user(query)]});
    for _ in 0..2 {
        let (status, v) = client.chat(&body);
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["choices"][0]["message"]["content"], want.as_str(), "{v}");
        assert_eq!(v["usage"]["completion_tokens"], want_tokens.len());
        assert_eq!(v["usage"]["prompt_tokens"], prompt_len);
    }
    // Streamed too.
    let (pieces, last) = client.stream(&body);
    assert_eq!(pieces.concat().trim_end(), want);
    assert_eq!(last["usage"]["completion_tokens"], want_tokens.len());

    // The request's own fields win: the release's penalty, 4 tokens.
    let (tokens, _) = library_tokens(&c, query, None, &release_greedy(4));
    let (status, v) = client.chat(&json!({"messages": [user(query)], "max_tokens": 4,
                                          "repetition_penalty": 1.2}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        text(&c, &tokens).as_str()
    );

    // A temperature samples although the model does not, with the model's other settings.
    let sampled = GenerationConfig {
        do_sample: true,
        temperature: 0.7,
        seed: 11,
        ..model.clone()
    };
    let (tokens, _) = library_tokens(&c, query, None, &sampled);
    let (status, v) = client.chat(&json!({"messages": [user(query)], "temperature": 0.7,
                                          "seed": 11}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        text(&c, &tokens).as_str()
    );

    // A message with only an image asks the model's own question.
    let image = chelsea();
    let (tokens, _) = library_tokens(&c, query, Some(&image), &model);
    let (status, v) = client.chat(&json!({"messages": [image_message("", &image)]}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        text(&c, &tokens).as_str()
    );

    // The release's `POST /` decodes with the model's defaults too, up to its `max_length`.
    let max_length = prompt_len + 5;
    let release = GenerationConfig {
        max_new_tokens: max_length,
        max_length,
        ..model.clone()
    };
    let (tokens, _) = library_tokens(&c, query, None, &release);
    assert_eq!(tokens.len(), 5);
    for _ in 0..2 {
        let (status, v) = client.post("/", &json!({"text": query, "max_length": max_length}));
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["result"], text(&c, &tokens).as_str());
    }

    // The operator's --default-max-tokens wins over the model's max_new_tokens.
    let limits = PromptLimits {
        default_max_tokens: Some(2),
        ..PromptLimits::default()
    };
    let capped = start(&c, visualglm_server::ServerConfig { limits, ..config() });
    let (status, v) = capped.chat(&body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 2);
    let two = text(&c, &want_tokens[..2]);
    assert_eq!(v["choices"][0]["message"]["content"], two.as_str());
}

#[test]
fn a_model_without_generation_config_keeps_the_release_defaults() {
    let c = golden_captioner();
    let client = start(&c, config());
    // Unset temperature samples (0.8): a seed makes it reproducible and the library agrees.
    let sampled = GenerationConfig {
        max_new_tokens: 5,
        seed: 3,
        ..GenerationConfig::default()
    };
    let (tokens, _) = library_tokens(&c, "Hello there", None, &sampled);
    let (status, v) = client.chat(&json!({"messages": [user("Hello there")], "max_tokens": 5,
                                          "seed": 3}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        text(&c, &tokens).as_str()
    );
}

#[test]
fn unimplemented_parameters_are_refused_by_name_and_their_no_op_defaults_pass() {
    let c = golden_captioner();
    let client = start(&c, config());
    let base = json!({"messages": [user("Hello there")], "max_tokens": 2, "temperature": 0});
    let with = |extra: Value| {
        let mut body = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let tool = json!([{"type": "function", "function": {"name": "f", "parameters": {}}}]);
    for (extra, param) in [
        (
            json!({"response_format": {"type": "json_object"}}),
            "response_format",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}),
            "response_format",
        ),
        (json!({"frequency_penalty": 0.5}), "frequency_penalty"),
        (json!({"presence_penalty": 1}), "presence_penalty"),
        (json!({"logprobs": 1}), "logprobs"),
        (
            json!({"logprobs": true, "top_logprobs": 21}),
            "top_logprobs",
        ),
        (
            json!({"logprobs": true, "top_logprobs": -1}),
            "top_logprobs",
        ),
        (json!({"top_logprobs": 2}), "top_logprobs"),
        (json!({"logit_bias": {"5": 10}}), "logit_bias"),
        (json!({"tools": tool, "tool_choice": "auto"}), "tools"),
        (json!({"tool_choice": "required"}), "tool_choice"),
        (json!({"functions": [{"name": "f"}]}), "functions"),
        (json!({"function_call": {"name": "f"}}), "function_call"),
        (json!({"stop": ["a", "b", "c", "d", "e"]}), "stop"),
        (json!({"stop": ""}), "stop"),
        (json!({"stop": ["ok", ""]}), "stop"),
        (json!({"stop": 7}), "stop"),
        (json!({"stop": [7]}), "stop"),
        (json!({"stop": {"a": "b"}}), "stop"),
    ] {
        let (status, v) = client.chat(&with(extra.clone()));
        assert_eq!(status, 400, "{extra}: {v}");
        assert_eq!(v["error"]["param"], param, "{extra}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{extra}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
    }
    // What OpenAI clients send by default, and fields the server has never heard of.
    let (status, v) = client.chat(&with(json!({
        "n": 1, "response_format": {"type": "text"}, "frequency_penalty": 0,
        "presence_penalty": 0.0, "logprobs": false, "top_logprobs": 0, "logit_bias": {},
        "tools": [], "tool_choice": "none", "parallel_tool_calls": false, "functions": null,
        "function_call": "auto", "stop": null, "user": "u-1", "store": false,
        "metadata": {"k": "v"}, "service_tier": "auto", "a_field_from_the_future": [1]
    })));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 2, "{v}");
    // Streamed requests are checked before any event is sent.
    let r = client
        .agent
        .post(&format!("{}/v1/chat/completions", client.base))
        .send_json(with(json!({"stream": true, "frequency_penalty": 1})));
    match r {
        Err(ureq::Error::Status(400, resp)) => {
            let v: Value = resp.into_json().unwrap();
            assert_eq!(v["error"]["param"], "frequency_penalty", "{v}");
        }
        other => panic!("expected a 400, got {:?}", other.map(|r| r.status())),
    }
}
