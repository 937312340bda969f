//! `save_canonical` / `visualglm convert` round trips.

use crate::checkpoint_common;

use std::path::Path;

use candle_core::DType;
use checkpoint_common::{assert_matches_reference, golden, reference, values};
use visualglm::checkpoint::{self, st, CheckpointFamily, LoadOptions, SaveOptions};

fn save(ck: &checkpoint::Checkpoint, out: &Path, dtype: Option<DType>) -> u64 {
    let mut written = 0u64;
    let mut calls = 0usize;
    checkpoint::save_canonical(ck, out, &SaveOptions { dtype }, &mut |_, n| {
        written += n;
        calls += 1;
    })
    .unwrap();
    assert_eq!(calls, ck.tensors.len(), "one progress call per tensor");
    written
}

#[test]
fn hf_round_trip_keeps_names_dtypes_layout_and_config() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("model.safetensors");
    let ck = checkpoint::load(&golden().join("checkpoints/hf"), &LoadOptions::default()).unwrap();
    let written = save(&ck, &out, None);
    assert!(written > 0 && written < std::fs::metadata(&out).unwrap().len());

    let meta = st::read_metadata(&out).unwrap();
    assert_eq!(meta["format"], "visualglm-rs");
    assert_eq!(meta["qkv_layout"], "blocks");
    assert_eq!(meta["family"], "hf");
    let cfg: serde_json::Value = serde_json::from_str(&meta["config"]).unwrap();
    assert!(cfg["eva_config"].is_object() && cfg["qformer_config"].is_object());

    // Loaded back with the config from the metadata only (no config.json beside it).
    let back = checkpoint::load(&out, &LoadOptions::default()).unwrap();
    assert_eq!(back.family, CheckpointFamily::Hf);
    assert_eq!(back.config, ck.config);
    assert_eq!(back.tensors.len(), ck.tensors.len());
    for (name, t) in &ck.tensors {
        let b = &back.tensors[name];
        assert_eq!(b.dtype(), t.dtype(), "{name} dtype");
        assert!(values(b) == values(t), "{name} changed");
    }
    // Recognised as already-Blocks: not permuted a second time.
    assert_matches_reference(&back);
}

#[test]
fn sat_round_trip_with_dtype_conversion() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sat-f32.safetensors");
    let ck = checkpoint::load(
        &golden().join("checkpoints/sat/visualglm-tiny"),
        &LoadOptions::default(),
    )
    .unwrap();
    save(&ck, &out, Some(DType::F32));
    let back = checkpoint::load(&out, &LoadOptions::default()).unwrap();
    assert_eq!(back.family, CheckpointFamily::Sat);
    assert_eq!(back.config.glm.residual_alpha, Some(2.0));
    assert!(back.tensors.values().all(|t| t.dtype() == DType::F32));
    assert_matches_reference(&back);

    // The raw file holds canonical names and block-layout QKV rows.
    let raw = candle_core::safetensors::load(&out, &candle_core::Device::Cpu).unwrap();
    let name = "transformer.layers.1.attention.query_key_value.weight";
    assert!(values(&raw[name]) == values(&reference()[name]));
    assert!(raw.keys().all(|k| !k.starts_with("mixins.")));
}

#[test]
fn failed_write_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = checkpoint::load(
        &golden().join("model/tiny_visualglm_hf.safetensors"),
        &LoadOptions::default(),
    )
    .unwrap();
    let out = tmp.path().join("no/such/dir/model.safetensors");
    let err =
        checkpoint::save_canonical(&ck, &out, &SaveOptions::default(), &mut |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("no/such/dir"), "{err}");

    let good = tmp.path().join("m.safetensors");
    save(&ck, &good, Some(DType::BF16));
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["m.safetensors".to_string()],
        "temp file left behind"
    );
}

#[test]
fn cli_convert_writes_a_loadable_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cli.safetensors");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_visualglm"))
        .arg("convert")
        .arg("--model")
        .arg(golden().join("model/tiny_visualglm_sat.safetensors"))
        .arg("--config")
        .arg(golden().join("model/config.json"))
        .arg("--out")
        .arg(&out)
        .args(["--dtype", "f16"])
        .status()
        .unwrap();
    assert!(status.success());
    let back = checkpoint::load(&out, &LoadOptions::default()).unwrap();
    assert_eq!(back.family, CheckpointFamily::Sat);
    assert!(back.tensors.values().all(|t| t.dtype() == DType::F16));
    assert_matches_reference(&back);

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_visualglm"))
        .arg("convert")
        .arg("--model")
        .arg(tmp.path().join("missing"))
        .arg("--out")
        .arg(tmp.path().join("x.safetensors"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("missing"));
}
