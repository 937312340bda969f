//! Q-Former configuration, deserialised from `qformer_config` (HF) / `qformer_args` (SAT).

use serde::Deserialize;

/// Hyper-parameters of the BLIP-2 Q-Former, with the released key names.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct QFormerConfig {
    /// Number of BERT layers (12).
    pub num_layers: usize,
    /// Width (768).
    pub hidden_size: usize,
    /// Attention heads (12).
    pub num_attention_heads: usize,
    /// Number of learned queries (32); SAT calls it `vocab_size`.
    pub vocab_size: usize,
    /// MLP inner width; `None` means 4 × hidden.
    #[serde(default)]
    pub inner_hidden_size: Option<usize>,
    /// Which layers have cross-attention to the image (`true` on even layers).
    pub is_decoder: Vec<bool>,
    /// Width of the image features the cross-attention reads (1408).
    pub cross_attn_hidden_size: usize,
    /// LayerNorm epsilon (1e-12).
    #[serde(default = "default_qformer_eps")]
    pub layernorm_epsilon: f64,
}

fn default_qformer_eps() -> f64 {
    1e-12
}

impl QFormerConfig {
    /// MLP inner width.
    pub fn mlp_width(&self) -> usize {
        self.inner_hidden_size.unwrap_or(4 * self.hidden_size)
    }
    /// Number of query tokens.
    pub fn num_queries(&self) -> usize {
        self.vocab_size
    }
    /// Whether layer `i` has cross-attention.
    pub fn has_cross_attention(&self, i: usize) -> bool {
        self.is_decoder.get(i).copied().unwrap_or(false)
    }
    /// The configuration of the released VisualGLM-6B.
    pub fn visualglm_6b() -> Self {
        Self {
            num_layers: 12,
            hidden_size: 768,
            num_attention_heads: 12,
            vocab_size: 32,
            inner_hidden_size: None,
            is_decoder: (0..12).map(|i| i % 2 == 0).collect(),
            cross_attn_hidden_size: 1408,
            layernorm_epsilon: 1e-12,
        }
    }
}
