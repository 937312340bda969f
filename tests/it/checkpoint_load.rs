//! Every published form of the tiny VisualGLM loads to the same canonical tensors.

use crate::checkpoint_common;

use candle_core::DType;
use checkpoint_common::{assert_matches_reference, expected_shapes, golden, values};
use visualglm::checkpoint::{
    self, blocks_to_interleaved, interleaved_to_blocks, validate, CheckpointFamily, LoadOptions,
    QkvLayout,
};

fn opts_with_config() -> LoadOptions {
    LoadOptions {
        config_path: Some(golden().join("model/config.json")),
        ..LoadOptions::default()
    }
}

#[test]
fn hf_sharded_pickles() {
    let ck = checkpoint::load(&golden().join("checkpoints/hf"), &LoadOptions::default()).unwrap();
    assert_eq!(ck.family, CheckpointFamily::Hf);
    assert_eq!(ck.config.glm.residual_alpha, Some(56f64.sqrt()));
    assert!(ck.config.glm.rotary_inv_freq_f16);
    assert_eq!(ck.config.glm.num_layers, 2);
    assert_eq!(ck.config.image_length, 32);
    // Stored dtypes are kept: GLM shard f16, vision shard f32.
    assert_eq!(
        ck.tensors["transformer.word_embeddings.weight"].dtype(),
        DType::F16
    );
    assert_eq!(
        ck.tensors["image_encoder.glm_proj.weight"].dtype(),
        DType::F32
    );
    assert!(ck
        .source("lm_head.weight")
        .ends_with("pytorch_model-00001-of-00002.bin"));
    assert!(ck
        .source("image_encoder.glm_proj.bias")
        .ends_with("pytorch_model-00002-of-00002.bin"));
    assert!(ck.tensors.keys().all(|k| !k.ends_with("inv_freq")));
    assert_matches_reference(&ck);
    validate(&ck, &expected_shapes()).unwrap();
}

#[test]
fn hf_index_file_path_works_too() {
    let index = golden().join("checkpoints/hf/pytorch_model.bin.index.json");
    let ck = checkpoint::load(&index, &LoadOptions::default()).unwrap();
    assert_matches_reference(&ck);
}

