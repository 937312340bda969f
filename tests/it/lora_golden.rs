//! LoRA: loading the SAT fine-tune fixture, merging, saving and reloading adapters, against
//! the goldens of the official SAT / HF code (`../shared/golden/lora`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use visualglm::EmbedSpan;

use crate::support::golden;
use candle_core::{DType, Device, Tensor};
use visualglm::checkpoint::blocks_to_interleaved;
use visualglm::lora::{
    self, glm_config, release_config, LoraAdapters, LoraConfig, LoraLoadOptions,
};
use visualglm::{LoadOptions, VisualGlm};
use visualglm_testing::{assert_close, max_abs_diff};

fn finetune_dir() -> PathBuf {
    golden("lora/finetune-visualglm-tiny-lora")
}

fn fixture() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(golden("lora/golden_lora.safetensors"), &Device::Cpu).unwrap()
}

/// The `__metadata__` of a safetensors file.
fn metadata(path: &Path) -> HashMap<String, String> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    serde_json::from_value(header["__metadata__"].clone()).unwrap()
}

fn meta_f64(key: &str) -> f64 {
    metadata(&golden("lora/golden_lora.safetensors"))[key]
        .parse()
        .unwrap()
}

fn ids(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|x| x as u32)
        .collect()
}

/// The prompt logits of the golden inputs.
fn logits(model: &VisualGlm) -> Tensor {
    let g = fixture();
    let image = model.encode_image(&g["pixel_values"]).unwrap();
    let pre_image = meta_f64("pre_image") as usize;
    model
        .prompt_logits(
            &ids(&g["input_ids"]),
            &[EmbedSpan::new(pre_image, image.clone())],
        )
        .unwrap()
}

const QKV0: &str = "transformer.layers.0.attention.query_key_value";
const DENSE0: &str = "transformer.layers.0.attention.dense";

#[test]
fn sat_finetune_splits_into_base_and_adapters_as_the_fixture_says() {
    let ft = lora::load_sat_lora(&finetune_dir(), &LoadOptions::default()).unwrap();
    let g = fixture();
    let cfg = ft.adapters.config();
    assert_eq!(cfg.rank as f64, meta_f64("lora_rank"));
    assert_eq!(cfg.alpha, meta_f64("lora_alpha"));
    assert!(
        (cfg.scaling() - meta_f64("scaling")).abs() < 1e-12,
        "scaling {}",
        cfg.scaling()
    );
    let layers = metadata(&golden("lora/golden_lora.safetensors"))["layer_range"].clone();
    let layers: Vec<usize> = serde_json::from_str(&layers).unwrap();
    for rule in &cfg.targets {
        assert_eq!(rule.layers.as_deref(), Some(layers.as_slice()));
    }
    assert_eq!(ft.adapters.len(), 2);

    assert!(ft
        .base
        .names()
        .iter()
        .all(|n| !n.contains(".original.") && !n.contains("matrix_")));
    for (target, parts) in [(QKV0, 3), (DENSE0, 1)] {
        let ad = ft.adapters.get(target).unwrap();
        assert_eq!(ad.partitions(), parts);
        for k in 0..parts {
            let a = &g[&format!("module.{target}.matrix_A.{k}")];
            let b = &g[&format!("module.{target}.matrix_B.{k}")];
            assert_eq!(max_abs_diff(&ad.a()[k], a), 0.0, "{target} A.{k}");
            assert_eq!(max_abs_diff(&ad.b()[k], b), 0.0, "{target} B.{k}");
        }
        for p in ["weight", "bias"] {
            let ours = ft.base.get(&format!("{target}.{p}")).unwrap();
            let want = &g[&format!("module.{target}.original.{p}")];
            assert_eq!(
                max_abs_diff(ours, want),
                0.0,
                "{target}.{p} (SAT [Q|K|V] rows)"
            );
        }
    }
}

