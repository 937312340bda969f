//! `visualglm_server` end to end on the tiny golden model: OpenAI chat completions
//! (plain and streamed), the release's `POST /`, model list, health, cancellation, and every
//! kind of bad request. Loopback only.

mod fixture;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::support::golden;
use fixture::{
    assert_error, config, data_url, greedy_defaults, image_message, library_answer,
    library_answer_images, png, start, NAME,
};

#[test]
fn chat_completion_plain_and_streamed_match_the_library() {
    let f = start(config());
    let chelsea = golden("images/chelsea.png");
    let url = data_url(&chelsea);
    let query = "这是什么？";
    let body = json!({
        "model": NAME,
        "messages": [image_message(query, &url)],
        "max_tokens": 12,
        "temperature": 0,
    });
    let (want, prompt_len, completion_len) = library_answer(
        &f.captioner,
        query,
        &[],
        Some(&chelsea),
        &greedy_defaults(12),
    );
    assert!(prompt_len > 32);
    let (status, v) = f.post("/v1/chat/completions", &body);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], NAME);
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], want.as_str());
    let finish = if completion_len == 12 {
        "length"
    } else {
        "stop"
    };
    assert_eq!(choice["finish_reason"], finish);
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": prompt_len, "completion_tokens": completion_len,
               "total_tokens": prompt_len + completion_len})
    );

    // The same request streamed.
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let events = f.stream(&sbody);
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks.len() >= 2);
    let id = chunks[0]["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("chatcmpl-"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let mut text = String::new();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], id.as_str());
        assert_eq!(c["model"], NAME);
        text.push_str(c["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
    }
    for c in &chunks[..chunks.len() - 1] {
        assert!(c["choices"][0]["finish_reason"].is_null(), "{c}");
    }
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], finish);
    assert_eq!(last["usage"], v["usage"]);
    assert_eq!(text.trim_end(), want);

    // include_usage adds a usage-only chunk before [DONE].
    sbody["stream_options"] = json!({"include_usage": true});
    let events = f.stream(&sbody);
    let n = events.len();
    assert_eq!(events[n - 1], "[DONE]");
    let usage_chunk: Value = serde_json::from_str(&events[n - 2]).unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"], v["usage"]);

    // Without a model name, and text only, in English.
    let (status, v) = f.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Hello there"}],
                "max_tokens": 6, "temperature": 0}),
    );
    assert_eq!(status, 200, "{v}");
    let (want, prompt_len, _) =
        library_answer(&f.captioner, "Hello there", &[], None, &greedy_defaults(6));
    assert_eq!(v["choices"][0]["message"]["content"], want.as_str());
    assert_eq!(v["usage"]["prompt_tokens"], prompt_len);
}

#[test]
fn history_and_every_image_of_the_conversation_are_used_in_order() {
    let mut cfg = config();
    cfg.limits.max_images = 2;
    let f = start(cfg);
    let first = golden("images/camera.png");
    let last = golden("images/chelsea.png");
    let body = json!({
        "messages": [
            {"role": "system", "content": "ignored"},
            image_message("描述这张图片。", &data_url(&first)),
            {"role": "assistant", "content": "一只猫"},
            image_message("它在哪里？", &data_url(&last)),
        ],
        "max_tokens": 8,
        "temperature": 0,
    });
    let history = vec![("描述这张图片。".to_string(), "一只猫".to_string())];
    let (want, prompt_len, _) = library_answer_images(
        &f.captioner,
        "它在哪里？",
        &history,
        &[&first, &last],
        &greedy_defaults(8),
    );
    let (status, v) = f.post("/v1/chat/completions", &body);
    assert_eq!(status, 200, "{v}");
    // Two image blocks of 32 placeholders each.
    let (_, one_image_len, _) = library_answer(
        &f.captioner,
        "它在哪里？",
        &history,
        Some(&last),
        &greedy_defaults(8),
    );
    assert!(
        prompt_len >= one_image_len + 32,
        "{prompt_len} vs {one_image_len}"
    );
    assert_eq!(v["usage"]["prompt_tokens"], prompt_len);
    assert_eq!(v["choices"][0]["message"]["content"], want.as_str());
    // The order is the messages' order: swapped images give the swapped prompt's answer
    // (checked when the tiny model answers the two orders differently).
    let (swapped, _, _) = library_answer_images(
        &f.captioner,
        "它在哪里？",
        &history,
        &[&last, &first],
        &greedy_defaults(8),
    );
    if swapped != want {
        assert_ne!(v["choices"][0]["message"]["content"], swapped.as_str());
    }
    // A third image is past this server's --max-images.
    let mut messages = body["messages"].as_array().unwrap().clone();
    messages.push(json!({"role": "assistant", "content": "桌上"}));
    messages.push(image_message("还有呢？", &data_url(&first)));
    let (status, v) = f.post(
        "/v1/chat/completions",
        &json!({"messages": messages, "max_tokens": 2}),
    );
    assert_error(status, &v, 400, Some("too_many_images"), "three images");
}

