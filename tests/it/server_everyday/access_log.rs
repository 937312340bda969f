//! The access log of `visualglm serve` as a process: by default one line per request on
//! standard error (a streamed answer's when its stream ends) with the route, status,
//! latency, model and token counts; `RUST_LOG` still decides. Also: the CLI serves the
//! model's own defaults (`generation_config.json`) when no flag overrides them.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use serde_json::{json, Value};

use super::helpers::{library_tokens, load, model_dir, read, stream_at, text};

/// Kills the server when the test ends, pass or fail.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `visualglm serve` on the model in `dir`: the process, its address, and its
/// standard error line by line (read on a thread, so the server never blocks on it).
fn serve(dir: &Path, rust_log: Option<&str>) -> (Child, String, Receiver<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_visualglm"));
    cmd.arg("serve")
        .arg("--model")
        .arg(dir)
        .args([
            "--port",
            "0",
            "--device",
            "cpu",
            "--served-model-name",
            "tiny",
        ])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(filter) = rust_log {
        cmd.env("RUST_LOG", filter);
    }
    let mut child = Child(cmd.spawn().unwrap());
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("serve exited or hung before listening");
        if let Some(rest) = line.split("on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    (child, addr, rx)
}

/// The next access line on `lines` (other lines are skipped).
fn next_access(lines: &Receiver<String>) -> String {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("no access line");
        if line.contains("visualglm_server::access") {
            return line;
        }
    }
}

/// An access line's message (method and path) and its `key=value` fields (quotes removed).
fn parse(line: &str) -> (String, HashMap<String, String>) {
    assert!(!line.contains('\u{1b}'), "colour codes in a pipe: {line:?}");
    assert!(line.contains(" INFO "), "{line}");
    let rest = line
        .split("visualglm_server::access: ")
        .nth(1)
        .unwrap_or_else(|| panic!("{line}"));
    let mut message = Vec::new();
    let mut fields = HashMap::new();
    for word in rest.split_whitespace() {
        match word.split_once('=') {
            Some((k, v)) => {
                fields.insert(k.to_string(), v.trim_matches('"').to_string());
            }
            None => message.push(word),
        }
    }
    for key in [
        "status",
        "ms",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "finish",
    ] {
        assert!(fields.contains_key(key), "no {key} in {line}");
    }
    assert!(fields["ms"].parse::<u64>().is_ok(), "{line}");
    (message.join(" "), fields)
}

/// Checks an access line against what the client saw.
fn check(line: &str, route: &str, status: u16, model: &str, usage: (u64, u64), finish: &str) {
    let (message, f) = parse(line);
    assert_eq!(message, route, "{line}");
    assert_eq!(f["status"], status.to_string(), "{line}");
    assert_eq!(f["model"], model, "{line}");
    assert_eq!(f["prompt_tokens"], usage.0.to_string(), "{line}");
    assert_eq!(f["completion_tokens"], usage.1.to_string(), "{line}");
    assert_eq!(f["finish"], finish, "{line}");
}

fn usage(v: &Value) -> (u64, u64) {
    (
        v["prompt_tokens"].as_u64().unwrap(),
        v["completion_tokens"].as_u64().unwrap(),
    )
}

