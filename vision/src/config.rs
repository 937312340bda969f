//! EVA ViT configuration, deserialised from `eva_config` (HF) / `eva_args` (SAT).

use serde::Deserialize;

/// Hyper-parameters of the EVA-CLIP vision transformer, with the released key names.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EvaConfig {
    /// Number of transformer blocks (39 in VisualGLM-6B).
    pub num_layers: usize,
    /// Width of the residual stream (1408).
    pub hidden_size: usize,
    /// Attention heads (16).
    pub num_attention_heads: usize,
    /// MLP inner width (6144); `None` means 4 × hidden.
    #[serde(default)]
    pub inner_hidden_size: Option<usize>,
    /// LayerNorm epsilon inside the blocks (1e-6).
    #[serde(default = "default_eva_eps")]
    pub layernorm_epsilon: f64,
    /// Input image size `[height, width]` (224 × 224).
    #[serde(default = "default_image_size")]
    pub image_size: [usize; 2],
    /// Patch size of the convolutional stem (14).
    #[serde(default = "default_patch_size")]
    pub patch_size: usize,
    /// Input channels (3).
    #[serde(default = "default_in_channels")]
    pub in_channels: usize,
    /// Number of tokens before the patches (the CLS token: 1).
    #[serde(default = "default_pre_len")]
    pub pre_len: usize,
    /// Whether the ViT has its own final LayerNorm (false in VisualGLM).
    #[serde(default)]
    pub use_final_layernorm: bool,
}

fn default_eva_eps() -> f64 {
    1e-6
}
fn default_image_size() -> [usize; 2] {
    [224, 224]
}
fn default_patch_size() -> usize {
    14
}
fn default_in_channels() -> usize {
    3
}
fn default_pre_len() -> usize {
    1
}

impl EvaConfig {
    /// MLP inner width.
    pub fn mlp_width(&self) -> usize {
        self.inner_hidden_size.unwrap_or(4 * self.hidden_size)
    }
    /// Number of patches (`(224/14)^2 = 256`).
    pub fn num_patches(&self) -> usize {
        (self.image_size[0] / self.patch_size) * (self.image_size[1] / self.patch_size)
    }
    /// Sequence length seen by the blocks: CLS + patches (257).
    pub fn seq_len(&self) -> usize {
        self.pre_len + self.num_patches()
    }
    /// The configuration of the released VisualGLM-6B (EVA-CLIP ViT-g/14, 39 blocks).
    pub fn visualglm_6b() -> Self {
        Self {
            num_layers: 39,
            hidden_size: 1408,
            num_attention_heads: 16,
            inner_hidden_size: Some(6144),
            layernorm_epsilon: 1e-6,
            image_size: [224, 224],
            patch_size: 14,
            in_channels: 3,
            pre_len: 1,
            use_final_layernorm: false,
        }
    }
}