#[test]
fn release_endpoint_answers_like_api_py() {
    let f = start(config());
    let chelsea = golden("images/chelsea.png");
    let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&chelsea).unwrap());
    let text = "描述这张图片。";
    let history = vec![("你好".to_string(), "你好！".to_string())];
    let (status, v) = f.post(
        "/",
        &json!({"image": b64, "text": text, "history": [["你好", "你好！"]],
                "max_length": 120, "temperature": 0}),
    );
    assert_eq!(status, 200, "{v}");
    let mut cfg = greedy_defaults(120);
    cfg.max_length = 120;
    let (want, _, _) = library_answer(&f.captioner, text, &history, Some(&chelsea), &cfg);
    assert_eq!(v["result"], want.as_str());
    assert_eq!(v["status"], 200);
    assert_eq!(v["history"], json!([["你好", "你好！"], [text, want]]));
    let time = v["time"].as_str().unwrap();
    assert_eq!(time.len(), 19, "{time}");
    assert_eq!((&time[4..5], &time[10..11], &time[13..14]), ("-", " ", ":"));

    // Without an image and without history.
    let (status, v) = f.post("/", &json!({"text": "hi", "history": [], "max_length": 60}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["history"].as_array().unwrap().len(), 1);

    let (s, v) = f.post("/", &json!({"image": "%%%", "text": "hi", "history": []}));
    assert_error(s, &v, 400, Some("invalid_base64"), "release bad base64");
    let (s, v) = f.post("/", &json!({"image": b64}));
    assert_error(s, &v, 400, Some("invalid_json"), "release without text");
}

#[test]
fn models_and_health() {
    let f = start(config());
    let (s, v) = f.get("/v1/models");
    assert_eq!(s, 200);
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], NAME);
    assert_eq!(v["data"][0]["object"], "model");
    let (s, v) = f.get(&format!("/v1/models/{NAME}"));
    assert_eq!((s, v["id"].as_str()), (200, Some(NAME)));
    let (s, v) = f.get("/v1/models/gpt-4");
    assert_error(s, &v, 404, Some("model_not_found"), "unknown model card");
    let (s, v) = f.get("/health");
    assert_eq!(s, 200);
    assert_eq!(v["status"], "ok");
    assert_eq!(v["model"], NAME);
    assert_eq!(v["in_flight"], 0);
}

