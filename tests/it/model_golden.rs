//! Parity of every model stage with the official Python code (fixtures in ../shared/golden).

use crate::support;
use visualglm::EmbedSpan;

use candle_core::{DType, Device, Tensor};
use support::{fixture, golden, ids_u32 as ids_of, max_abs_diff};
use visualglm::{LoadOptions, VisualGlm};
use visualglm_testing::assert_max_abs_diff;

fn load(rel: &str, config: Option<&str>) -> VisualGlm {
    let opts = LoadOptions {
        config_path: config.map(golden),
        ..Default::default()
    };
    VisualGlm::load(&golden(rel), &Device::Cpu, DType::F32, &opts).expect("model loads")
}

/// Checks every HF-convention stage against `golden_hf.safetensors`.
fn check_hf_stages(model: &VisualGlm) {
    let g = fixture("model/golden_hf.safetensors");
    let stages = model.encode_image_stages(&g["pixel_values"]).unwrap();
    assert_max_abs_diff("vit_out", &stages.vit_out, &g["vit_out"], 5e-5);
    assert_max_abs_diff("qformer_out", &stages.qformer_out, &g["qformer_out"], 5e-5);
    assert_max_abs_diff(
        "image_embeds",
        &stages.image_embeds,
        &g["image_embeds"],
        5e-5,
    );

    let ids = ids_of(&g["input_ids"]);
    let pre_image = 2;
    let pos = model.prompt_position_ids(&ids).unwrap();
    let want_pos = g["position_ids"].to_dtype(DType::U32).unwrap();
    assert_eq!(
        pos.to_vec3::<u32>().unwrap(),
        want_pos.to_vec3::<u32>().unwrap(),
        "position ids"
    );
    let ids_t = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let embeds = model
        .input_embeds(
            &ids_t,
            &[EmbedSpan::new(pre_image, stages.image_embeds.clone())],
        )
        .unwrap();
    assert_max_abs_diff("inputs_embeds", &embeds, &g["inputs_embeds"], 5e-5);

    let mut layers = Vec::new();
    let hidden = model
        .prompt_hidden(
            &ids,
            &[EmbedSpan::new(pre_image, stages.image_embeds.clone())],
            None,
            Some(&mut layers),
        )
        .unwrap();
    for (i, out) in layers.iter().enumerate() {
        let want = g["glm_layer_outputs"].get(i).unwrap();
        assert_max_abs_diff(&format!("glm layer {i}"), out, &want, 5e-5);
    }
    assert_max_abs_diff("final_hidden", &hidden, &g["final_hidden"], 5e-5);
    let logits = model.language_model().logits(&hidden).unwrap();
    assert_max_abs_diff("logits", &logits, &g["logits"], 1e-4);

    let text_ids = ids_of(&g["text_only_input_ids"]);
    let text_logits = model.prompt_logits(&text_ids, &[]).unwrap();
    assert_max_abs_diff(
        "text_only_logits",
        &text_logits,
        &g["text_only_logits"],
        1e-4,
    );
}

#[test]
fn hf_sharded_pickles_match_every_stage() {
    check_hf_stages(&load("checkpoints/hf", None));
}

#[test]
fn hf_safetensors_match_every_stage() {
    check_hf_stages(&load(
        "model/tiny_visualglm_hf.safetensors",
        Some("model/config.json"),
    ));
}

#[test]
fn greedy_generation_matches_reference_ids_and_step_logits() {
    let model = load("checkpoints/hf", None);
    let g = fixture("model/golden_hf.safetensors");
    let image = model.encode_image(&g["pixel_values"]).unwrap();
    let ids = ids_of(&g["input_ids"]);
    let want = ids_of(&g["gen_ids"]);
    let (got, step_logits) = model
        .generate_greedy(&ids, &[EmbedSpan::new(2, image.clone())], want.len())
        .unwrap();
    assert_eq!(got, want);
    for (k, logits) in step_logits.iter().enumerate() {
        let reference = g["gen_step_logits"].get(k).unwrap();
        assert_max_abs_diff(&format!("step {k} logits"), logits, &reference, 1e-4);
    }
}

#[test]
fn kv_cache_steps_equal_full_recompute() {
    let model = load("checkpoints/hf", None);
    let g = fixture("model/golden_hf.safetensors");
    let image = model.encode_image(&g["pixel_values"]).unwrap();
    let ids = ids_of(&g["input_ids"]);
    let (generated, step_logits) = model
        .generate_greedy(&ids, &[EmbedSpan::new(2, image.clone())], 6)
        .unwrap();
    // Recompute each step from scratch over prompt + generated prefix (no cache).
    for k in 1..generated.len() {
        let mut seq = ids.clone();
        seq.extend_from_slice(&generated[..k]);
        let full = model
            .prompt_logits(&seq, &[EmbedSpan::new(2, image.clone())])
            .unwrap();
        let last = full.get(0).unwrap().get(seq.len() - 1).unwrap();
        assert_max_abs_diff(&format!("cached step {k}"), &step_logits[k], &last, 1e-4);
    }
}

