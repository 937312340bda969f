//! Which linears get adapters, and with which rank and alpha.

use serde::{Deserialize, Serialize};

use super::error::AdapterError;

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

/// One kind of adapted linear: `{layers_prefix}{i}.{module}` for the listed layers `i`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRule {
    /// Prefix up to the layer index, e.g. [`GLM_LAYERS`] or [`VIT_LAYERS`].
    pub layers_prefix: String,
    /// Module path after the layer index, e.g. [`QKV`] or [`DENSE`].
    pub module: String,
    /// Number of independent `(A, B)` pairs, stacked as row blocks of the output
    /// (3 for a fused `[Q|K|V]` projection, 1 otherwise).
    pub partitions: usize,
    /// Layer indices to adapt; `None` adapts every layer.
    #[serde(default)]
    pub layers: Option<Vec<usize>>,
}

impl TargetRule {
    /// A rule for `module` in the given layers under `layers_prefix`.
    pub fn new(
        layers_prefix: &str,
        module: &str,
        partitions: usize,
        layers: Option<Vec<usize>>,
    ) -> Self {
        Self {
            layers_prefix: layers_prefix.to_string(),
            module: module.to_string(),
            partitions,
            layers,
        }
    }

    /// The layer index when `target` (a module name without `.weight`) is adapted by this
    /// rule, else `None`.
    pub fn matches(&self, target: &str) -> Option<usize> {
        let rest = target.strip_prefix(&self.layers_prefix)?;
        let (layer, module) = rest.split_once('.')?;
        if module != self.module || layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let i: usize = layer.parse().ok()?;
        match &self.layers {
            Some(list) if !list.contains(&i) => None,
            _ => Some(i),
        }
    }

    /// The module name this rule adapts in layer `i`.
    pub fn target(&self, i: usize) -> String {
        format!("{}{i}.{}", self.layers_prefix, self.module)
    }
}

/// Rank, alpha, dropout and targets of a set of adapters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// The rank `r` of every adapter.
    pub rank: usize,
    /// `alpha`; the update is scaled by `alpha / r`.
    pub alpha: f64,
    /// Dropout probability on the adapter input, applied in training only.
    #[serde(default)]
    pub dropout: f32,
    /// The adapted linears.
    pub targets: Vec<TargetRule>,
}

impl LoraConfig {
    /// The released VisualGLM recipe: rank 10, alpha 1 (scaling 0.1), GLM layers {0, 14},
    /// `query_key_value` (3 partitions) and `dense` (1 partition), no dropout.
    pub fn release() -> Self {
        Self::glm(RELEASE_RANK, RELEASE_ALPHA, Some(RELEASE_LAYERS.to_vec()))
    }

    /// The release's targets (GLM `query_key_value` and `dense`) with another rank, alpha or
    /// layer list (`None`: every layer).
    pub fn glm(rank: usize, alpha: f64, layers: Option<Vec<usize>>) -> Self {
        Self {
            rank,
            alpha,
            dropout: 0.0,
            targets: vec![
                TargetRule::new(GLM_LAYERS, QKV, 3, layers.clone()),
                TargetRule::new(GLM_LAYERS, DENSE, 1, layers),
            ],
        }
    }

    /// `alpha / rank`.
    pub fn scaling(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// The rule adapting `target` (module name without `.weight`), if any.
    pub fn rule_for(&self, target: &str) -> Option<&TargetRule> {
        self.targets.iter().find(|r| r.matches(target).is_some())
    }

    /// Checks that the values are usable.
    pub fn validate(&self) -> Result<(), AdapterError> {
        if self.rank == 0 {
            return Err(AdapterError::Config("rank must be at least 1".into()));
        }
        if !self.alpha.is_finite() {
            return Err(AdapterError::Config(format!(
                "alpha {} is not finite",
                self.alpha
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(AdapterError::Config(format!(
                "dropout {} is not in [0, 1)",
                self.dropout
            )));
        }
        for r in &self.targets {
            if r.partitions == 0 {
                return Err(AdapterError::Config(format!(
                    "target `{}{{i}}.{}` has 0 partitions",
                    r.layers_prefix, r.module
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_recipe_targets_layers_0_and_14_only() {
        let c = LoraConfig::release();
        assert!((c.scaling() - 0.1).abs() < 1e-12);
        let qkv = c
            .rule_for("transformer.layers.14.attention.query_key_value")
            .unwrap();
        assert_eq!(qkv.partitions, 3);
        assert_eq!(
            c.rule_for("transformer.layers.0.attention.dense")
                .unwrap()
                .partitions,
            1
        );
        assert!(c.rule_for("transformer.layers.1.attention.dense").is_none());
        assert!(c
            .rule_for("transformer.layers.0.mlp.dense_h_to_4h")
            .is_none());
        assert!(c
            .rule_for("transformer.layers.0.attention.dense.weight")
            .is_none());
        assert!(c
            .rule_for("image_encoder.vit.transformer.layers.0.attention.dense")
            .is_none());
    }

    #[test]
    fn image_encoder_linears_can_be_targeted() {
        let c = LoraConfig {
            rank: 2,
            alpha: 4.0,
            dropout: 0.0,
            targets: vec![TargetRule::new(VIT_LAYERS, QKV, 3, None)],
        };
        let r = c
            .rule_for("image_encoder.vit.transformer.layers.38.attention.query_key_value")
            .unwrap();
        assert_eq!(
            r.matches("image_encoder.vit.transformer.layers.38.attention.query_key_value"),
            Some(38)
        );
        assert!(c
            .rule_for("transformer.layers.0.attention.query_key_value")
            .is_none());
        assert_eq!(c.scaling(), 2.0);
    }

    #[test]
    fn bad_values_are_refused() {
        let mut c = LoraConfig::release();
        c.rank = 0;
        assert!(c.validate().is_err());
        let mut c = LoraConfig::release();
        c.dropout = 1.0;
        assert!(c.validate().is_err());
        let mut c = LoraConfig::release();
        c.targets[0].partitions = 0;
        assert!(c.validate().is_err());
        assert!(LoraConfig::release().validate().is_ok());
    }
}
