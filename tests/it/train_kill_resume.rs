//! A training run killed with SIGKILL resumes from its last checkpoint and reaches the same
//! losses as an uninterrupted run.

use crate::support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{golden, tiny_tokenizer};

fn write_run(dir: &std::path::Path, out: &str, steps: u64) -> std::path::PathBuf {
    let data = dir.join("train.json");
    let records = serde_json::json!([
        {"img": golden("images/chelsea.png"), "prompt": "Describe the image.", "label": "a cat on a floor"},
        {"img": golden("images/astronaut.png"), "prompt": "Describe the image.", "label": "an astronaut"},
        {"img": golden("images/camera.png"), "prompt": "Describe the image.", "label": "a man with a camera"},
    ]);
    std::fs::write(&data, records.to_string()).unwrap();
    let toml = format!(
        "data = {:?}\nmodel = {:?}\ntokenizer = {:?}\nout = {:?}\ntrainable = [\"image_encoder.glm_proj\", \"image_encoder.qformer\"]\nsteps = {steps}\nwarmup_steps = 0\nbatch_size = 2\nlr = 0.003\nsave_every = 1\nmax_source_length = 48\nmax_target_length = 16\nenglish = true\n",
        data,
        golden("checkpoints/hf"),
        tiny_tokenizer(dir),
        dir.join(out)
    );
    let path = dir.join(format!("{out}.toml"));
    std::fs::write(&path, toml).unwrap();
    path
}

fn losses(metrics: &std::path::Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(metrics)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

/// Runs `visualglm train --config config` to the end and returns its stderr.
fn train(config: &std::path::Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_visualglm"))
        .args(["train", "--device", "cpu", "--config"])
        .arg(config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{stderr}");
    stderr
}

/// The step of the checkpoint `out/latest` names, if any.
fn latest_step(out: &std::path::Path) -> Option<u64> {
    let name = std::fs::read_to_string(out.join("latest")).ok()?;
    name.trim().strip_prefix("step-")?.parse().ok()
}

/// Asserts the log holds each step once, in order, with the uninterrupted run's losses.
fn assert_same_log(got: &[(u64, f64)], want: &[(u64, f64)], what: &str) {
    let steps: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    let want_steps: Vec<u64> = want.iter().map(|(s, _)| *s).collect();
    assert_eq!(steps, want_steps, "{what}: steps logged twice or missing");
    assert_eq!(got, want, "{what}");
}

const STEPS: u64 = 24;

#[test]
fn sigkill_after_a_checkpoint_then_resume_matches_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let full = write_run(dir.path(), "full", STEPS);
    train(&full);
    let want = losses(&dir.path().join("full/metrics.jsonl"));
    assert_eq!(want.len(), STEPS as usize);

    // Kill the second run once it has saved the checkpoint of step 3 (a run of 24 steps is
    // then still going; that is checked, not assumed).
    let killed = write_run(dir.path(), "killed", STEPS);
    let out = dir.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_visualglm"))
        .args(["train", "--device", "cpu", "--config"])
        .arg(&killed)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while latest_step(&out).is_none_or(|s| s < 3) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before step 3"
        );
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no checkpoint of step 3"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let running = child.try_wait().unwrap().is_none();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = latest_step(&out).unwrap();
    assert!(
        running && at_kill < STEPS,
        "the kill landed after the run ended"
    );

    let stderr = train(&killed);
    assert!(
        stderr.contains(&format!("resuming from step {at_kill}")),
        "{stderr}"
    );
    assert_same_log(&losses(&out.join("metrics.jsonl")), &want, "after SIGKILL");
}

#[test]
fn resume_drops_the_metrics_logged_after_the_checkpoint() {
    // The state a kill leaves when it lands between checkpoints, made exactly: a finished
    // run's checkpoints rewound to step 3, its log holding later steps and a cut-off line.
    let dir = tempfile::tempdir().unwrap();
    let steps = 6;
    let config = write_run(dir.path(), "run", steps);
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str("keep_last = 10\n");
    std::fs::write(&config, toml).unwrap();
    train(&config);
    let out = dir.path().join("run");
    let metrics = out.join("metrics.jsonl");
    let want = losses(&metrics);
    assert_eq!(want.len(), steps as usize);
    for step in 4..=steps {
        let _ = std::fs::remove_dir_all(out.join(format!("step-{step}")));
    }
    std::fs::write(out.join("latest"), "step-3").unwrap();
    let mut log = std::fs::read_to_string(&metrics).unwrap();
    log.push_str("{\"step\": 7, \"lo");
    std::fs::write(&metrics, log).unwrap();

    let stderr = train(&config);
    assert!(stderr.contains("resuming from step 3"), "{stderr}");
    assert_same_log(&losses(&metrics), &want, "after a rewind to step 3");

    // A run killed before its first checkpoint starts a fresh log.
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(&metrics, "{\"step\": 1, \"loss\": 9.0}\n").unwrap();
    let stderr = train(&config);
    assert!(!stderr.contains("resuming"), "{stderr}");
    assert_same_log(&losses(&metrics), &want, "fresh run over an old log");
}

#[test]
fn training_is_identical_across_thread_counts() {
    // The README's claim: the same run on 1 and 3 threads logs the same losses bit for bit and
    // ends with the same weights.
    let dir = tempfile::tempdir().unwrap();
    let mut logs = Vec::new();
    let mut weights = Vec::new();
    for threads in ["1", "3"] {
        let name = format!("threads-{threads}");
        let config = write_run(dir.path(), &name, 4);
        let o = Command::new(env!("CARGO_BIN_EXE_visualglm"))
            .env("RAYON_NUM_THREADS", threads)
            .args(["train", "--device", "cpu", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = dir.path().join(&name);
        // Every field but the process's peak memory must be identical.
        let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                let rss = v.as_object_mut().unwrap().remove("peak_rss_mib");
                assert!(rss.is_some_and(|r| r.as_f64().unwrap() > 0.0), "{l}");
                v
            })
            .collect();
        logs.push(lines);
        weights.push(
            std::fs::read(
                out.join("step-4")
                    .join(visualglm_train::checkpoint::WEIGHTS_FILE),
            )
            .unwrap(),
        );
    }
    assert_eq!(logs[0].len(), 4);
    assert_eq!(logs[0], logs[1], "losses differ between 1 and 3 threads");
    assert!(
        weights[0] == weights[1],
        "weights differ between 1 and 3 threads"
    );
}