#[test]
fn an_f16_kv_cache_keeps_the_greedy_tokens() {
    let mut model = load("checkpoints/hf", None);
    let g = fixture("model/golden_hf.safetensors");
    let image = model.encode_image(&g["pixel_values"]).unwrap();
    let ids = ids_of(&g["input_ids"]);
    let (want, want_logits) = model
        .generate_greedy(&ids, &[EmbedSpan::new(2, image.clone())], 6)
        .unwrap();
    model
        .language_model_mut()
        .set_kv_cache_dtype(Some(DType::F16));
    assert_eq!(model.language_model().new_cache().dtype(), Some(DType::F16));
    let (got, got_logits) = model
        .generate_greedy(&ids, &[EmbedSpan::new(2, image.clone())], 6)
        .unwrap();
    assert_eq!(got, want, "greedy tokens with an f16 cache");
    for (k, (a, b)) in got_logits.iter().zip(&want_logits).enumerate() {
        // Keys and values rounded to f16 (relative 2^-11) move the logits by about 1e-3; the
        // prefill's attention reads the cache too, so step 0 moves as well.
        let d = max_abs_diff(a, b);
        assert!(d > 0.0, "step {k}: the f16 cache changed nothing");
        assert_max_abs_diff(&format!("f16-cache step {k}"), a, b, 5e-3);
    }
}

#[test]
fn sat_checkpoint_matches_native_sat_logits() {
    let model = load("checkpoints/sat/visualglm-tiny", None);
    let g = fixture("model/golden_hf.safetensors");
    let sat = fixture("model/golden_sat.safetensors");
    let image = model.encode_image(&g["pixel_values"]).unwrap();
    let ids = ids_of(&g["input_ids"]);
    let logits = model
        .prompt_logits(&ids, &[EmbedSpan::new(2, image.clone())])
        .unwrap();
    assert_max_abs_diff(
        "native SAT logits",
        &logits,
        &sat["logits_native_alpha_sqrt4"],
        1e-4,
    );
}

#[test]
fn sat_weights_with_hf_alpha_match_the_sqrt56_golden() {
    let opts = LoadOptions {
        config_path: Some(golden("model/config.json")),
        ..Default::default()
    };
    let mut ck = visualglm::load(&golden("model/tiny_visualglm_sat.safetensors"), &opts).unwrap();
    // SAT numerics (fp32 inv_freq) with the HF residual convention α = √56.
    ck.config.glm.residual_alpha = Some(56f64.sqrt());
    ck.config.glm.rotary_inv_freq_f16 = false;
    let model = VisualGlm::from_var_builder(
        &ck.config,
        ck.var_builder(DType::F32, &Device::Cpu),
        &Default::default(),
    )
    .unwrap();
    let g = fixture("model/golden_hf.safetensors");
    let sat = fixture("model/golden_sat.safetensors");
    let image = model.encode_image(&g["pixel_values"]).unwrap();
    let ids = ids_of(&g["input_ids"]);
    let logits = model
        .prompt_logits(&ids, &[EmbedSpan::new(2, image.clone())])
        .unwrap();
    assert_max_abs_diff(
        "SAT α=√56 logits",
        &logits,
        &sat["logits_alpha_sqrt56"],
        1e-4,
    );
}

#[test]
fn full_size_parameters_match_the_released_names_and_shapes() {
    let ours = visualglm::model::visualglm_6b_parameters().unwrap();
    let text =
        std::fs::read_to_string(golden("model/real_visualglm6b_hf_param_shapes.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut want: Vec<(String, Vec<usize>)> = Vec::new();
    for (template, shape) in json["params"].as_object().unwrap() {
        if template.ends_with("rotary_emb.inv_freq") {
            continue; // a buffer, not a weight: ignored on load
        }
        let shape: Vec<usize> = shape
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let (n_layers, evens_only, odds_only) = if template.starts_with("image_encoder.vit.") {
            (39, false, false)
        } else if template.starts_with("image_encoder.qformer.") {
            (12, template.contains("{even}"), template.contains("{odd}"))
        } else {
            (28, false, false)
        };
        if template.contains("{i}") || template.contains("{even}") || template.contains("{odd}") {
            for i in 0..n_layers {
                if (evens_only && i % 2 == 1) || (odds_only && i % 2 == 0) {
                    continue;
                }
                let name = template
                    .replace("{i}", &i.to_string())
                    .replace("{even}", &i.to_string())
                    .replace("{odd}", &i.to_string());
                want.push((name, shape.clone()));
            }
        } else {
            want.push((template.clone(), shape));
        }
    }
    let mut ours_sorted = ours.clone();
    ours_sorted.sort();
    want.sort();
    assert_eq!(ours_sorted.len(), want.len(), "parameter count");
    assert_eq!(ours_sorted, want);
    let values: usize = ours.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    let buffers = 28 * 32;
    assert_eq!(
        values + buffers,
        json["total_values_incl_buffers"].as_u64().unwrap() as usize
    );
}
