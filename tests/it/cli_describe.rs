//! `visualglm describe` and `batch` end to end on the tiny golden model.

use crate::support;
use visualglm::EmbedSpan;

use std::process::Command;

use support::{golden, tiny_tokenizer};
use visualglm::pipeline::{Captioner, PromptOptions, Question};
use visualglm_language::GenerationConfig;
use visualglm_vision::decode::load_image;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_visualglm"))
}

fn captioner(tokenizer: &std::path::Path) -> Captioner {
    support::golden_captioner(tokenizer)
}

#[test]
fn describe_prints_the_greedy_answer_of_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tiny_tokenizer(dir.path());
    // The library path: prompt ids → verified greedy decoder → text.
    let c = captioner(&tok);
    let prompt = c
        .prompt(
            visualglm::pipeline::DEFAULT_QUERY_ZH,
            &[],
            2048,
            &PromptOptions {
                images: 1,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(prompt.pre_image() > 0 && prompt.ids.len() > prompt.pre_image() + 32);
    let image = c
        .encode_images(&[load_image(golden("images/chelsea.png"), &Default::default()).unwrap()])
        .unwrap();
    let (ids, _) = c
        .model()
        .generate_greedy(
            &prompt.ids,
            &[EmbedSpan::new(prompt.pre_image(), image.clone())],
            12,
        )
        .unwrap();
    let ids: Vec<u32> = ids.into_iter().take_while(|&t| t != 1005).collect();
    let want = c
        .tokenizer()
        .decode(&ids, &Default::default())
        .unwrap()
        .trim()
        .to_string();

    let out = bin()
        .args(["describe"])
        .arg(golden("images/chelsea.png"))
        .arg("--model")
        .arg(golden("checkpoints/hf"))
        .arg("--tokenizer")
        .arg(&tok)
        .args([
            "--greedy",
            "--repetition-penalty",
            "1",
            "--max-new-tokens",
            "12",
            "--device",
            "cpu",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end_matches('\n'),
        want
    );
    assert!(!want.is_empty());
}

#[test]
fn describe_batch_equals_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let c = captioner(&tiny_tokenizer(dir.path()));
    let images: Vec<_> = ["chelsea.png", "astronaut.png", "camera.png"]
        .iter()
        .map(|n| load_image(golden(&format!("images/{n}")), &Default::default()).unwrap())
        .collect();
    let q = Question {
        generation: GenerationConfig {
            max_new_tokens: 10,
            ..GenerationConfig::greedy()
        },
        ..Question::default()
    };
    let batch = c.describe_batch(&images, &q).unwrap().answers;
    for (img, caption) in images.iter().zip(&batch) {
        assert_eq!(&c.describe(img, &q).unwrap(), caption);
    }
    // English mode never emits a Chinese piece.
    let en = Question {
        english: true,
        ..q.clone()
    };
    let text = c.describe(&images[0], &en).unwrap();
    assert!(
        !text
            .chars()
            .any(|ch| ('\u{4e00}'..='\u{9fff}').contains(&ch)),
        "{text}"
    );
}

#[test]
fn batch_writes_one_line_per_image_records_errors_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tiny_tokenizer(dir.path());
    let list = dir.path().join("images.txt");
    let names = ["chelsea.png", "bad_truncated_rocket.jpg", "camera.png"];
    let text: String = names
        .iter()
        .map(|n| format!("{}\n", golden(&format!("images/{n}")).display()))
        .collect();
    std::fs::write(&list, &text).unwrap();
    let out = dir.path().join("captions.jsonl");
    let run = || {
        bin()
            .arg("batch")
            .arg(&list)
            .arg("--out")
            .arg(&out)
            .arg("--model")
            .arg(golden("checkpoints/hf"))
            .arg("--tokenizer")
            .arg(&tok)
            .args([
                "--greedy",
                "--max-new-tokens",
                "6",
                "--batch-size",
                "2",
                "--device",
                "cpu",
            ])
            .output()
            .unwrap()
    };
    let o = run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let bad = lines
        .iter()
        .find(|l| {
            l["image"]
                .as_str()
                .unwrap()
                .ends_with("bad_truncated_rocket.jpg")
        })
        .unwrap();
    assert!(
        bad["error"].as_str().unwrap().contains("truncated"),
        "{bad}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.get("caption").is_some()).count(),
        2
    );

    // Simulate a crash that cut the last line, then re-run: only that image is redone.
    let full = std::fs::read_to_string(&out).unwrap();
    let mut kept: Vec<&str> = full.lines().collect();
    let last = kept.pop().unwrap();
    let mut cut = format!("{}\n", kept.join("\n")).into_bytes();
    cut.extend_from_slice(&last.as_bytes()[..last.len() / 2]);
    std::fs::write(&out, cut).unwrap();
    let o = run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let again = std::fs::read_to_string(&out).unwrap();
    assert_eq!(again.lines().count(), 3, "{again}");
    for l in again.lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap();
    }
    // A third run has nothing to do.
    let o = run();
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing to do"));
}

