//! Fresh, randomly initialised VisualGLM checkpoints for training small models from scratch.
//!
//! Every parameter the config implies gets a standard initialisation: linear (and patch
//! convolution) weights N(0, 1/fan_in) — LeCun normal, which is about the release's 0.02 at
//! ChatGLM's width 4096 and, unlike a fixed 0.02, keeps attention logits and activations at a
//! useful scale in narrow models — embeddings N(0, 0.02), biases 0, LayerNorm gains 1, and
//! `lm_head` tied to the word embeddings (as ChatGLM ties them). The ViT's position embeddings start as fixed 2D sine-cosine tables (as
//! MAE initialises them; the CLS row zero): at N(0, 0.02) they would be drowned by the patch
//! contents, and a small model would spend most of its first steps learning where a patch is. The special-token ids and vocabulary size can be taken from a
//! tokenizer so the model and the tokenizer agree.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use visualglm_tokenizer::ChatGlmTokenizer;

use crate::checkpoint::{Checkpoint, CheckpointFamily};
use crate::config::VisualGlmConfig;
use crate::error::{Result, VisualGlmError};
use crate::param_shapes::expected_parameters;

/// Standard deviation of embedding tables (BERT, GLM and EVA all use 0.02).
pub const EMBEDDING_STD: f64 = 0.02;

/// Sets the GLM vocabulary size and special-token ids of `config` from `tokenizer`:
/// `vocab_size` = the tokenizer's piece count, `bos` = `<sop>`, `eos` = `<eop>`,
/// `mask`, `gmask` and `pad` likewise.
pub fn adopt_tokenizer(config: &mut VisualGlmConfig, tokenizer: &ChatGlmTokenizer) {
    let s = tokenizer.special_ids();
    let g = &mut config.glm;
    g.vocab_size = tokenizer.num_pieces();
    g.bos_token_id = s.sop;
    g.eos_token_id = Some(s.eop);
    g.pad_token_id = s.pad;
    g.mask_token_id = s.mask;
    g.gmask_token_id = s.gmask;
}

/// How a parameter is initialised, from its canonical name.
fn is_layernorm_scale(name: &str) -> bool {
    name.ends_with("layernorm.weight") || name.ends_with("ln_vision.weight")
}

/// A checkpoint of `config` with freshly initialised f32 weights on the CPU, reproducible from
/// `seed`.
pub fn random_checkpoint(
    config: &VisualGlmConfig,
    family: CheckpointFamily,
    seed: u64,
) -> Result<Checkpoint> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut tensors = HashMap::new();
    let mut shapes = expected_parameters(config)?;
    shapes.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, shape) in &shapes {
        if name == "lm_head.weight" {
            continue;
        }
        let t = if name == VIT_POSITIONS {
            sincos_positions(config, shape)?
        } else if name.ends_with(".bias") {
            Tensor::zeros(shape.as_slice(), DType::F32, &Device::Cpu)?
        } else if is_layernorm_scale(name) {
            Tensor::ones(shape.as_slice(), DType::F32, &Device::Cpu)?
        } else {
            let n: usize = shape.iter().product();
            let std = weight_std(name, shape) as f32;
            let values: Vec<f32> = (0..n)
                .map(|_| standard_normal(&mut rng) as f32 * std)
                .collect();
            Tensor::from_vec(values, shape.as_slice(), &Device::Cpu)?
        };
        tensors.insert(name.clone(), t);
    }
    if shapes.iter().any(|(n, _)| n == "lm_head.weight") {
        let embed = tensors
            .get("transformer.word_embeddings.weight")
            .cloned()
            .ok_or_else(|| {
                VisualGlmError::Input("the config has no transformer.word_embeddings".into())
            })?;
        tensors.insert("lm_head.weight".into(), embed);
    }
    Ok(Checkpoint {
        config: config.clone(),
        family,
        tensors,
        source_of: HashMap::new(),
    })
}

/// The initialisation std of a weight: [`EMBEDDING_STD`] for embedding tables, `1/√fan_in`
/// for linear and convolution weights (`fan_in` = all dimensions but the first).
fn weight_std(name: &str, shape: &[usize]) -> f64 {
    if name.ends_with("embeddings.weight") || shape.len() < 2 {
        return EMBEDDING_STD;
    }
    let fan_in: usize = shape[1..].iter().product();
    1.0 / (fan_in.max(1) as f64).sqrt()
}