#[test]
fn bad_requests_get_openai_shaped_4xx_errors() {
    let mut cfg = config();
    cfg.max_body_bytes = 64 << 10;
    cfg.images.limits.max_pixels = 300_000;
    let f = start(cfg);
    let chat = "/v1/chat/completions";
    let user = |content: Value| json!({"messages": [{"role": "user", "content": content}]});
    let with_url = |url: &str| json!({"messages": [image_message("hi", url)], "max_tokens": 2});
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);

    let (s, v) = f.post_raw(chat, "{\"messages\": [");
    assert_error(s, &v, 400, Some("invalid_json"), "malformed JSON");
    let (s, v) = f.post_raw(chat, "[1, 2]");
    assert_error(s, &v, 400, Some("invalid_json"), "not an object");
    let (s, v) = f.post(chat, &json!({"model": NAME}));
    assert_error(s, &v, 400, Some("invalid_json"), "no messages");
    let (s, v) = f.post(
        chat,
        &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_error(s, &v, 404, Some("model_not_found"), "other model");
    assert_eq!(v["error"]["param"], "model");
    let (s, v) = f.post(chat, &json!({"messages": []}));
    assert_error(s, &v, 400, None, "empty messages");
    let (s, v) = f.post(chat, &json!({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}));
    assert_error(s, &v, 400, None, "last message from the assistant");
    let (s, v) = f.post(
        chat,
        &json!({"messages": [{"role": "user", "content": [{"type": "audio", "x": 1}]}]}),
    );
    assert_error(s, &v, 400, Some("invalid_json"), "unknown part type");
    let mut body = user(json!("hi"));
    body["max_tokens"] = json!(0);
    let (s, v) = f.post(chat, &body);
    assert_error(s, &v, 400, None, "max_tokens 0");
    body["max_tokens"] = json!(4);
    body["temperature"] = json!(5.0);
    let (s, v) = f.post(chat, &body);
    assert_error(s, &v, 400, None, "temperature 5");
    assert_eq!(v["error"]["param"], "temperature");
    body["temperature"] = json!(0.5);
    body["n"] = json!(9);
    let (s, v) = f.post(chat, &body);
    assert_error(s, &v, 400, None, "n 9");
    assert_eq!(v["error"]["param"], "n");
    body["n"] = json!(1);

    // Images.
    let (s, v) = f.post(chat, &with_url("https://example.com/cat.png"));
    assert_error(s, &v, 400, Some("invalid_image_url"), "remote URL");
    let (s, v) = f.post(
        chat,
        &with_url(&golden("images/chelsea.png").display().to_string()),
    );
    assert_error(
        s,
        &v,
        400,
        Some("invalid_image_url"),
        "local path without --allow-local-dir",
    );
    let (s, v) = f.post(chat, &with_url("data:image/png;base64,!!not base64!!"));
    assert_error(s, &v, 400, Some("invalid_base64"), "bad base64");
    let (s, v) = f.post(
        chat,
        &with_url(&format!(
            "data:image/png;base64,{}",
            b64(b"just text, no image")
        )),
    );
    assert_error(s, &v, 400, Some("invalid_image"), "undecodable image");
    let (s, v) = f.post(
        chat,
        &with_url(&format!("data:image/png;base64,{}", b64(&png(600, 600)))),
    );
    assert_error(s, &v, 413, Some("image_too_large"), "too many pixels");
    let truncated = std::fs::read(golden("images/bad_truncated_rocket.jpg")).unwrap();
    let (s, v) = f.post(
        chat,
        &with_url(&format!("data:image/jpeg;base64,{}", b64(&truncated))),
    );
    assert_error(s, &v, 400, Some("invalid_image"), "truncated image");

    // Over-long prompt (fits the body limit, not the 2048-token context).
    let long = "hello world ".repeat(3000);
    let (s, v) = f.post(chat, &user(json!(long)));
    assert_error(
        s,
        &v,
        400,
        Some("context_length_exceeded"),
        "over-long prompt",
    );

    // Body over the limit: declared by Content-Length, and actually sent.
    let big = format!(
        "{{\"messages\": [{{\"role\": \"user\", \"content\": \"{}\"}}]}}",
        "x".repeat(70 << 10)
    );
    let (s, v) = f.post_raw(chat, &big);
    assert_error(s, &v, 413, Some("request_too_large"), "body over the limit");
    let addr = f.server.addr();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        tcp,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: 999999999\r\n\r\n{{"
    )
    .unwrap();
    let mut head = String::new();
    BufReader::new(&tcp).read_line(&mut head).unwrap();
    assert!(head.contains(" 413 "), "{head}");
    // Chunked, without a declared length: the limit applies to what arrives.
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        tcp,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let piece = "y".repeat(8 << 10);
    for _ in 0..10 {
        write!(tcp, "{:x}\r\n{piece}\r\n", piece.len()).unwrap();
    }
    write!(tcp, "0\r\n\r\n").unwrap();
    let mut reply = String::new();
    BufReader::new(&tcp).read_to_string(&mut reply).ok();
    assert!(reply.starts_with("HTTP/1.1 413 "), "{reply}");
    assert!(reply.contains("request_too_large"), "{reply}");

    // Unknown route and method.
    let (s, v) = f.get("/v2/nothing");
    assert_error(s, &v, 404, Some("not_found"), "unknown route");
    let (s, v) = f.get(chat);
    assert_error(s, &v, 405, None, "GET on a POST route");

    // Still serving; null optional fields (as some clients send them) mean "absent".
    let (s, v) = f.post(
        chat,
        &json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3,
                "model": null, "stream": null, "temperature": null, "top_p": null,
                "n": null, "seed": null, "stream_options": null, "user": "x"}),
    );
    assert_eq!(s, 200, "{v}");
    assert!(
        v["usage"]["completion_tokens"].as_u64().unwrap() <= 3,
        "{v}"
    );
    let (s, v) = f.get("/health");
    assert_eq!((s, &v["in_flight"]), (200, &json!(0)));
}