#[test]
fn describe_bad_inputs_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tiny_tokenizer(dir.path());
    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (
            vec![
                "/no/such/cat.jpg".into(),
                "--model".into(),
                golden("checkpoints/hf").into(),
            ],
            "cat.jpg",
        ),
        (
            vec![
                golden("images/bad_truncated_rocket.jpg").into(),
                "--model".into(),
                golden("checkpoints/hf").into(),
            ],
            "truncated",
        ),
        (
            vec![
                golden("images/chelsea.png").into(),
                "--model".into(),
                dir.path().into(),
            ],
            "error",
        ),
        (
            vec![
                golden("images/chelsea.png").into(),
                "--model".into(),
                "THUDM/visualglm-6b".into(),
                "--offline".into(),
            ],
            "--offline",
        ),
        (
            vec![
                golden("images/chelsea.png").into(),
                "--model".into(),
                "no/such/dir".into(),
            ],
            "not found",
        ),
    ];
    for (args, needle) in cases {
        let o = bin()
            .env("HF_HOME", dir.path().join("empty-hf-home"))
            .arg("describe")
            .args(&args)
            .arg("--tokenizer")
            .arg(&tok)
            .output()
            .unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.to_lowercase().contains(needle), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // An over-long prompt.
    let o = bin()
        .arg("describe")
        .arg(golden("images/chelsea.png"))
        .arg("--model")
        .arg(golden("checkpoints/hf"))
        .arg("--tokenizer")
        .arg(&tok)
        .args(["--max-length", "20", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("maximum length"), "{err}");
}

#[test]
fn hub_ids_resolve_from_the_cache_offline() {
    let home = tempfile::tempdir().unwrap();
    // The layout hf-hub writes: hub/models--OWNER--NAME/{refs/main, snapshots/REV/...}.
    let repo = home
        .path()
        .join("hub")
        .join("models--THUDM--visualglm-tiny");
    let snapshot = repo.join("snapshots").join("0123abc");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), "0123abc").unwrap();
    for f in std::fs::read_dir(golden("checkpoints/hf")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, snapshot.join(f.file_name().unwrap())).unwrap();
    }
    std::fs::copy(tiny_tokenizer(home.path()), snapshot.join("ice_text.model")).unwrap();
    let o = bin()
        .env("HF_HOME", home.path())
        .args(["describe"])
        .arg(golden("images/chelsea.png"))
        .args([
            "--model",
            "THUDM/visualglm-tiny",
            "--offline",
            "--greedy",
            "--max-new-tokens",
            "4",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stdout).trim().is_empty());
    // A shard missing from the cache means "not cached", not a half-loaded model.
    let shard = std::fs::read_dir(&snapshot)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "bin"))
        .unwrap();
    std::fs::remove_file(shard).unwrap();
    let o = bin()
        .env("HF_HOME", home.path())
        .args(["describe"])
        .arg(golden("images/chelsea.png"))
        .args(["--model", "THUDM/visualglm-tiny", "--offline"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not in the hub cache"));
}

#[test]
fn hf_hub_offline_takes_the_documented_values() {
    // The variable itself, not only the flag: truthy values forbid downloads, falsy ones (and
    // empty, i.e. unset) allow them. The endpoint is a closed local port, so a download attempt
    // fails at once instead of reaching the network.
    let home = tempfile::tempdir().unwrap();
    let run = |value: &str| {
        let o = bin()
            .env("HF_HOME", home.path())
            .env("HF_ENDPOINT", "http://127.0.0.1:9")
            .env("HF_HUB_OFFLINE", value)
            .arg("describe")
            .arg(golden("images/chelsea.png"))
            .args(["--model", "THUDM/visualglm-not-cached"])
            .output()
            .unwrap();
        assert!(!o.status.success(), "HF_HUB_OFFLINE={value:?}");
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(
            !err.contains("invalid value"),
            "HF_HUB_OFFLINE={value:?}: {err}"
        );
        err
    };
    for truthy in ["1", "true", "TRUE", "yes", "on"] {
        let err = run(truthy);
        assert!(err.contains("not in the hub cache"), "{truthy:?}: {err}");
    }
    for falsy in ["0", "false", "no", "off", ""] {
        let err = run(falsy);
        assert!(err.contains("cannot download"), "{falsy:?}: {err}");
    }
}

#[test]
fn describe_with_q8_0_gives_the_f32_greedy_answer() {
    let dir = tempfile::tempdir().unwrap();
    let tok = tiny_tokenizer(dir.path());
    let run = |extra: &[&str]| {
        let o = bin()
            .arg("describe")
            .arg(golden("images/chelsea.png"))
            .arg("--model")
            .arg(golden("checkpoints/hf"))
            .arg("--tokenizer")
            .arg(&tok)
            .args(["--greedy", "--max-new-tokens", "8", "--device", "cpu"])
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    assert_eq!(run(&["--quantize", "q8_0"]), run(&[]));
}

#[test]
fn chat_answers_streams_and_handles_commands() {
    let script = format!(
        "what is this?\n/clear\n/image {}\nand now?\n/image /no/such.png\n/quit\n",
        golden("images/astronaut.png").display()
    );
    let out = chat_session(&["--greedy", "--max-new-tokens", "4"], &script);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Two questions were answered: each answer ends its line after a "> " prompt.
    let answers: Vec<&str> = stdout
        .split("> ")
        .filter(|s| !s.trim().is_empty())
        .collect();
    assert_eq!(answers.len(), 2, "{stdout}");
    assert!(stderr.contains("history cleared"), "{stderr}");
    assert!(stderr.contains("image loaded"), "{stderr}");
    assert!(stderr.contains("such.png"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Runs `chat` on chelsea.png with `extra` flags, feeds it `script` on stdin, and returns
/// the process output.
fn chat_session(extra: &[&str], script: &str) -> std::process::Output {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut child = bin()
        .arg("chat")
        .arg(golden("images/chelsea.png"))
        .arg("--model")
        .arg(golden("checkpoints/hf"))
        .arg("--tokenizer")
        .arg(tiny_tokenizer(dir.path()))
        .args(["--device", "cpu"])
        .args(extra)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // A refused command line exits before reading: a closed pipe is fine then.
    let _ = stdin.write_all(script.as_bytes());
    drop(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn chat_uses_beam_search_and_refuses_zero_beams() {
    let dir = tempfile::tempdir().unwrap();
    let c = captioner(&tiny_tokenizer(dir.path()));
    let image = load_image(golden("images/chelsea.png"), &Default::default()).unwrap();
    let question = "what is this?";
    let answer = |beams: usize| {
        let q = Question {
            query: Some(question.to_string()),
            english: false,
            generation: GenerationConfig {
                max_new_tokens: 6,
                num_beams: beams,
                ..GenerationConfig::greedy()
            },
        };
        c.describe(&image, &q).unwrap()
    };
    let (greedy, beams) = (answer(1), answer(4));
    // The test has power only if beam search changes the answer here.
    assert_ne!(
        greedy, beams,
        "4 beams give the greedy answer on this prompt"
    );
    let flags = ["--greedy", "--max-new-tokens", "6", "--repetition-penalty"];
    let penalty = GenerationConfig::greedy().repetition_penalty.to_string();
    let script = format!("{question}\n/quit\n");
    let out = chat_session(
        &[&flags[..], &[penalty.as_str(), "--beams", "4"]].concat(),
        &script,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let said = stdout
        .split("> ")
        .find(|s| !s.trim().is_empty())
        .unwrap_or("");
    assert_eq!(said.trim(), beams, "{stdout}");

    let out = chat_session(&["--beams", "0"], &script);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--beams") && stderr.contains('0'),
        "{stderr}"
    );
}
