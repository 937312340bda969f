//! The BLIP-2 Q-Former as VisualGLM ships it: 32 learned queries through post-LN BERT layers,
//! cross-attending to the image features on the layers the config marks `is_decoder`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use visualglm_nn::attention::projection::{attention, Heads};
use visualglm_nn::checkpoint::{Checkpointing, HasParams};
use visualglm_nn::{Activation, FusedSelfAttention, LayerNorm, Linear, Mlp};

use crate::config::QFormerConfig;

/// Cross-attention from the queries to the image features, fused `[K;V]` rows.
#[derive(Debug, Clone)]
struct CrossAttention {
    query: Linear,
    key_value: Linear,
    dense: Linear,
    num_heads: usize,
}

impl CrossAttention {
    fn load(cfg: &QFormerConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            query: Linear::load(h, h, vb.pp("query"))?,
            key_value: Linear::load(cfg.cross_attn_hidden_size, 2 * h, vb.pp("key_value"))?,
            dense: Linear::load(h, h, vb.pp("dense"))?,
            num_heads: cfg.num_attention_heads,
        })
    }

    fn forward(&self, x: &Tensor, encoder: &Tensor) -> Result<Tensor> {
        let q = self.query.forward(x)?;
        let width = q.dim(2)?;
        let kv = self.key_value.forward(encoder)?;
        let head_dim = width / self.num_heads;
        let ctx = attention(
            Heads::new(&q, 0),
            Heads::new(&kv, 0),
            Heads::new(&kv, width),
            self.num_heads,
            head_dim,
            1.0 / (head_dim as f64).sqrt(),
        )?;
        self.dense.forward(&ctx)
    }
}

impl HasParams for CrossAttention {
    fn has_params(&self) -> bool {
        self.query.has_params() || self.key_value.has_params() || self.dense.has_params()
    }
}

/// One post-LN layer in SAT's arrangement (the BERT output LayerNorm of layer i is the
/// `input_layernorm` of layer i+1, and the last one is `final_layernorm`).
#[derive(Debug, Clone)]
struct Layer {
    input_layernorm: LayerNorm,
    attention: FusedSelfAttention,
    post_attention_layernorm: LayerNorm,
    cross: Option<(CrossAttention, LayerNorm)>,
    mlp: Mlp,
}

impl Layer {
    fn load(cfg: &QFormerConfig, index: usize, vb: VarBuilder) -> Result<Self> {
        let (h, eps) = (cfg.hidden_size, cfg.layernorm_epsilon);
        let cross = if cfg.has_cross_attention(index) {
            Some((
                CrossAttention::load(cfg, vb.pp("cross_attention"))?,
                LayerNorm::load(h, eps, vb.pp("post_cross_attention_layernorm"))?,
            ))
        } else {
            None
        };
        Ok(Self {
            input_layernorm: LayerNorm::load(h, eps, vb.pp("input_layernorm"))?,
            attention: FusedSelfAttention::load(
                h,
                cfg.num_attention_heads,
                vb.pp("attention.query_key_value"),
                vb.pp("attention.dense"),
            )?,
            post_attention_layernorm: LayerNorm::load(h, eps, vb.pp("post_attention_layernorm"))?,
            cross,
            mlp: Mlp::load(
                cfg.hidden_size,
                cfg.mlp_width(),
                Activation::GeluErf,
                vb.pp("mlp.dense_h_to_4h"),
                vb.pp("mlp.dense_4h_to_h"),
            )?,
        })
    }

    fn forward(&self, h: &Tensor, encoder: &Tensor) -> Result<Tensor> {
        let a = self.input_layernorm.forward(h)?;
        let h1 = (&a + self.attention.forward(&a)?)?;
        let mut m = self.post_attention_layernorm.forward(&h1)?;
        if let Some((cross, ln)) = &self.cross {
            let c = (&m + cross.forward(&m, encoder)?)?;
            m = ln.forward(&c)?;
        }
        &m + self.mlp.forward(&m)?
    }
}

impl HasParams for Layer {
    fn has_params(&self) -> bool {
        self.input_layernorm.has_params()
            || self.attention.has_params()
            || self.post_attention_layernorm.has_params()
            || self
                .cross
                .as_ref()
                .is_some_and(|(c, ln)| c.has_params() || ln.has_params())
            || self.mlp.has_params()
    }
}

/// The Q-Former: image features `[B, 257, 1408]` → query outputs `[B, 32, 768]`.
#[derive(Debug, Clone)]
pub struct QFormer {
    queries: Tensor,
    layers: Vec<Layer>,
    final_layernorm: LayerNorm,
    checkpointing: Option<Checkpointing>,
}

impl QFormer {
    /// Loads the Q-Former from `vb` rooted at its `qformer` prefix
    /// (`image_encoder.qformer` in HF names).
    pub fn load(cfg: &QFormerConfig, vb: VarBuilder) -> Result<Self> {
        let tvb = vb.pp("transformer");
        let queries = tvb.get(
            (cfg.num_queries(), cfg.hidden_size),
            "word_embeddings.weight",
        )?;
        let layers = (0..cfg.num_layers)
            .map(|i| Layer::load(cfg, i, tvb.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let final_layernorm = LayerNorm::load(
            cfg.hidden_size,
            cfg.layernorm_epsilon,
            tvb.pp("final_layernorm"),
        )?;
        Ok(Self {
            queries,
            layers,
            final_layernorm,
            checkpointing: None,
        })
    }

    /// Checkpoints every layer from now on (a layer keeps only its input for the backward
    /// pass and recomputes the rest there) while the image features it cross-attends to need
    /// no gradient (the ViT is frozen); with a training ViT the layers run as usual, since a
    /// segment passes the gradient of its one input only. `None` turns it off.
    pub fn set_checkpointing(&mut self, checkpointing: Option<Checkpointing>) {
        self.checkpointing = checkpointing;
    }

    /// Runs the queries against image features `[B, S, cross_width]`.
    pub fn forward(&self, image_features: &Tensor) -> Result<Tensor> {
        let b = image_features.dim(0)?;
        let encoder = image_features.to_dtype(self.queries.dtype())?;
        let (n, h) = self.queries.dims2()?;
        let mut x = self.queries.unsqueeze(0)?.expand((b, n, h))?.contiguous()?;
        for layer in &self.layers {
            x = match &self.checkpointing {
                Some(ck) if !encoder.track_op() => {
                    let (block, features) = (layer.clone(), encoder.clone());
                    ck.segment(&x, layer.has_params(), move |h| block.forward(h, &features))?
                }
                _ => layer.forward(&x, &encoder)?,
            };
        }
        self.final_layernorm.forward(&x)
    }
}

/// `glm_proj`: Q-Former width → language-model width, with bias.
pub fn load_glm_proj(qformer_width: usize, glm_width: usize, vb: VarBuilder) -> Result<Linear> {
    Linear::load(qformer_width, glm_width, vb)
}
