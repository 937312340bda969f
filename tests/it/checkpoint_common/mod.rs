//! Helpers shared by the `checkpoint_*` integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Tensor};
use visualglm::checkpoint::{interleaved_to_blocks, is_glm_qkv, Checkpoint};

/// The golden fixture directory.
pub fn golden() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/golden"))
}

/// The tiny HF safetensors, read without this crate's loader, with the GLM QKV rows moved
/// to blocks: the canonical tensors every format must reproduce.
pub fn reference() -> HashMap<String, Tensor> {
    let path = golden().join("model/tiny_visualglm_hf.safetensors");
    let raw = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    raw.into_iter()
        .map(|(name, t)| {
            let t = if is_glm_qkv(&name) {
                interleaved_to_blocks(&t, 4).unwrap()
            } else {
                t
            };
            (name, t)
        })
        .collect()
}

/// `meta.json` → `hf_weight_names` as an expected list for `validate`.
pub fn expected_shapes() -> Vec<(String, Vec<usize>)> {
    let text = std::fs::read_to_string(golden().join("model/meta.json")).unwrap();
    let meta: serde_json::Value = serde_json::from_str(&text).unwrap();
    let names = meta["hf_weight_names"].as_object().unwrap();
    names
        .iter()
        .map(|(n, s)| {
            let shape = s
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            (n.clone(), shape)
        })
        .collect()
}

/// Values of `t` as f32, flattened.
pub fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Asserts `ck` has exactly the reference names, shapes and (in f32) values.
pub fn assert_matches_reference(ck: &Checkpoint) {
    let reference = reference();
    let mut got: Vec<&str> = ck.tensors.keys().map(String::as_str).collect();
    let mut want: Vec<&str> = reference.keys().map(String::as_str).collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "canonical names differ");
    for (name, r) in &reference {
        let t = &ck.tensors[name];
        assert_eq!(t.dims(), r.dims(), "shape of {name}");
        assert!(values(t) == values(r), "values of {name} differ");
    }
}
