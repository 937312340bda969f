//! `visualglm serve` as a process: flags reach the server, it binds loopback on a free port,
//! answers, and refuses a bad `--max-batch`.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::{golden, tiny_tokenizer};

/// Kills the server when the test ends, pass or fail.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_binds_loopback_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tiny_tokenizer(dir.path());
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_visualglm"))
            .arg("serve")
            .arg("--model")
            .arg(golden("checkpoints/hf"))
            .arg("--tokenizer")
            .arg(&tok)
            .args([
                "--port",
                "0",
                "--device",
                "cpu",
                "--served-model-name",
                "tiny",
                "--max-batch",
                "2",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("serve exited before listening")
            .unwrap();
        if let Some(rest) = line.split("on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let health: Value = agent
        .get(&format!("http://{addr}/health"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(health["model"], "tiny");
    let v: Value = agent
        .post(&format!("http://{addr}/v1/chat/completions"))
        .send_json(
            json!({"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
                          "max_tokens": 3}),
        )
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(v["model"], "tiny");
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() <= 3);
}

#[test]
fn serve_refuses_a_zero_batch() {
    let o = Command::new(env!("CARGO_BIN_EXE_visualglm"))
        .arg("serve")
        .arg("--model")
        .arg(golden("checkpoints/hf"))
        .args(["--max-batch", "0", "--port", "0"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--max-batch"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
