//! `visualglm chat`: commands and end of input through a pipe, stopping an answer from the
//! library, and (on Unix) Ctrl-C and Ctrl-D at a pseudo-terminal.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use visualglm::generate::Flow;
use visualglm_language::GenerationConfig;
use visualglm_vision::decode::load_image;

use crate::support::{golden, golden_captioner, tiny_tokenizer};

/// `chat` on chelsea.png with the tiny golden model and `extra` flags.
fn chat_command(extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_visualglm"));
    cmd.arg("chat")
        .arg(golden("images/chelsea.png"))
        .arg("--model")
        .arg(golden("checkpoints/hf"))
        .arg("--tokenizer")
        .arg(tiny_tokenizer(std::path::Path::new(".")))
        .args(["--device", "cpu"])
        .args(extra);
    cmd
}

/// Runs `chat` with `script` piped to its standard input.
fn piped_chat(script: &str) -> Output {
    let mut child = chat_command(&["--greedy", "--max-new-tokens", "4"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(script.as_bytes()).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn unknown_commands_and_bad_images_are_refused_and_eof_ends_the_line() {
    let out = piped_chat("/foo bar\n/image /no/such.png\n/image\n/clear now\nwhat is it?\n");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Refused with the list of commands, and not asked of the model: one answer only.
    assert!(
        stderr.contains("unknown command /foo") && stderr.contains("/image PATH"),
        "{stderr}"
    );
    assert!(stderr.contains("/image needs a path"), "{stderr}");
    assert!(stderr.contains("/clear takes no argument"), "{stderr}");
    assert!(stderr.contains("such.png"), "{stderr}");
    let answers: Vec<&str> = stdout
        .split("> ")
        .filter(|s| !s.trim().is_empty())
        .collect();
    assert_eq!(answers.len(), 1, "{stdout}");
    // End of input: the last prompt is closed by a newline.
    assert!(stdout.ends_with("> \n"), "{stdout:?}");
}

#[test]
fn an_answer_stops_when_the_callback_says_so_and_stays_in_the_history() {
    let c = golden_captioner(&tiny_tokenizer(std::path::Path::new(".")));
    let image = load_image(golden("images/chelsea.png"), &Default::default()).unwrap();
    let config = GenerationConfig {
        max_new_tokens: 12,
        ..GenerationConfig::greedy()
    };
    let mut chat = c.chat(false);
    chat.set_image(&image).unwrap();
    let full = chat
        .ask("what is it?", &config, &mut |_| Flow::Continue)
        .unwrap();
    chat.clear_history();
    let mut pieces = Vec::new();
    let partial = chat
        .ask("what is it?", &config, &mut |piece| {
            pieces.push(piece.to_string());
            Flow::Stop
        })
        .unwrap();
    assert_eq!(pieces.len(), 1);
    assert_eq!(partial, pieces[0].trim());
    assert!(
        full.len() > partial.len() && full.starts_with(&partial),
        "{full:?} vs {partial:?}"
    );
    assert_eq!(chat.history(), [("what is it?".to_string(), partial)]);
}

/// At a terminal: Ctrl-C during an answer stops it and the chat goes on; Ctrl-C at the
/// prompt clears the line; Ctrl-D on an empty line quits.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_an_answer_at_a_terminal() {
    use rexpect::process::WaitStatus;

    // A long sampled answer (about 2000 tokens), so that it is still being written when
    // Ctrl-C arrives.
    let cmd = chat_command(&["--sample", "--max-new-tokens", "2000"]);
    let mut p = rexpect::session::spawn_command(cmd, Some(60_000)).unwrap();
    p.exp_string("> ").unwrap();
    p.send_line("tell me everything").unwrap();
    p.exp_string("tell me everything").unwrap();
    // Some of the answer first.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut seen = 0;
    while seen < 40 {
        assert!(std::time::Instant::now() < deadline, "no answer");
        match p.try_read() {
            Some(_) => seen += 1,
            None => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
    }
    p.send_control('c').unwrap();
    p.exp_string("(answer stopped").unwrap();
    p.exp_string("> ").unwrap();
    // Ctrl-C at the prompt drops the typed text: Ctrl-D then finds an empty line and quits
    // (on a non-empty line it would delete a character and the chat would wait).
    p.send("half a questi").unwrap();
    p.flush().unwrap();
    p.exp_string("half a questi").unwrap();
    p.send_control('c').unwrap();
    p.exp_string("> ").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
    match p.process().wait().unwrap() {
        WaitStatus::Exited(_, 0) => {}
        other => panic!("chat ended with {other:?}"),
    }
}
