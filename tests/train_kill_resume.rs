//! A training run killed with SIGKILL resumes from its last checkpoint and reaches the same
//! losses as an uninterrupted run.

mod support;

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

#[test]
fn sigkill_mid_run_then_resume_matches_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let steps = 8;
    let bin = env!("CARGO_BIN_EXE_visualglm");
    let full = write_run(dir.path(), "full", steps);
    let o = Command::new(bin)
        .args(["train", "--device", "cpu", "--config"])
        .arg(&full)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = losses(&dir.path().join("full/metrics.jsonl"));
    assert_eq!(want.len(), steps as usize);

    // Kill the second run as soon as it has logged a few steps (the step the kill lands in
    // depends on timing: any point must be safe).
    let killed = write_run(dir.path(), "killed", steps);
    let mut child = Command::new(bin)
        .args(["train", "--device", "cpu", "--config"])
        .arg(&killed)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let metrics = dir.path().join("killed/metrics.jsonl");
    let start = Instant::now();
    while losses(&metrics).len() < 3 && start.elapsed() < Duration::from_secs(120) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = losses(&metrics).len();
    assert!(before >= 1, "the run logged no step before being killed");

    let o = Command::new(bin)
        .args(["train", "--device", "cpu", "--config"])
        .arg(&killed)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Steps logged after the last checkpoint of the killed run are redone; the last record of
    // each step is the one that counts.
    let mut by_step = std::collections::BTreeMap::new();
    for (step, loss) in losses(&metrics) {
        by_step.insert(step, loss);
    }
    let got: Vec<(u64, f64)> = by_step.into_iter().collect();
    assert_eq!(got, want, "killed after {before} logged steps");
}