#[test]
fn sat_directory() {
    let dir = golden().join("checkpoints/sat/visualglm-tiny");
    let ck = checkpoint::load(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(ck.family, CheckpointFamily::Sat);
    assert_eq!(ck.config.glm.residual_alpha, Some(2.0));
    assert!(!ck.config.glm.rotary_inv_freq_f16);
    assert!(ck.tensors.values().all(|t| t.dtype() == DType::F16));
    assert!(ck
        .source("lm_head.weight")
        .ends_with("1/mp_rank_00_model_states.pt"));
    assert_matches_reference(&ck);
    validate(&ck, &expected_shapes()).unwrap();
}

#[test]
fn sat_model_file_directly() {
    let file = golden().join("checkpoints/sat/visualglm-tiny/1/mp_rank_00_model_states.pt");
    let ck = checkpoint::load(&file, &LoadOptions::default()).unwrap();
    assert_eq!(ck.family, CheckpointFamily::Sat);
    assert_matches_reference(&ck);
}

#[test]
fn hf_safetensors_with_config_beside() {
    // golden/model/config.json sits beside the file (it has an extra `note` key).
    let file = golden().join("model/tiny_visualglm_hf.safetensors");
    let ck = checkpoint::load(&file, &LoadOptions::default()).unwrap();
    assert_eq!(ck.family, CheckpointFamily::Hf);
    assert_eq!(ck.config.glm.residual_alpha, Some(56f64.sqrt()));
    assert_matches_reference(&ck);
}

#[test]
fn sat_safetensors_with_explicit_config() {
    let file = golden().join("model/tiny_visualglm_sat.safetensors");
    let ck = checkpoint::load(&file, &opts_with_config()).unwrap();
    // Names decide the family even though the config file is HF-style.
    assert_eq!(ck.family, CheckpointFamily::Sat);
    assert_eq!(ck.config.glm.residual_alpha, Some(2.0));
    assert_matches_reference(&ck);
}

/// The layout test: the SAT file's GLM QKV rows are the HF rows permuted to blocks.
#[test]
fn sat_qkv_equals_permuted_hf_qkv() {
    let st = |f: &str| {
        candle_core::safetensors::load(golden().join("model").join(f), &candle_core::Device::Cpu)
            .unwrap()
    };
    let hf = st("tiny_visualglm_hf.safetensors");
    let sat = st("tiny_visualglm_sat.safetensors");
    for layer in 0..2 {
        for part in ["weight", "bias"] {
            let name = format!("transformer.layers.{layer}.attention.query_key_value.{part}");
            let hf_t = &hf[&name];
            let sat_t = &sat[&name];
            assert!(
                values(hf_t) != values(sat_t),
                "{name}: layouts should differ"
            );
            let permuted = interleaved_to_blocks(hf_t, 4).unwrap();
            assert!(
                values(&permuted) == values(sat_t),
                "{name}: blocks ≠ SAT rows"
            );
            let back = blocks_to_interleaved(sat_t, 4).unwrap();
            assert!(values(&back) == values(hf_t), "{name}: inverse ≠ HF rows");
        }
    }
    // ViT / Q-Former QKV are blocks in both releases: bit-identical, never permuted.
    let vit = "vit.transformer.layers.0.attention.query_key_value.weight";
    assert!(
        values(&hf[&format!("image_encoder.{vit}")])
            == values(&sat[&format!("mixins.eva.model.{vit}")])
    );
}

#[test]
fn old_sat_layout_override_permutes() {
    let dir = golden().join("checkpoints/sat/visualglm-tiny");
    let opts = LoadOptions {
        sat_qkv_layout: Some(QkvLayout::Interleaved),
        ..LoadOptions::default()
    };
    let ck = checkpoint::load(&dir, &opts).unwrap();
    let plain = checkpoint::load(&dir, &LoadOptions::default()).unwrap();
    let name = "transformer.layers.0.attention.query_key_value.weight";
    let expected = interleaved_to_blocks(&plain.tensors[name], 4).unwrap();
    assert!(values(&ck.tensors[name]) == values(&expected));
    let dense = "transformer.layers.0.attention.dense.weight";
    assert!(values(&ck.tensors[dense]) == values(&plain.tensors[dense]));
}

#[test]
fn lora_finetune_pt_with_pickle_junk_loads() {
    // DeepSpeed-style extras (`__builtin__.set`, `torch.Size`, numpy, `_codecs.encode`)
    // around `module` must not break reading.
    let dir = golden().join("lora/finetune-visualglm-tiny-lora");
    let ck = checkpoint::load(&dir, &LoadOptions::default()).unwrap();
    assert_eq!(ck.family, CheckpointFamily::Sat);
    assert_eq!(
        ck.tensors.len(),
        103,
        "104 module tensors minus the inv_freq buffer"
    );
    let a = &ck.tensors["transformer.layers.0.attention.query_key_value.matrix_A.0"];
    assert_eq!(a.dims(), &[4, 64]);
    assert!(ck
        .tensors
        .contains_key("transformer.layers.0.attention.query_key_value.original.weight"));
    // Nothing from outside `module` (e.g. the uint8 torch_rng_state) leaks in.
    assert!(ck.tensors.values().all(|t| t.dtype() == DType::F16));
}

#[test]
fn all_forms_give_identical_tensors() {
    let forms = [
        checkpoint::load(&golden().join("checkpoints/hf"), &LoadOptions::default()).unwrap(),
        checkpoint::load(
            &golden().join("checkpoints/sat/visualglm-tiny"),
            &LoadOptions::default(),
        )
        .unwrap(),
        checkpoint::load(
            &golden().join("model/tiny_visualglm_sat.safetensors"),
            &opts_with_config(),
        )
        .unwrap(),
    ];
    let first = &forms[0];
    for other in &forms[1..] {
        assert_eq!(first.tensors.len(), other.tensors.len());
        for (name, t) in &first.tensors {
            assert!(values(t) == values(&other.tensors[name]), "{name} differs");
        }
        assert_eq!(first.config.glm.hidden_size, other.config.glm.hidden_size);
        assert_eq!(first.config.qformer, other.config.qformer);
        assert_eq!(first.config.vision, other.config.vision);
    }
}

#[test]
fn sharded_safetensors_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let src = golden().join("model/tiny_visualglm_hf.safetensors");
    let all = candle_core::safetensors::load(&src, &candle_core::Device::Cpu).unwrap();
    let (vision, glm): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|(n, _)| n.starts_with("image_encoder."));
    let mut weight_map = serde_json::Map::new();
    for (file, part) in [("a.safetensors", glm), ("b.safetensors", vision)] {
        for (n, _) in &part {
            weight_map.insert(n.clone(), file.into());
        }
        let map: std::collections::HashMap<_, _> = part.into_iter().collect();
        candle_core::safetensors::save(&map, dir.join(file)).unwrap();
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    std::fs::copy(golden().join("model/config.json"), dir.join("config.json")).unwrap();

    let ck = checkpoint::load(dir, &LoadOptions::default()).unwrap();
    assert_eq!(ck.family, CheckpointFamily::Hf);
    assert!(ck
        .source("image_encoder.glm_proj.weight")
        .ends_with("b.safetensors"));
    assert_matches_reference(&ck);
}
