//! The Q-Former and `glm_proj` alone against the official code's stage outputs on the tiny
//! random model (`../shared/golden/model`, golden README §5): the golden `vit_out` in, the
//! golden `qformer_out` and `image_embeds` out.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use visualglm_qformer::{load_glm_proj, QFormer, QFormerConfig};
use visualglm_testing::{assert_max_abs_diff, golden};

/// The tiny model's Q-Former config and its width into the language model.
fn config() -> (QFormerConfig, usize) {
    let text = std::fs::read_to_string(golden("model/config.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cfg: QFormerConfig = serde_json::from_value(json["qformer_config"].clone()).unwrap();
    let glm_width = json["hidden_size"].as_u64().unwrap() as usize;
    (cfg, glm_width)
}

fn stages() -> std::collections::HashMap<String, Tensor> {
    candle_core::safetensors::load(golden("model/golden_hf.safetensors"), &Device::Cpu).unwrap()
}

#[test]
fn qformer_and_glm_proj_match_the_official_outputs() {
    let (cfg, glm_width) = config();
    let dev = Device::Cpu;
    let weights =
        candle_core::safetensors::load(golden("model/tiny_visualglm_hf.safetensors"), &dev)
            .unwrap();
    let vb = VarBuilder::from_tensors(weights, DType::F32, &dev).pp("image_encoder");
    let qformer = QFormer::load(&cfg, vb.pp("qformer")).unwrap();
    let proj = load_glm_proj(cfg.hidden_size, glm_width, vb.pp("glm_proj")).unwrap();
    let g = stages();
    let out = qformer.forward(&g["vit_out"]).unwrap();
    assert_eq!(out.dims(), &[1, cfg.num_queries(), cfg.hidden_size]);
    assert_max_abs_diff("qformer_out", &out, &g["qformer_out"], 5e-5);
    let embeds = proj.forward(&g["qformer_out"]).unwrap();
    assert_max_abs_diff("image_embeds", &embeds, &g["image_embeds"], 5e-5);
}

#[test]
fn a_missing_weight_is_an_error_naming_it() {
    let (cfg, _) = config();
    let vb = VarBuilder::from_tensors(Default::default(), DType::F32, &Device::Cpu);
    let err = QFormer::load(&cfg, vb.pp("qformer"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("qformer."), "{err}");
}
