//! ChatGLM-6B configuration, deserialised from the HF `config.json` / SAT `model_config.json`.

use serde::Deserialize;

/// Hyper-parameters of the GLM language model, with the released key names.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GlmConfig {
    /// Number of GLM blocks (28).
    pub num_layers: usize,
    /// Embedding rows (130528).
    pub vocab_size: usize,
    /// Width (4096).
    pub hidden_size: usize,
    /// Attention heads (32).
    pub num_attention_heads: usize,
    /// Nominal maximum sequence length (2048).
    #[serde(default = "default_max_seq")]
    pub max_sequence_length: usize,
    /// LayerNorm epsilon (1e-5).
    #[serde(default = "default_glm_eps")]
    pub layernorm_epsilon: f64,
    /// MLP inner width; `None` means 4 × hidden.
    #[serde(default)]
    pub inner_hidden_size: Option<usize>,
    /// `<sop>` id (130004).
    #[serde(default = "default_bos")]
    pub bos_token_id: u32,
    /// `<eop>` id (130005); SAT files omit it, so it defaults to `bos + 1`.
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    /// `<pad>` id (3).
    #[serde(default = "default_pad")]
    pub pad_token_id: u32,
    /// `[MASK]` id (130000).
    #[serde(default = "default_mask")]
    pub mask_token_id: u32,
    /// `[gMASK]` id (130001).
    #[serde(default = "default_gmask")]
    pub gmask_token_id: u32,
    /// 2D rotary positions (always true for ChatGLM-6B).
    #[serde(default = "default_true")]
    pub position_encoding_2d: bool,
    /// Residual scale α of `α·LN(x) + f(LN(x))`. Not a released key: the loader sets it
    /// (HF code: always √56; SAT code: √(2·num_layers)).
    #[serde(skip, default)]
    pub residual_alpha: Option<f64>,
    /// Round the rotary `inv_freq` to f16 as the HF code does. Not a released key: set by the loader.
    #[serde(skip, default)]
    pub rotary_inv_freq_f16: bool,
}

fn default_max_seq() -> usize {
    2048
}
fn default_glm_eps() -> f64 {
    1e-5
}
fn default_bos() -> u32 {
    130004
}
fn default_pad() -> u32 {
    3
}
fn default_mask() -> u32 {
    130000
}
fn default_gmask() -> u32 {
    130001
}
fn default_true() -> bool {
    true
}

impl GlmConfig {
    /// MLP inner width.
    pub fn mlp_width(&self) -> usize {
        self.inner_hidden_size.unwrap_or(4 * self.hidden_size)
    }
    /// Per-head width (128).
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
    /// `<eop>` id.
    pub fn eos_id(&self) -> u32 {
        self.eos_token_id.unwrap_or(self.bos_token_id + 1)
    }
    /// Residual α, √(2·28) unless the loader set another convention.
    pub fn alpha(&self) -> f64 {
        self.residual_alpha.unwrap_or((2.0 * 28.0f64).sqrt())
    }
    /// The configuration of the released ChatGLM-6B inside VisualGLM-6B.
    pub fn visualglm_6b() -> Self {
        Self {
            num_layers: 28,
            vocab_size: 130528,
            hidden_size: 4096,
            num_attention_heads: 32,
            max_sequence_length: 2048,
            layernorm_epsilon: 1e-5,
            inner_hidden_size: Some(16384),
            bos_token_id: 130004,
            eos_token_id: Some(130005),
            pad_token_id: 3,
            mask_token_id: 130000,
            gmask_token_id: 130001,
            position_encoding_2d: true,
            residual_alpha: None,
            rotary_inv_freq_f16: true,
        }
    }
}
