//! `validate` against the expected names and shapes of the tiny model.

use crate::checkpoint_common;

use candle_core::{DType, Device, Tensor};
use checkpoint_common::{expected_shapes, golden};
use visualglm::checkpoint::{self, validate, CheckpointError, LoadOptions};

fn tiny() -> checkpoint::Checkpoint {
    checkpoint::load(&golden().join("checkpoints/hf"), &LoadOptions::default()).unwrap()
}

#[test]
fn golden_names_validate() {
    validate(&tiny(), &expected_shapes()).unwrap();
}

#[test]
fn missing_unexpected_and_mis_shaped_are_reported() {
    let mut ck = tiny();
    ck.tensors.remove("image_encoder.glm_proj.bias");
    let extra = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
    ck.tensors.insert("transformer.surprise".into(), extra);
    ck.source_of
        .insert("transformer.surprise".into(), "extra.bin".into());
    let name = "transformer.final_layernorm.weight";
    let wrong = Tensor::zeros(65, DType::F16, &Device::Cpu).unwrap();
    ck.tensors.insert(name.into(), wrong);

    let err = validate(&ck, &expected_shapes()).unwrap_err();
    match &err {
        CheckpointError::Validation {
            missing,
            unexpected,
            mis_shaped,
            ..
        } => assert_eq!((*missing, *unexpected, *mis_shaped), (1, 1, 1)),
        other => panic!("wrong error {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("`image_encoder.glm_proj.bias`"), "{msg}");
    assert!(
        msg.contains("`transformer.surprise` from extra.bin"),
        "{msg}"
    );
    assert!(msg.contains("expected [64], found [65]"), "{msg}");
    assert!(msg.contains("pytorch_model-00001-of-00002.bin"), "{msg}");
}

#[test]
fn long_lists_are_summarised() {
    let mut ck = tiny();
    ck.tensors
        .retain(|k, _| !k.starts_with("image_encoder.vit."));
    let err = validate(&ck, &expected_shapes()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("missing") && msg.contains("more"), "{msg}");
    assert!(msg.lines().count() < 15, "too long:\n{msg}");
}
