//! `visualglm selftest`: the golden model's stages checked on a device, with a verdict that
//! fails when a stage is off.

use std::path::Path;
use std::process::Command;

use crate::support::golden;

fn selftest(golden_dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_visualglm"))
        .args(["selftest", "--device", "cpu", "--golden"])
        .arg(golden_dir)
        .output()
        .expect("visualglm runs")
}

#[test]
fn the_golden_model_passes_on_the_cpu() {
    let out = selftest(&golden(""));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for stage in [
        "vit_out",
        "glm_layer_1",
        "logits",
        "gen_ids (8 of 8",
        "gen_step_logits",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(stage))
            .unwrap_or_else(|| panic!("no {stage} line in {stdout}"));
        assert!(line.ends_with("\tok"), "{line}");
    }
    assert!(
        stdout.contains("all 10 stages within tolerance"),
        "{stdout}"
    );
}

#[test]
fn a_stage_off_by_more_than_its_tolerance_fails_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    for f in ["config.json", "tiny_visualglm_hf.safetensors"] {
        std::fs::copy(golden(&format!("model/{f}")), model.join(f)).unwrap();
    }
    // The recorded logits moved by 1e-3 (ten times the tolerance), everything else as recorded.
    let mut g = crate::support::fixture("model/golden_hf.safetensors");
    let logits = g.remove("logits").unwrap();
    g.insert("logits".into(), (logits + 1e-3).unwrap());
    candle_core::safetensors::save(&g, model.join("golden_hf.safetensors")).unwrap();
    let out = selftest(dir.path());
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("logits") && l.ends_with("FAILED")),
        "{stdout}"
    );
    assert!(
        stderr.contains("1 of 10 stages outside their tolerance: logits"),
        "{stderr}"
    );
}

#[test]
fn a_missing_golden_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = selftest(&dir.path().join("nowhere"));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: loading "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
