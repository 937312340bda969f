//! LoRA files that do not fit: every error names the file or tensor at fault.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::support::golden;
use candle_core::{DType, Device, Tensor};
use visualglm::lora::{self, glm_config, LoraAdapters, LoraError, LoraLoadOptions};
use visualglm::{LoadOptions, QkvLayout, VisualGlm};

fn sat_base() -> PathBuf {
    golden("checkpoints/sat/visualglm-tiny")
}

fn merged() -> LoraLoadOptions {
    LoraLoadOptions {
        merge: true,
        ..Default::default()
    }
}

/// A fake base: GLM layers `0..layers` with hidden width `h`.
fn fake_base(layers: usize, h: usize) -> HashMap<String, Tensor> {
    let mut m = HashMap::new();
    for i in 0..layers {
        let p = format!("transformer.layers.{i}.attention");
        let qkv = Tensor::zeros((3 * h, h), DType::F32, &Device::Cpu).unwrap();
        let dense = Tensor::zeros((h, h), DType::F32, &Device::Cpu).unwrap();
        m.insert(format!("{p}.query_key_value.weight"), qkv);
        m.insert(format!("{p}.dense.weight"), dense);
    }
    m
}

fn save(adapters: &LoraAdapters, dir: &Path) -> PathBuf {
    let out = dir.join("adapter");
    lora::save_adapters(adapters, &out, None).unwrap();
    out
}

fn load_err(adapter: &Path) -> String {
    let err = VisualGlm::load_adapted(&sat_base(), adapter, &Device::Cpu, DType::F32, &merged())
        .unwrap_err();
    err.to_string()
}

#[test]
fn adapter_without_config_names_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let ad = LoraAdapters::init(
        glm_config(2, 1.0, Some(vec![0])),
        &fake_base(2, 64),
        1,
        &Device::Cpu,
    )
    .unwrap();
    let out = save(&ad, dir.path());
    std::fs::remove_file(out.join(lora::ADAPTER_CONFIG)).unwrap();
    let msg = load_err(&out);
    assert!(msg.contains(lora::ADAPTER_CONFIG), "{msg}");
}

#[test]
fn adapter_for_another_width_names_the_module_and_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let ad = LoraAdapters::init(
        glm_config(2, 1.0, Some(vec![0])),
        &fake_base(2, 32),
        1,
        &Device::Cpu,
    )
    .unwrap();
    let msg = load_err(&save(&ad, dir.path()));
    assert!(msg.contains("transformer.layers.0.attention."), "{msg}");
    assert!(
        msg.contains("[64, 64]") || msg.contains("[192, 64]"),
        "{msg}"
    );
}

#[test]
fn adapter_for_a_missing_layer_names_the_base_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let ad = LoraAdapters::init(
        glm_config(2, 1.0, Some(vec![5])),
        &fake_base(6, 64),
        1,
        &Device::Cpu,
    )
    .unwrap();
    let msg = load_err(&save(&ad, dir.path()));
    assert!(
        msg.contains("transformer.layers.5.attention.dense.weight"),
        "{msg}"
    );
}

#[test]
fn rank_in_config_disagreeing_with_tensors_names_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let ad = LoraAdapters::init(
        glm_config(2, 1.0, Some(vec![0])),
        &fake_base(2, 64),
        1,
        &Device::Cpu,
    )
    .unwrap();
    let out = save(&ad, dir.path());
    let path = out.join(lora::ADAPTER_CONFIG);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"rank\": 2", "\"rank\": 3");
    std::fs::write(&path, text).unwrap();
    let msg = load_err(&out);
    assert!(msg.contains("lora_A.0") && msg.contains("rank"), "{msg}");
}

#[test]
fn malformed_config_and_stray_tensors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ad = LoraAdapters::init(
        glm_config(2, 1.0, Some(vec![0])),
        &fake_base(2, 64),
        1,
        &Device::Cpu,
    )
    .unwrap();
    let out = save(&ad, dir.path());
    let cfg = out.join(lora::ADAPTER_CONFIG);
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, "{\"format\": \"something-else\"}").unwrap();
    let msg = load_err(&out);
    assert!(msg.contains(&cfg.display().to_string()), "{msg}");
    std::fs::write(&cfg, good).unwrap();

    let weights = out.join(lora::ADAPTER_WEIGHTS);
    let mut tensors = candle_core::safetensors::load(&weights, &Device::Cpu).unwrap();
    tensors.insert(
        "transformer.layers.0.attention.dense.weight".into(),
        Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, &weights).unwrap();
    let msg = load_err(&out);
    assert!(
        msg.contains("transformer.layers.0.attention.dense.weight")
            && msg.contains(lora::ADAPTER_WEIGHTS),
        "{msg}"
    );
}

/// A copy of the SAT fine-tune fixture whose `model_config.json` is edited by `edit`.
fn sat_copy(dir: &Path, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let src = golden("lora/finetune-visualglm-tiny-lora");
    let dst = dir.join("ft");
    std::fs::create_dir_all(dst.join("300")).unwrap();
    std::fs::copy(src.join("latest"), dst.join("latest")).unwrap();
    let pt = "300/mp_rank_00_model_states.pt";
    std::fs::copy(src.join(pt), dst.join(pt)).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("model_config.json")).unwrap())
            .unwrap();
    edit(&mut cfg);
    std::fs::write(dst.join("model_config.json"), cfg.to_string()).unwrap();
    dst
}

#[test]
fn sat_finetune_config_problems_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let no_lora = sat_copy(dir.path(), |c| c["use_lora"] = false.into());
    let err = lora::load_sat_lora(&no_lora, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("use_lora") && err.contains("model_config.json"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let other_layer = sat_copy(dir.path(), |c| c["layer_range"] = serde_json::json!([1]));
    let err = lora::load_sat_lora(&other_layer, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("transformer.layers.0.attention.")
            && err.contains("mp_rank_00_model_states.pt"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let wrong_rank = sat_copy(dir.path(), |c| c["lora_rank"] = 8.into());
    let err = lora::load_sat_lora(&wrong_rank, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("matrix_A.0") && err.contains("rank 4"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let out_of_range = sat_copy(dir.path(), |c| c["layer_range"] = serde_json::json!([0, 7]));
    let err = lora::load_sat_lora(&out_of_range, &LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("layer 7"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let alpha = sat_copy(dir.path(), |c| c["lora_alpha"] = 2.into());
    let ft = lora::load_sat_lora(&alpha, &LoadOptions::default()).unwrap();
    assert_eq!(ft.adapters.config().scaling(), 0.5);
}

#[test]
fn interleaved_sat_lora_is_refused() {
    let opts = LoadOptions {
        sat_qkv_layout: Some(QkvLayout::Interleaved),
        ..Default::default()
    };
    let err = lora::load_sat_lora(&golden("lora/finetune-visualglm-tiny-lora"), &opts).unwrap_err();
    assert!(matches!(err, LoraError::Unsupported(_)), "{err}");
}
