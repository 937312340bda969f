//! Which linears get adapters, and with which rank and alpha.

use serde::{Deserialize, Serialize};

use super::error::AdapterError;

/// One kind of adapted linear: `{layers_prefix}{i}.{module}` for the listed layers `i`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRule {
    /// Prefix up to the layer index, e.g. `"blocks."`.
    pub layers_prefix: String,
    /// Module path after the layer index, e.g. `"attn.qkv"`.
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

    /// A fused QKV (3 partitions) and an output projection in the listed layers.
    fn two_targets(layers: Option<Vec<usize>>) -> LoraConfig {
        LoraConfig {
            rank: 10,
            alpha: 1.0,
            dropout: 0.0,
            targets: vec![
                TargetRule::new("blocks.", "attn.qkv", 3, layers.clone()),
                TargetRule::new("blocks.", "attn.out", 1, layers),
            ],
        }
    }

    #[test]
    fn rules_match_only_their_layers_and_modules() {
        let c = two_targets(Some(vec![0, 14]));
        assert!((c.scaling() - 0.1).abs() < 1e-12);
        assert_eq!(c.rule_for("blocks.14.attn.qkv").unwrap().partitions, 3);
        assert_eq!(c.rule_for("blocks.0.attn.out").unwrap().partitions, 1);
        assert!(c.rule_for("blocks.1.attn.out").is_none());
        assert!(c.rule_for("blocks.0.mlp.up").is_none());
        assert!(c.rule_for("blocks.0.attn.out.weight").is_none());
        assert!(c.rule_for("encoder.blocks.0.attn.out").is_none());
        assert!(c.rule_for("blocks.x.attn.out").is_none());
    }

    #[test]
    fn every_layer_and_other_prefixes_can_be_targeted() {
        let c = LoraConfig {
            rank: 2,
            alpha: 4.0,
            dropout: 0.0,
            targets: vec![TargetRule::new("encoder.blocks.", "attn.qkv", 3, None)],
        };
        let r = c.rule_for("encoder.blocks.38.attn.qkv").unwrap();
        assert_eq!(r.matches("encoder.blocks.38.attn.qkv"), Some(38));
        assert_eq!(r.target(7), "encoder.blocks.7.attn.qkv");
        assert!(c.rule_for("blocks.0.attn.qkv").is_none());
        assert_eq!(c.scaling(), 2.0);
    }

    #[test]
    fn bad_values_are_refused() {
        let mut c = two_targets(None);
        c.rank = 0;
        assert!(c.validate().is_err());
        let mut c = two_targets(None);
        c.dropout = 1.0;
        assert!(c.validate().is_err());
        let mut c = two_targets(None);
        c.alpha = f64::NAN;
        assert!(c.validate().is_err());
        let mut c = two_targets(None);
        c.targets[0].partitions = 0;
        assert!(c.validate().is_err());
        assert!(two_targets(None).validate().is_ok());
    }
}
