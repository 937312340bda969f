//! `visualglm serve` as a process: flags reach the server, it binds loopback on a free port,
//! answers, serves `--lora` adapters by name, and refuses a bad `--max-batch` or `--lora`.

use crate::support;

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

/// Starts `visualglm serve` on the tiny model with `extra` flags; returns the child and the
/// address it printed.
fn serve(extra: &[&std::ffi::OsStr]) -> (Child, String) {
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
            ])
            .args(extra)
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
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

#[test]
fn serve_answers_with_lora_adapters_by_name() {
    use candle_core::{DType, Device};
    use visualglm::lora::{self, LoraAdapters, LoraLoadOptions, TensorNaming};
    use visualglm::pipeline::{Captioner, PromptOptions};
    use visualglm_tokenizer::ChatGlmTokenizer;

    // An adapter directory: the golden SAT fine-tune's adapters, scaled so that they change
    // the tiny model's greedy answer.
    let dir = tempfile::tempdir().unwrap();
    let sat_ft = golden("lora/finetune-visualglm-tiny-lora");
    let ft = lora::load_sat_lora(&sat_ft, &visualglm::LoadOptions::default())
        .unwrap()
        .adapters;
    let tensors = ft
        .to_tensors(TensorNaming::LORA)
        .into_iter()
        .map(|(n, t)| {
            let t = if n.contains(".lora_B.") {
                (t * -25.0).unwrap()
            } else {
                t
            };
            (n, t)
        })
        .collect();
    let scaled =
        LoraAdapters::from_tensors(ft.config().clone(), &tensors, TensorNaming::LORA, "").unwrap();
    let adapter_dir = dir.path().join("adapter");
    lora::save_adapters(&scaled, &adapter_dir, None).unwrap();
    let tok = ChatGlmTokenizer::from_file(tiny_tokenizer(dir.path())).unwrap();
    let answer = |model: visualglm::VisualGlm| {
        let c = Captioner::new(model, tok.clone()).unwrap();
        let p = c
            .prompt("描述这张图片。", &[], 2047, &PromptOptions::default())
            .unwrap();
        let cfg = visualglm_language::GenerationConfig {
            max_new_tokens: 8,
            max_length: 2048,
            do_sample: false,
            temperature: 1.0,
            top_p: 0.4,
            top_k: 100,
            repetition_penalty: 1.2,
            num_beams: 1,
            seed: 0,
        };
        let rows = visualglm::generate::generate(
            c.model(),
            &p.ids,
            &[],
            &cfg,
            &c.invalid_ids(false),
            &mut |_, _| visualglm::generate::Flow::Continue,
        )
        .unwrap();
        c.tokenizer()
            .decode(&rows[0], &Default::default())
            .unwrap()
            .trim()
            .to_string()
    };
    let hf = golden("checkpoints/hf");
    let with_adapter = answer(
        visualglm::VisualGlm::load_adapted(
            &hf,
            &adapter_dir,
            &Device::Cpu,
            DType::F32,
            &LoraLoadOptions::default(),
        )
        .unwrap(),
    );
    let base = answer(
        visualglm::VisualGlm::load(&hf, &Device::Cpu, DType::F32, &Default::default()).unwrap(),
    );
    assert_ne!(with_adapter, base, "the adapter must change the answer");

    let mut ft_arg = std::ffi::OsString::from("ft=");
    ft_arg.push(&adapter_dir);
    let mut sat_arg = std::ffi::OsString::from("sat=");
    sat_arg.push(&sat_ft);
    let lora_flag = std::ffi::OsStr::new("--lora");
    let (_child, addr) = serve(&[lora_flag, &ft_arg, lora_flag, &sat_arg]);
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .build();
    let models: Value = agent
        .get(&format!("http://{addr}/v1/models"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["tiny", "ft", "sat"]);
    let ask = |model: &str| -> (u16, Value) {
        let r = agent
            .post(&format!("http://{addr}/v1/chat/completions"))
            .send_json(json!({"model": model, "temperature": 0, "max_tokens": 8,
                              "messages": [{"role": "user", "content": "描述这张图片。"}]}));
        match r {
            Ok(r) => (r.status(), r.into_json().unwrap()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap()),
            Err(e) => panic!("transport error: {e}"),
        }
    };
    for (model, want) in [("ft", &with_adapter), ("tiny", &base)] {
        let (s, v) = ask(model);
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["model"], model);
        assert_eq!(
            v["choices"][0]["message"]["content"],
            want.as_str(),
            "{model}"
        );
    }
    let (s, v) = ask("sat");
    assert_eq!((s, v["model"].as_str()), (200, Some("sat")), "{v}");
    let (s, v) = ask("nope");
    assert_eq!(s, 404, "{v}");
    assert_eq!(v["error"]["code"], "model_not_found");
}

#[test]
fn serve_refuses_bad_lora_flags_clearly() {
    let run = |lora: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_visualglm"))
            .arg("serve")
            .arg("--model")
            .arg(golden("checkpoints/hf"))
            .args(["--port", "0", "--lora", lora])
            .output()
            .unwrap();
        assert!(!o.status.success(), "--lora {lora} was accepted");
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(!err.contains("panicked"), "{err}");
        err
    };
    let err = run("no-equals-sign");
    assert!(err.contains("NAME=PATH"), "{err}");
    let err = run("x=/nonexistent/adapter");
    assert!(err.contains("/nonexistent/adapter"), "{err}");
    let err = run("hf=/nonexistent/adapter");
    assert!(err.contains("base model's name"), "{err}");
}
