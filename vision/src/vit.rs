//! The EVA-CLIP ViT (pre-LN blocks, erf GELU, fused `[Q;K;V]` rows) followed by `ln_vision`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use visualglm_nn::checkpoint::{Checkpointing, HasParams};
use visualglm_nn::{Activation, FusedSelfAttention, LayerNorm, Linear, Mlp};

use crate::config::EvaConfig;

/// Epsilon of `ln_vision` (a torch default `nn.LayerNorm`).
pub const LN_VISION_EPS: f64 = 1e-5;

/// One pre-LN transformer block.
#[derive(Debug, Clone)]
struct Block {
    input_layernorm: LayerNorm,
    attention: FusedSelfAttention,
    post_attention_layernorm: LayerNorm,
    mlp: Mlp,
}

impl Block {
    fn load(cfg: &EvaConfig, vb: VarBuilder) -> Result<Self> {
        let (h, eps) = (cfg.hidden_size, cfg.layernorm_epsilon);
        Ok(Self {
            input_layernorm: LayerNorm::load(h, eps, vb.pp("input_layernorm"))?,
            attention: FusedSelfAttention::load(
                h,
                cfg.num_attention_heads,
                vb.pp("attention.query_key_value"),
                vb.pp("attention.dense"),
            )?,
            post_attention_layernorm: LayerNorm::load(h, eps, vb.pp("post_attention_layernorm"))?,
            mlp: Mlp::load(
                cfg.hidden_size,
                cfg.mlp_width(),
                Activation::GeluErf,
                vb.pp("mlp.dense_h_to_4h"),
                vb.pp("mlp.dense_4h_to_h"),
            )?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = (x + self.attention.forward(&self.input_layernorm.forward(x)?)?)?;
        &x + self
            .mlp
            .forward(&self.post_attention_layernorm.forward(&x)?)?
    }
}

impl HasParams for Block {
    fn has_params(&self) -> bool {
        self.input_layernorm.has_params()
            || self.attention.has_params()
            || self.post_attention_layernorm.has_params()
            || self.mlp.has_params()
    }
}

/// The patch embedding: a stride-`p` convolution with a `p×p` kernel, computed as one linear
/// layer over flattened patches (same numbers as the convolution, and it scales with the batch).
#[derive(Debug, Clone)]
struct PatchEmbedding {
    /// `[hidden, C·p·p]` with bias.
    projection: Linear,
    patch: usize,
}

impl PatchEmbedding {
    fn load(cfg: &EvaConfig, vb: VarBuilder) -> Result<Self> {
        let (h, c, p) = (cfg.hidden_size, cfg.in_channels, cfg.patch_size);
        let weight = vb.get((h, c, p, p), "weight")?.reshape((h, c * p * p))?;
        let bias = vb.get(h, "bias")?;
        Ok(Self {
            projection: Linear::from_weights(weight, Some(bias)),
            patch: p,
        })
    }

    /// `[B, C, H, W]` → `[B, (H/p)·(W/p), hidden]`, patches in row-major grid order.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, height, width) = x.dims4()?;
        let p = self.patch;
        let (gh, gw) = (height / p, width / p);
        let patches = x
            .reshape((b * c, gh, p, gw, p))?
            .permute((0, 1, 3, 2, 4))? // [B·C, gh, gw, p, p]
            .reshape((b, c, gh * gw, p * p))?
            .permute((0, 2, 1, 3))? // [B, gh·gw, C, p·p]
            .reshape((b * gh * gw, c * p * p))?
            .contiguous()?;
        self.projection.forward(&patches)?.reshape((b, gh * gw, ()))
    }
}

/// EVA ViT plus `ln_vision`: `[B, 3, 224, 224]` pixels → `[B, 257, hidden]` features.
#[derive(Debug, Clone)]
pub struct EvaVit {
    patch_embedding: PatchEmbedding,
    cls_token: Tensor,
    position_embeddings: Tensor,
    layers: Vec<Block>,
    final_layernorm: Option<LayerNorm>,
    ln_vision: LayerNorm,
    /// Recompute each block in the backward pass instead of keeping its activations.
    checkpointing: Option<Checkpointing>,
}

impl EvaVit {
    /// Loads the ViT from `vb` rooted at the checkpoint's `vit` prefix
    /// (`image_encoder.vit` in HF names).
    pub fn load(cfg: &EvaConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        let patch_embedding = PatchEmbedding::load(cfg, vb.pp("mixins.patch_embedding.proj"))?;
        let tvb = vb.pp("transformer");
        let cls_token = tvb.get((cfg.pre_len, h), "word_embeddings.weight")?;
        let position_embeddings = tvb.get((cfg.seq_len(), h), "position_embeddings.weight")?;
        let layers = (0..cfg.num_layers)
            .map(|i| Block::load(cfg, tvb.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let final_layernorm = if cfg.use_final_layernorm {
            Some(LayerNorm::load(
                h,
                cfg.layernorm_epsilon,
                tvb.pp("final_layernorm"),
            )?)
        } else {
            None
        };
        let ln_vision = LayerNorm::load(h, LN_VISION_EPS, vb.pp("mixins.cls.ln_vision"))?;
        Ok(Self {
            patch_embedding,
            cls_token,
            position_embeddings,
            layers,
            final_layernorm,
            ln_vision,
            checkpointing: None,
        })
    }

    /// Checkpoints every block from now on (SAT's `checkpoint_activations`): a block keeps only
    /// its input for the backward pass and recomputes the rest there. `None` turns it off.
    pub fn set_checkpointing(&mut self, checkpointing: Option<Checkpointing>) {
        self.checkpointing = checkpointing;
    }

    /// Runs the ViT and `ln_vision` on normalised pixels `[B, 3, H, W]`.
    pub fn forward(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let dtype = self.cls_token.dtype();
        let patches = self
            .patch_embedding
            .forward(&pixel_values.to_dtype(dtype)?)?;
        let (b, _, h) = patches.dims3()?;
        let pre_len = self.cls_token.dim(0)?;
        let cls = self.cls_token.unsqueeze(0)?.expand((b, pre_len, h))?;
        let mut x = Tensor::cat(&[&cls, &patches], 1)?.broadcast_add(&self.position_embeddings)?;
        for layer in &self.layers {
            x = match &self.checkpointing {
                Some(ck) => {
                    let block = layer.clone();
                    ck.segment(&x, layer.has_params(), move |h| block.forward(h))?
                }
                None => layer.forward(&x)?,
            };
        }
        if let Some(ln) = &self.final_layernorm {
            x = ln.forward(&x)?;
        }
        self.ln_vision.forward(&x)
    }
}
