//! `visualglm inspect` end to end on the tiny golden checkpoints.

use std::process::Command;

use crate::support::golden;
use candle_core::Device;
use visualglm_testing::max_abs_diff;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_visualglm"))
}

fn golden_ids() -> (String, Vec<i64>) {
    let g = candle_core::safetensors::load(golden("model/golden_hf.safetensors"), &Device::Cpu)
        .unwrap();
    let ids: Vec<i64> = g["input_ids"].flatten_all().unwrap().to_vec1().unwrap();
    let gen: Vec<i64> = g["gen_ids"].to_vec1().unwrap();
    let csv = ids
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    (csv, gen)
}

#[test]
fn inspect_writes_every_stage_matching_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stages.safetensors");
    let (ids, gen) = golden_ids();
    let status = bin()
        .args(["inspect", "--model"])
        .arg(golden("checkpoints/hf"))
        .arg("--image")
        .arg(golden("images/chelsea.png"))
        .args([
            "--input-ids",
            &ids,
            "--pre-image",
            "2",
            "--generate",
            "8",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let got = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    let g = candle_core::safetensors::load(golden("model/golden_hf.safetensors"), &Device::Cpu)
        .unwrap();
    for (name, atol) in [
        ("pixel_values", 1e-6),
        ("vit_out", 5e-5),
        ("qformer_out", 5e-5),
        ("image_embeds", 5e-5),
        ("logits", 1e-4),
    ] {
        let d = max_abs_diff(&got[name], &g[name]);
        assert!(d <= atol, "{name}: max|Δ| {d} > {atol}");
    }
    let got_gen: Vec<i64> = got["gen_ids"].to_vec1().unwrap();
    assert_eq!(got_gen, gen);
}

#[test]
fn inspect_reports_bad_inputs_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.safetensors");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--image".into(),
                golden("images/bad_truncated_rocket.jpg")
                    .display()
                    .to_string(),
            ],
            "truncated",
        ),
        (
            vec!["--image".into(), "/nonexistent/cat.png".into()],
            "cat.png",
        ),
    ];
    for (extra, needle) in cases {
        let o = bin()
            .args(["inspect", "--model"])
            .arg(golden("checkpoints/hf"))
            .args(["--input-ids", "11,12", "--out"])
            .arg(&out)
            .args(&extra)
            .output()
            .unwrap();
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.to_lowercase().contains(needle), "stderr: {err}");
        assert!(!err.contains("panicked"), "stderr: {err}");
        assert!(!out.exists(), "no output on failure");
    }
    // Ids beyond the vocabulary.
    let o = bin()
        .args(["inspect", "--model"])
        .arg(golden("checkpoints/hf"))
        .args(["--input-ids", "5,99999", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("99999"));
    // A model directory without weights.
    let empty = tempfile::tempdir().unwrap();
    let o = bin()
        .args(["inspect", "--model"])
        .arg(empty.path())
        .args(["--input-ids", "5", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("panicked") && err.starts_with("error:"),
        "stderr: {err}"
    );
}

#[test]
fn text_only_inspect_matches_text_only_logits() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.safetensors");
    let g = candle_core::safetensors::load(golden("model/golden_hf.safetensors"), &Device::Cpu)
        .unwrap();
    let ids: Vec<i64> = g["text_only_input_ids"]
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let csv = ids
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let o = bin()
        .args(["inspect", "--model"])
        .arg(golden("checkpoints/sat/visualglm-tiny"))
        .args(["--input-ids", &csv, "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    assert!(!got.contains_key("vit_out"));
    // The SAT checkpoint runs with SAT's own α, so it differs from the HF golden …
    let d = max_abs_diff(&got["logits"], &g["text_only_logits"]);
    assert!(d > 1.0, "SAT α must differ from HF α, got max|Δ| {d}");
}
