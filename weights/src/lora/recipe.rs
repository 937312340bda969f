//! VisualGLM's LoRA targets and the released fine-tuning recipe (`finetune_visualglm.sh`:
//! `--use_lora --lora_rank 10 --layer_range 0 14`, SAT `lora2.LoraMixin`), in canonical
//! module names, and SAT's adapter tensor naming.

use visualglm_nn::lora::{LoraConfig, TargetRule, TensorNaming};

/// Layer prefix of the ChatGLM blocks (canonical names).
pub const GLM_LAYERS: &str = "transformer.layers.";
/// Layer prefix of the EVA ViT blocks (canonical names).
pub const VIT_LAYERS: &str = "image_encoder.vit.transformer.layers.";
/// Layer prefix of the Q-Former blocks (canonical names).
pub const QFORMER_LAYERS: &str = "image_encoder.qformer.transformer.layers.";
/// The fused QKV projection inside a block (3 partitions: Q, K, V row blocks).
pub const QKV: &str = "attention.query_key_value";
/// The attention output projection inside a block (1 partition).
pub const DENSE: &str = "attention.dense";
/// Rank of the released recipe (`--lora_rank 10`).
pub const RELEASE_RANK: usize = 10;
/// Alpha of the released recipe (SAT's `LoraMixin` default).
pub const RELEASE_ALPHA: f64 = 1.0;
/// Layers of the released recipe (`--layer_range 0 14`, a list, not a range).
pub const RELEASE_LAYERS: [usize; 2] = [0, 14];
/// SAT `lora2` state-dict naming: `<target>.matrix_A.<k>` / `<target>.matrix_B.<k>`.
pub const SAT_NAMING: TensorNaming = TensorNaming::new("matrix_A", "matrix_B");

/// The released VisualGLM recipe: rank 10, alpha 1 (scaling 0.1), GLM layers {0, 14},
/// `query_key_value` (3 partitions) and `dense` (1 partition), no dropout.
pub fn release_config() -> LoraConfig {
    glm_config(RELEASE_RANK, RELEASE_ALPHA, Some(RELEASE_LAYERS.to_vec()))
}

/// The release's targets (GLM `query_key_value` and `dense`) with another rank, alpha or
/// layer list (`None`: every layer).
pub fn glm_config(rank: usize, alpha: f64, layers: Option<Vec<usize>>) -> LoraConfig {
    LoraConfig {
        rank,
        alpha,
        dropout: 0.0,
        targets: vec![
            TargetRule::new(GLM_LAYERS, QKV, 3, layers.clone()),
            TargetRule::new(GLM_LAYERS, DENSE, 1, layers),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_recipe_targets_layers_0_and_14_only() {
        let c = release_config();
        assert!((c.scaling() - 0.1).abs() < 1e-12);
        let qkv = c
            .rule_for("transformer.layers.14.attention.query_key_value")
            .unwrap();
        assert_eq!(qkv.partitions, 3);
        let dense = c.rule_for("transformer.layers.0.attention.dense").unwrap();
        assert_eq!(dense.partitions, 1);
        assert!(c.rule_for("transformer.layers.1.attention.dense").is_none());
        assert!(c
            .rule_for("transformer.layers.0.mlp.dense_h_to_4h")
            .is_none());
        assert!(c
            .rule_for("image_encoder.vit.transformer.layers.0.attention.dense")
            .is_none());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn sat_naming_reads_matrix_tensors() {
        let name = SAT_NAMING.name("transformer.layers.0.attention.dense", false, 0);
        assert_eq!(name, "transformer.layers.0.attention.dense.matrix_B.0");
        assert_eq!(
            SAT_NAMING.parse(&name),
            Some(("transformer.layers.0.attention.dense", false, "0"))
        );
        assert_eq!(SAT_NAMING.parse("x.lora_A.0"), None);
    }
}