#[test]
fn local_images_only_under_the_allowed_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("images")).unwrap();
    std::fs::copy(
        golden("images/chelsea.png"),
        dir.path().join("images/cat.png"),
    )
    .unwrap();
    std::fs::write(dir.path().join("secret.png"), png(8, 8)).unwrap();
    let mut cfg = config();
    cfg.images.local_dir = Some(dir.path().join("images").canonicalize().unwrap());
    let f = start(cfg);
    let chat = "/v1/chat/completions";
    let body = |url: &str| json!({"messages": [image_message("hi", url)], "max_tokens": 3, "temperature": 0});
    let (s, v) = f.post(chat, &body("cat.png"));
    assert_eq!(s, 200, "{v}");
    let inline = f
        .post(chat, &body(&data_url(&golden("images/chelsea.png"))))
        .1;
    assert_eq!(v["choices"][0]["message"], inline["choices"][0]["message"]);
    let abs = dir.path().join("images/cat.png").canonicalize().unwrap();
    assert_eq!(
        f.post(chat, &body(&format!("file://{}", abs.display()))).0,
        200
    );
    for escape in [
        "../secret.png",
        &dir.path().join("secret.png").display().to_string(),
        "missing.png",
    ] {
        let (s, v) = f.post(chat, &body(escape));
        assert_error(s, &v, 400, Some("invalid_image_url"), escape);
    }
}

#[test]
fn a_client_that_disconnects_mid_stream_frees_its_slot() {
    let mut cfg = config();
    cfg.batch.max_batch = 1;
    let f = start(cfg);
    let long = json!({"messages": [{"role": "user", "content": "Tell me a long story"}],
                      "max_tokens": 1500, "temperature": 0, "repetition_penalty": 1.0});
    // The full answer really is long (the tiny model never ends it on its own).
    let (s, v) = f.post("/v1/chat/completions", &long);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 1500, "{v}");
    let before = f.get("/health").1["tokens_generated"].as_u64().unwrap();

    let mut body = long.clone();
    body["stream"] = json!(true);
    let payload = body.to_string();
    let addr = f.server.addr();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        tcp,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{payload}",
        payload.len()
    )
    .unwrap();
    // Read until the first content chunk, then hang up.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\"content\":\"") || seen.len() < 600 {
        let n = tcp.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "stream ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    drop(tcp);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h = f.get("/health").1;
        if h["in_flight"] == 0 {
            let made = h["tokens_generated"].as_u64().unwrap() - before;
            eprintln!("tokens made by the cancelled request: {made}");
            assert!(made < 500, "the stopped request still made {made} tokens");
            break;
        }
        assert!(Instant::now() < deadline, "the request never ended: {h}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The slot is free: a new request is served.
    let (s, _) = f.post(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
    );
    assert_eq!(s, 200);
}
