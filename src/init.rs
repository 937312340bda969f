//! Fresh, randomly initialised VisualGLM checkpoints for training small models from scratch.
//!
//! Every parameter the config implies gets the usual transformer initialisation: weights
//! N(0, 0.02), biases 0, LayerNorm scales 1, and `lm_head` tied to the word embeddings (as
//! ChatGLM ties them). The special-token ids and vocabulary size can be taken from a
//! tokenizer so the model and the tokenizer agree.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use visualglm_language::tokenizer::ChatGlmTokenizer;

use crate::checkpoint::{Checkpoint, CheckpointFamily};
use crate::config::VisualGlmConfig;
use crate::error::{Result, VisualGlmError};
use crate::param_shapes::expected_parameters;

/// Standard deviation of the weight initialisation (BERT, GLM and EVA all use 0.02).
pub const INIT_STD: f64 = 0.02;

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
        let t = if name.ends_with(".bias") {
            Tensor::zeros(shape.as_slice(), DType::F32, &Device::Cpu)?
        } else if is_layernorm_scale(name) {
            Tensor::ones(shape.as_slice(), DType::F32, &Device::Cpu)?
        } else {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = (0..n).map(|_| normal(&mut rng) * INIT_STD as f32).collect();
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

/// One standard-normal draw (Box–Muller; the first uniform in (0, 1]).
fn normal(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_weights_follow_the_rules_and_the_seed() {
        let (cfg, family) = VisualGlmConfig::from_file(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/golden/checkpoints/hf/config.json"),
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
        assert!((std - 0.02).abs() < 0.002, "std {std}");
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
        let expected = expected_parameters(&cfg).unwrap();
        assert_eq!(a.tensors.len(), expected.len());
        for (name, shape) in expected {
            assert_eq!(a.get(&name).unwrap().dims(), shape.as_slice(), "{name}");
        }
    }
}