#[test]
fn serve_logs_one_access_line_per_request_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_dir(
        dir.path(),
        &json!({"do_sample": false, "max_new_tokens": 3, "repetition_penalty": 1.0}),
    );
    let (mut child, addr, lines) = serve(&model, None);
    let base = format!("http://{addr}");
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let chat = format!("{base}/v1/chat/completions");
    let body = json!({"model": "tiny", "messages": [{"role": "user", "content": "Hello there"}]});

    // Without flags the CLI answers with the model's defaults: greedy, 3 new tokens.
    let c = load(&model);
    let (tokens, prompt_len) = library_tokens(&c, "Hello there", None, &c.defaults().generation);
    assert_eq!(tokens.len(), 3);
    let (status, v) = read(agent.post(&chat).send_json(body.clone()));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        text(&c, &tokens).as_str()
    );
    assert_eq!(usage(&v["usage"]), (prompt_len as u64, 3));
    let line = next_access(&lines);
    check(
        &line,
        "POST /v1/chat/completions",
        200,
        "tiny",
        (prompt_len as u64, 3),
        "length",
    );

    // A streamed answer is logged when its stream ends.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["max_tokens"] = json!(2);
    let (_, last) = stream_at(&agent, &base, &streamed);
    let line = next_access(&lines);
    check(
        &line,
        "POST /v1/chat/completions",
        200,
        "tiny",
        usage(&last["usage"]),
        "length",
    );

    // A refused request, a health check and an unknown route: one line each, no tokens.
    let mut bad = body.clone();
    bad["frequency_penalty"] = json!(1);
    let (status, _) = read(agent.post(&chat).send_json(bad));
    assert_eq!(status, 400);
    check(
        &next_access(&lines),
        "POST /v1/chat/completions",
        400,
        "tiny",
        (0, 0),
        "error",
    );
    let (status, _) = read(agent.get(&format!("{base}/health")).call());
    assert_eq!(status, 200);
    check(&next_access(&lines), "GET /health", 200, "-", (0, 0), "-");
    let (status, _) = read(agent.get(&format!("{base}/nowhere")).call());
    assert_eq!(status, 404);
    check(&next_access(&lines), "GET /nowhere", 404, "-", (0, 0), "-");

    // Exactly one line per request: nothing more once the server is gone.
    let _ = child.0.kill();
    let _ = child.0.wait();
    let rest: Vec<String> = lines
        .iter()
        .filter(|l| l.contains("visualglm_server::access"))
        .collect();
    assert!(rest.is_empty(), "extra access lines: {rest:?}");
}

#[test]
fn rust_log_still_decides_what_serve_logs() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_dir(dir.path(), &json!({"max_new_tokens": 1}));
    let (mut child, addr, lines) = serve(&model, Some("warn"));
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let (status, _) = read(agent.get(&format!("http://{addr}/health")).call());
    assert_eq!(status, 200);
    // The line would have been written before the answer: none is.
    let _ = child.0.kill();
    let _ = child.0.wait();
    let access: Vec<String> = lines
        .iter()
        .filter(|l| l.contains("visualglm_server::access"))
        .collect();
    assert!(access.is_empty(), "{access:?}");
}

#[test]
fn a_client_that_goes_away_is_logged_once_as_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_dir(dir.path(), &json!({"do_sample": false}));
    let (mut child, addr, lines) = serve(&model, None);
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    // A long answer (about a second on the tiny model), abandoned once it is being decoded.
    let long = json!({"messages": [{"role": "user", "content": "Tell me a long story"}],
                      "max_tokens": 1900, "repetition_penalty": 1.0});
    let generated = || {
        let (_, h) = read(agent.get(&format!("http://{addr}/health")).call());
        h["tokens_generated"].as_u64().unwrap()
    };
    let before = generated();
    let body = long.to_string();
    let mut socket = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        socket,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    while generated() == before {
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(socket);
    let line = loop {
        let line = next_access(&lines);
        if line.contains("POST /v1/chat/completions") {
            break line;
        }
    };
    let (_, f) = parse(&line);
    assert_eq!(f["status"], "499", "{line}");
    assert_eq!(f["finish"], "cancelled", "{line}");

    // A stream abandoned after its first pieces: one line, with the tokens made so far.
    let mut streamed = long.clone();
    streamed["stream"] = json!(true);
    let r = agent
        .post(&format!("http://{addr}/v1/chat/completions"))
        .send_json(streamed)
        .unwrap();
    let mut reader = BufReader::new(r.into_reader()).lines();
    let mut pieces = 0;
    while pieces < 3 {
        if reader.next().unwrap().unwrap().contains("\"content\":\"") {
            pieces += 1;
        }
    }
    drop(reader);
    let line = loop {
        let line = next_access(&lines);
        if line.contains("POST /v1/chat/completions") {
            break line;
        }
    };
    let (_, f) = parse(&line);
    assert_eq!(f["status"], "200", "{line}");
    assert_eq!(f["finish"], "cancelled", "{line}");
    let n: u64 = f["completion_tokens"].parse().unwrap();
    assert!((2..1900).contains(&n), "{line}");

    // Once each: no other line for either request.
    let _ = child.0.kill();
    let _ = child.0.wait();
    let rest: Vec<String> = lines
        .iter()
        .filter(|l| l.contains("POST /v1/chat/completions"))
        .collect();
    assert!(rest.is_empty(), "extra access lines: {rest:?}");
}
