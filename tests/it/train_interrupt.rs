//! SIGTERM and Ctrl-C in the middle of an update: the run writes the checkpoint of the last
//! completed update at once (it does not wait for the running one) and exits with the
//! shell's status for the signal; resuming from that checkpoint reproduces an uninterrupted
//! run bit for bit. A second run on the same `out` is refused while the first runs.

use crate::support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use support::{golden, tiny_tokenizer};
use visualglm_train::checkpoint::{MANIFEST_FILE, OPTIMIZER_FILE, STATE_FILE, WEIGHTS_FILE};

const STEPS: u64 = 3;

/// A run of the tiny model whose updates take seconds: 30 micro-batches of 2 each.
fn write_run(dir: &Path, out: &str, steps: u64, save_every: u64) -> PathBuf {
    let data = dir.join("train.json");
    let records = serde_json::json!([
        {"img": golden("images/chelsea.png"), "prompt": "Describe the image.", "label": "a cat on a floor"},
        {"img": golden("images/astronaut.png"), "prompt": "Describe the image.", "label": "an astronaut"},
        {"img": golden("images/camera.png"), "prompt": "Describe the image.", "label": "a man with a camera"},
    ]);
    std::fs::write(&data, records.to_string()).unwrap();
    let toml = format!(
        "data = {:?}\nmodel = {:?}\ntokenizer = {:?}\nout = {:?}\n\
         trainable = [\"image_encoder.glm_proj\", \"image_encoder.qformer\"]\nsteps = {steps}\n\
         grad_accum = 30\nwarmup_steps = 0\nbatch_size = 2\nlr = 0.003\n\
         save_every = {save_every}\nkeep_last = 10\nmax_source_length = 48\n\
         max_target_length = 16\nenglish = true\nexport = false\n",
        data,
        golden("checkpoints/hf"),
        tiny_tokenizer(dir),
        dir.join(out)
    );
    let path = dir.join(format!("{out}.toml"));
    std::fs::write(&path, toml).unwrap();
    path
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaves no run behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `visualglm train --config config` with stderr piped (not a terminal: progress lines, one
/// per update), and a channel of its stderr lines with the time each arrived.
fn spawn(config: &Path) -> (Running, Receiver<(Instant, String)>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_visualglm"))
        .args([
            "train",
            "--device",
            "cpu",
            "--progress-every",
            "0",
            "--config",
        ])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    (Running(child), rx)
}

/// Waits for the stderr line starting with `prefix`; returns when it arrived.
fn wait_for(rx: &Receiver<(Instant, String)>, prefix: &str, seen: &mut Vec<String>) -> Instant {
    loop {
        let (at, line) = rx
            .recv_timeout(Duration::from_secs(300))
            .unwrap_or_else(|_| panic!("no line {prefix:?} in:\n{}", seen.join("\n")));
        seen.push(line.clone());
        if line.starts_with(prefix) {
            return at;
        }
    }
}

fn send(child: &Running, signal: &str) {
    let ok = Command::new("kill")
        .args([signal, &child.0.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {signal} failed");
}

/// Waits for the child to exit; its exit code and the seconds it took.
fn wait_exit(child: &mut Running, since: Instant) -> (Option<i32>, f64) {
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return (status.code(), since.elapsed().as_secs_f64());
        }
        assert!(since.elapsed() < Duration::from_secs(120), "no exit");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn rest(rx: &Receiver<(Instant, String)>, seen: &mut Vec<String>) -> String {
    seen.extend(rx.iter().map(|(_, l)| l));
    seen.join("\n")
}

fn latest(out: &Path) -> String {
    std::fs::read_to_string(out.join("latest"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn losses(out: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

#[test]
#[cfg(unix)]
fn sigterm_mid_update_saves_the_last_update_at_once_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    // Uninterrupted, with a checkpoint at every update; the time of an update from its
    // progress lines.
    let full = write_run(dir.path(), "full", STEPS, 1);
    let (mut child, rx) = spawn(&full);
    let mut seen = Vec::new();
    let first = wait_for(&rx, "step 1/3 loss ", &mut seen);
    let second = wait_for(&rx, "step 2/3 loss ", &mut seen);
    let update = second.duration_since(first).as_secs_f64();
    let log = rest(&rx, &mut seen);
    assert_eq!(child.0.wait().unwrap().code(), Some(0), "{log}");
    assert!(
        seen.iter().any(|l| l.starts_with("step 3/3 loss ")
            && l.contains(" lr ")
            && l.contains(" elapsed 0:")
            && l.ends_with(" eta 0:00:00")),
        "{log}"
    );
    let full_out = dir.path().join("full");

    // The same run saving only at the end, sent SIGTERM as soon as update 1 is reported:
    // update 2 has just started and runs for seconds.
    let cut = write_run(dir.path(), "cut", STEPS, 1000);
    let cut_out = dir.path().join("cut");
    let (mut child, rx) = spawn(&cut);
    let mut seen = Vec::new();
    wait_for(&rx, "step 1/3 loss ", &mut seen);
    let sent = Instant::now();
    send(&child, "-TERM");
    let (code, took) = wait_exit(&mut child, sent);
    let log = rest(&rx, &mut seen);
    eprintln!("SIGTERM to exit: {took:.3} s; one update: {update:.3} s");
    assert_eq!(code, Some(143), "{log}");
    assert!(log.contains("SIGTERM: saved step 1 in "), "{log}");
    // It did not finish update 2 first.
    assert_eq!(latest(&cut_out), "step-1", "{log}");
    assert_eq!(losses(&cut_out).len(), 1, "{log}");
    assert!(
        took < update,
        "took {took:.3} s to exit, one update takes {update:.3} s"
    );
    // The checkpoint is the one the uninterrupted run saved at update 1, byte for byte.
    for file in [WEIGHTS_FILE, OPTIMIZER_FILE, STATE_FILE, MANIFEST_FILE] {
        assert!(
            std::fs::read(cut_out.join("step-1").join(file)).unwrap()
                == std::fs::read(full_out.join("step-1").join(file)).unwrap(),
            "{file} differs from the uninterrupted run's"
        );
    }

    // Resumed (the killed run left no lock behind), it ends where the uninterrupted run did.
    let o = Command::new(env!("CARGO_BIN_EXE_visualglm"))
        .args(["train", "--device", "cpu", "--config"])
        .arg(&cut)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("resuming from step 1"), "{stderr}");
    assert_eq!(losses(&cut_out), losses(&full_out));
    for file in [WEIGHTS_FILE, OPTIMIZER_FILE] {
        assert!(
            std::fs::read(cut_out.join("step-3").join(file)).unwrap()
                == std::fs::read(full_out.join("step-3").join(file)).unwrap(),
            "{file} at the end differs from the uninterrupted run's"
        );
    }
}

#[test]
#[cfg(unix)]
fn a_second_run_on_the_same_out_is_refused_and_ctrl_c_exits_130() {
    let dir = tempfile::tempdir().unwrap();
    // Long enough to be running still when the second run has been refused.
    let config = write_run(dir.path(), "run", 100, 1000);
    let out = dir.path().join("run");
    let (mut child, rx) = spawn(&config);
    let mut seen = Vec::new();
    wait_for(&rx, "step 1/100 loss ", &mut seen);

    let o = Command::new(env!("CARGO_BIN_EXE_visualglm"))
        .args(["train", "--device", "cpu", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} is in use by another training run",
            out.display()
        )),
        "{stderr}"
    );
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "the first run is unaffected"
    );

    let sent = Instant::now();
    send(&child, "-INT");
    let (code, took) = wait_exit(&mut child, sent);
    let log = rest(&rx, &mut seen);
    eprintln!("SIGINT to exit: {took:.3} s");
    assert_eq!(code, Some(130), "{log}");
    // The last update reported before the signal.
    let step = seen
        .iter()
        .filter_map(|l| {
            l.strip_prefix("step ")?
                .split('/')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap();
    assert!(
        log.contains(&format!("SIGINT: saved step {step} in ")),
        "{log}"
    );
    assert_eq!(latest(&out), format!("step-{step}"));
    assert_eq!(losses(&out).len() as u64, step);
}