#[test]
fn merged_weights_match_sat_and_hf_layouts_and_unmerge_restores_the_base() {
    let ft = lora::load_sat_lora(&finetune_dir(), &LoadOptions::default()).unwrap();
    let g = fixture();
    let heads = ft.base.config.glm.num_attention_heads;
    let mut merged = ft.base.clone();
    lora::merge_checkpoint(&mut merged, &ft.adapters).unwrap();
    for target in [QKV0, DENSE0] {
        for p in ["weight", "bias"] {
            let name = format!("{target}.{p}");
            let ours = merged.get(&name).unwrap();
            assert_close(&name, ours, &g[&format!("merged_sat.{name}")], 1e-6, 0.0);
            let hf = if target == QKV0 {
                blocks_to_interleaved(ours, heads).unwrap()
            } else {
                ours.clone()
            };
            assert_close(
                &format!("HF {name}"),
                &hf,
                &g[&format!("merged_hf.{name}")],
                1e-6,
                0.0,
            );
        }
    }
    // The update is real (the fixture's B is non-zero), and unmerging takes it back out.
    let w = format!("{QKV0}.weight");
    assert!(max_abs_diff(merged.get(&w).unwrap(), ft.base.get(&w).unwrap()) > 1e-3);
    ft.adapters.unmerge_from(&mut merged.tensors).unwrap();
    for target in [QKV0, DENSE0] {
        let w = format!("{target}.weight");
        assert_close(
            &w,
            merged.get(&w).unwrap(),
            ft.base.get(&w).unwrap(),
            1e-6,
            0.0,
        );
    }
}

#[test]
fn merged_logits_match_native_sat_and_sqrt56_goldens() {
    let ft = lora::load_sat_lora(&finetune_dir(), &LoadOptions::default()).unwrap();
    let g = fixture();
    let cpu = Device::Cpu;
    let native =
        VisualGlm::from_checkpoint_adapted(&ft.base, &ft.adapters, true, &cpu, DType::F32).unwrap();
    let l = logits(&native);
    assert_close(
        "merged native α",
        &l,
        &g["logits_sat_merged_native_alpha_sqrt4"],
        1e-4,
        1e-5,
    );
    assert!(
        max_abs_diff(&l, &g["logits_sat_base_native_alpha_sqrt4"]) > 0.1,
        "adapter has no effect"
    );

    let mut base = ft.base.clone();
    base.config.glm.residual_alpha = Some(56f64.sqrt());
    base.config.glm.rotary_inv_freq_f16 = false;
    let sat56 =
        VisualGlm::from_checkpoint_adapted(&base, &ft.adapters, true, &cpu, DType::F32).unwrap();
    assert_close(
        "merged SAT α=√56",
        &logits(&sat56),
        &g["logits_sat_merged_alpha_sqrt56"],
        1e-4,
        1e-5,
    );

    base.config.glm.rotary_inv_freq_f16 = true;
    let hf =
        VisualGlm::from_checkpoint_adapted(&base, &ft.adapters, true, &cpu, DType::F32).unwrap();
    assert_close(
        "merged HF",
        &logits(&hf),
        &g["logits_hf_merged"],
        1e-4,
        1e-5,
    );
}

#[test]
fn one_call_sat_lora_load_matches_the_merged_golden() {
    let opts = LoraLoadOptions {
        merge: true,
        ..Default::default()
    };
    let model = VisualGlm::load_sat_lora(&finetune_dir(), &Device::Cpu, DType::F32, &opts).unwrap();
    assert_close(
        "merged",
        &logits(&model),
        &fixture()["logits_sat_merged_native_alpha_sqrt4"],
        1e-4,
        1e-5,
    );
}

