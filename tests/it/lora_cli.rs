//! `visualglm lora extract` / `merge` end to end against the LoRA goldens.

use std::path::Path;
use std::process::Command;
use visualglm::EmbedSpan;

use crate::support::golden;
use candle_core::{DType, Device};
use visualglm::VisualGlm;

fn visualglm(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_visualglm"))
        .args(args)
        .output()
        .unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Max |Δ| between the golden prompt logits `key` and the model at `file`.
fn logits_diff(file: &Path, key: &str) -> f32 {
    let g = candle_core::safetensors::load(golden("lora/golden_lora.safetensors"), &Device::Cpu)
        .unwrap();
    let model = VisualGlm::load(file, &Device::Cpu, DType::F32, &Default::default()).unwrap();
    let image = model.encode_image(&g["pixel_values"]).unwrap();
    let ids: Vec<u32> = g["input_ids"]
        .flatten_all()
        .unwrap()
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|x| x as u32)
        .collect();
    let l = model
        .prompt_logits(&ids, &[EmbedSpan::new(2, image.clone())])
        .unwrap();
    visualglm_testing::max_abs_diff(&l, &g[key])
}

#[test]
fn merge_of_the_sat_finetune_reproduces_the_merged_golden() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("merged.safetensors");
    let ft = golden("lora/finetune-visualglm-tiny-lora");
    let o = visualglm(&["lora", "merge", "--lora", path(&ft), "--out", path(&out)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let d = logits_diff(&out, "logits_sat_merged_native_alpha_sqrt4");
    assert!(d <= 1e-4, "max|Δ| {d}");
}

#[test]
fn extracted_adapter_merges_into_the_hf_base() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = dir.path().join("adapter");
    let ft = golden("lora/finetune-visualglm-tiny-lora");
    let o = visualglm(&[
        "lora",
        "extract",
        "--lora",
        path(&ft),
        "--out",
        path(&adapter),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(adapter.join("adapter_config.json").is_file());

    let out = dir.path().join("merged-hf.safetensors");
    let base = golden("checkpoints/hf");
    let args = [
        "lora",
        "merge",
        "--model",
        path(&base),
        "--lora",
        path(&adapter),
    ];
    let o = visualglm(&[&args[..], &["--out", path(&out)]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let d = logits_diff(&out, "logits_hf_merged");
    assert!(d <= 1e-4, "max|Δ| {d}");

    // An adapter directory alone is not enough: it has no base weights.
    let o = visualglm(&[
        "lora",
        "merge",
        "--lora",
        path(&adapter),
        "--out",
        path(&out),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--model"));
}