/// Canonical name of the ViT's learned position embeddings (`[1 + patches, width]`).
const VIT_POSITIONS: &str = "image_encoder.vit.transformer.position_embeddings.weight";

/// MAE's 2D sine-cosine table for the patch grid: half of the width encodes the row, half the
/// column, each as `sin(p·ω_k)`, `cos(p·ω_k)` with `ω_k = 10000^(−k/(w/4))`; row 0 (CLS) is 0.
fn sincos_positions(config: &VisualGlmConfig, shape: &[usize]) -> Result<Tensor> {
    let v = &config.vision;
    let grid = v.image_size[0] / v.patch_size.max(1);
    let (rows, width) = match shape {
        [r, w] => (*r, *w),
        _ => {
            return Err(VisualGlmError::Input(format!(
                "position embeddings have shape {shape:?}"
            )))
        }
    };
    if rows != 1 + grid * grid || width % 4 != 0 {
        return Err(VisualGlmError::Input(format!(
            "position embeddings [{rows}, {width}] do not fit a {grid}×{grid} grid plus CLS              with a width divisible by 4"
        )));
    }
    let quarter = width / 4;
    let mut out = vec![0f32; rows * width];
    for i in 0..grid {
        for j in 0..grid {
            let row = &mut out[(1 + i * grid + j) * width..(2 + i * grid + j) * width];
            for (half, p) in [(0, i), (1, j)] {
                for k in 0..quarter {
                    let omega = 1.0 / 10000f64.powf(k as f64 / quarter as f64);
                    let angle = p as f64 * omega;
                    row[half * 2 * quarter + k] = angle.sin() as f32;
                    row[half * 2 * quarter + quarter + k] = angle.cos() as f32;
                }
            }
        }
    }
    Ok(Tensor::from_vec(out, (rows, width), &Device::Cpu)?)
}

/// One standard-normal draw (Box–Muller; the first uniform in (0, 1]).
pub(crate) fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_weights_follow_the_rules_and_the_seed() {
        let (cfg, family) = VisualGlmConfig::from_file(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/golden/checkpoints/hf/config.json"),
        )
        .unwrap();
        let a = random_checkpoint(&cfg, family, 7).unwrap();
        let b = random_checkpoint(&cfg, family, 7).unwrap();
        let c = random_checkpoint(&cfg, family, 8).unwrap();
        let get = |ck: &Checkpoint, n: &str| -> Vec<f32> {
            ck.get(n).unwrap().flatten_all().unwrap().to_vec1().unwrap()
        };
        let w = "transformer.layers.0.attention.query_key_value.weight";
        assert_eq!(get(&a, w), get(&b, w));
        assert_ne!(get(&a, w), get(&c, w));
        let v = get(&a, w);
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32).sqrt();
        // LeCun normal: 1/√64 for the 64-wide tiny model.
        assert!((std - 0.125).abs() < 0.01, "std {std}");
        let e = get(&a, "transformer.word_embeddings.weight");
        let e_std = (e.iter().map(|x| x * x).sum::<f32>() / e.len() as f32).sqrt();
        assert!((e_std - 0.02).abs() < 0.002, "embedding std {e_std}");
        assert!(get(&a, "transformer.final_layernorm.weight")
            .iter()
            .all(|&x| x == 1.0));
        assert!(get(&a, "image_encoder.glm_proj.bias")
            .iter()
            .all(|&x| x == 0.0));
        assert_eq!(
            get(&a, "lm_head.weight"),
            get(&a, "transformer.word_embeddings.weight")
        );
        // Position table: CLS row zero, patch rows distinct and bounded.
        let pos = a.get(VIT_POSITIONS).unwrap();
        let rows: Vec<Vec<f32>> = pos.to_vec2().unwrap();
        assert!(rows[0].iter().all(|&x| x == 0.0));
        assert!(rows.iter().flatten().all(|x| x.abs() <= 1.0));
        assert_ne!(rows[1], rows[2]);
        assert_ne!(rows[1], rows[1 + 16]);
        let expected = expected_parameters(&cfg).unwrap();
        assert_eq!(a.tensors.len(), expected.len());
        for (name, shape) in expected {
            assert_eq!(a.get(&name).unwrap().dims(), shape.as_slice(), "{name}");
        }
    }
}