#[test]
fn saved_adapters_reload_identically_and_apply_to_sat_and_hf_bases() {
    let ft = lora::load_sat_lora(&finetune_dir(), &LoadOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("adapter");
    lora::save_adapters(&ft.adapters, &out, Some(ft.base.family)).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let (back, file_cfg) = lora::load_adapters(&out).unwrap();
    assert_eq!(back.config(), ft.adapters.config());
    assert_eq!(file_cfg.base_family.as_deref(), Some("sat"));
    for (target, ad) in ft.adapters.iter() {
        let b = back.get(target).unwrap();
        for k in 0..ad.partitions() {
            assert_eq!(max_abs_diff(&ad.a()[k], &b.a()[k]), 0.0);
            assert_eq!(max_abs_diff(&ad.b()[k], &b.b()[k]), 0.0);
        }
    }
    let opts = LoraLoadOptions {
        merge: true,
        ..Default::default()
    };
    let g = fixture();
    let cpu = Device::Cpu;
    // SAT base + saved adapter = the fine-tune, to the bit.
    let sat_base = golden("checkpoints/sat/visualglm-tiny");
    let from_file = VisualGlm::load_adapted(&sat_base, &out, &cpu, DType::F32, &opts).unwrap();
    let from_sat = VisualGlm::load_sat_lora(&finetune_dir(), &cpu, DType::F32, &opts).unwrap();
    assert_eq!(max_abs_diff(&logits(&from_file), &logits(&from_sat)), 0.0);
    // HF base (interleaved QKV on disk, HF α and rotary) + the SAT-trained adapter.
    let hf =
        VisualGlm::load_adapted(&golden("checkpoints/hf"), &out, &cpu, DType::F32, &opts).unwrap();
    assert_close(
        "HF base + adapter",
        &logits(&hf),
        &g["logits_hf_merged"],
        1e-4,
        1e-5,
    );
    // The SAT fine-tune directory itself is accepted as an adapter source.
    let hf2 = VisualGlm::load_adapted(
        &golden("checkpoints/hf"),
        &finetune_dir(),
        &cpu,
        DType::F32,
        &opts,
    )
    .unwrap();
    assert_close(
        "HF base + SAT dir",
        &logits(&hf2),
        &g["logits_hf_merged"],
        1e-4,
        1e-5,
    );
}

#[test]
fn release_init_is_a_no_op_until_trained() {
    let ck = visualglm::load(
        &golden("checkpoints/sat/visualglm-tiny"),
        &LoadOptions::default(),
    )
    .unwrap();
    let cfg = glm_config(10, 1.0, Some(vec![0, 1]));
    let adapters = LoraAdapters::init(cfg, &ck.tensors, 42, &Device::Cpu).unwrap();
    assert_eq!(adapters.len(), 4);
    let sat = candle_core::safetensors::load(golden("model/golden_sat.safetensors"), &Device::Cpu)
        .unwrap();
    let model =
        VisualGlm::from_checkpoint_adapted(&ck, &adapters, true, &Device::Cpu, DType::F32).unwrap();
    assert_close(
        "B = 0 adapter",
        &logits(&model),
        &sat["logits_native_alpha_sqrt4"],
        1e-4,
        1e-5,
    );
    assert!((release_config().scaling() - 0.1).abs() < 1e-12);
}

#[test]
fn image_encoder_linears_can_be_adapted_and_merged() {
    use visualglm::lora::{LoraAdapter, TargetRule, QKV, VIT_LAYERS};
    let ck = visualglm::load(
        &golden("checkpoints/sat/visualglm-tiny"),
        &LoadOptions::default(),
    )
    .unwrap();
    let cfg = LoraConfig {
        rank: 2,
        alpha: 2.0,
        dropout: 0.0,
        targets: vec![TargetRule::new(VIT_LAYERS, QKV, 3, Some(vec![1]))],
    };
    let mut adapters = LoraAdapters::init(cfg, &ck.tensors, 7, &Device::Cpu).unwrap();
    let target = "image_encoder.vit.transformer.layers.1.attention.query_key_value";
    assert_eq!(
        adapters.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        [target]
    );
    let g = fixture();
    let cpu = Device::Cpu;
    let base = VisualGlm::from_checkpoint_adapted(&ck, &adapters, true, &cpu, DType::F32).unwrap();
    let plain = base.encode_image(&g["pixel_values"]).unwrap();
    // Make B non-zero: the ViT output must move.
    let ad = adapters.get(target).unwrap().clone();
    let b: Vec<Tensor> = ad
        .b()
        .iter()
        .map(|b| (b.ones_like().unwrap() * 0.05).unwrap())
        .collect();
    adapters
        .insert(
            target,
            LoraAdapter::new(target, ad.a().to_vec(), b, ad.scaling()).unwrap(),
        )
        .unwrap();
    let tuned = VisualGlm::from_checkpoint_adapted(&ck, &adapters, true, &cpu, DType::F32).unwrap();
    let moved = tuned.encode_image(&g["pixel_values"]).unwrap();
    assert!(max_abs_diff(&plain, &moved) > 1e-3);
}
