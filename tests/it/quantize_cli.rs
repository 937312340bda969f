//! `visualglm quantize` and `visualglm inspect --quantize` end to end on the tiny checkpoint.

use std::process::Command;

use crate::support::golden;
use candle_core::{DType, Device, Tensor};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_visualglm"))
}

fn prompt_csv() -> String {
    let g = candle_core::safetensors::load(golden("model/golden_hf.safetensors"), &Device::Cpu)
        .unwrap();
    let ids: Vec<i64> = g["input_ids"].flatten_all().unwrap().to_vec1().unwrap();
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs `inspect` on `model` (extra args appended) and returns its logits.
fn inspect_logits(model: &std::path::Path, extra: &[&str], out: &std::path::Path) -> Tensor {
    let status = bin()
        .args(["inspect", "--model"])
        .arg(model)
        .args(["--input-ids", &prompt_csv(), "--out"])
        .arg(out)
        .args(extra)
        .status()
        .unwrap();
    assert!(status.success(), "inspect failed on {}", model.display());
    let mut t = candle_core::safetensors::load(out, &Device::Cpu).unwrap();
    t.remove("logits").unwrap().to_dtype(DType::F32).unwrap()
}

#[test]
fn quantize_then_inspect_gguf_matches_inspect_quantize() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("tiny.gguf");
    let out = bin()
        .args(["quantize", "--model"])
        .arg(golden("checkpoints/hf"))
        .arg("--out")
        .arg(&gguf)
        .args(["--type", "q8_0", "--dense", "f32"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("q8_0"), "{stderr}");
    assert!(gguf.is_file());

    let from_file = inspect_logits(&gguf, &[], &dir.path().join("a.safetensors"));
    let in_memory = inspect_logits(
        &golden("checkpoints/hf"),
        &["--quantize", "q8_0"],
        &dir.path().join("b.safetensors"),
    );
    let d = visualglm_testing::max_abs_diff(&from_file, &in_memory);
    assert_eq!(d, 0.0);

    // --quantize on the quantized GGUF: the stored type is kept (and reported as what it is),
    // another type is refused instead of being logged as applied.
    let same = inspect_logits(
        &gguf,
        &["--quantize", "q8_0"],
        &dir.path().join("c.safetensors"),
    );
    assert_eq!(visualglm_testing::max_abs_diff(&same, &from_file), 0.0);
    let out = bin()
        .args(["inspect", "--model"])
        .arg(&gguf)
        .args(["--input-ids", &prompt_csv(), "--quantize", "q4_0", "--out"])
        .arg(dir.path().join("d.safetensors"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("already quantized as q8_0") && stderr.contains("q4_0"),
        "{stderr}"
    );
    assert!(!dir.path().join("d.safetensors").exists());
}

#[test]
fn bad_quantize_type_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["quantize", "--model"])
        .arg(golden("checkpoints/hf"))
        .arg("--out")
        .arg(dir.path().join("x.gguf"))
        .args(["--type", "int3"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("int3") && stderr.contains("q4k"),
        "{stderr}"
    );
    assert!(!dir.path().join("x.gguf").exists());
}
