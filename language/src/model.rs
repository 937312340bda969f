//! ChatGLM-6B (GLM v1): 2D RoPE, prefix-LM attention, `α·LN(x) + f(LN(x))` residuals,
//! tanh GELU, final LayerNorm and `lm_head`.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;
use visualglm_nn::checkpoint::{Checkpointing, HasParams};
use visualglm_nn::{
    merge_heads, scaled_dot_product_attention, split_qkv, Activation, LayerNorm, Linear, Mlp,
};

use crate::config::GlmConfig;
use crate::embedding::{same_values, WordEmbeddings};
use crate::kv_cache::KvCache;
use crate::positions::attends;
use crate::rotary::Rotary2d;

/// Self-attention with fused QKV rows in `[Q|K|V]` block layout (the loader converts HF's
/// per-head interleaved rows to it).
#[derive(Debug, Clone)]
struct SelfAttention {
    query_key_value: Linear,
    dense: Linear,
    num_heads: usize,
    head_dim: usize,
}

impl SelfAttention {
    fn load(cfg: &GlmConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            query_key_value: Linear::load(h, 3 * h, vb.pp("query_key_value"))?,
            dense: Linear::load(h, h, vb.pp("dense"))?,
            num_heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        rotary: &Rotary2d,
        position_ids: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<(&mut KvCache, usize)>,
    ) -> Result<Tensor> {
        let qkv = self.query_key_value.forward(x)?;
        let (q, k, v) = split_qkv(&qkv, self.num_heads)?;
        let q = rotary.apply(&q, position_ids)?;
        let k = rotary.apply(&k, position_ids)?;
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, &k, &v)?,
            None => (k, v),
        };
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let ctx = scaled_dot_product_attention(&q, &k, &v, scale, mask)?;
        self.dense.forward(&merge_heads(&ctx)?)
    }
}

/// One GLM block: `h = α·LN₁(x) + Attn(LN₁(x))`, `y = α·LN₂(h) + MLP(LN₂(h))`.
#[derive(Debug, Clone)]
struct Block {
    input_layernorm: LayerNorm,
    attention: SelfAttention,
    post_attention_layernorm: LayerNorm,
    mlp: Mlp,
    alpha: f64,
}

impl Block {
    fn load(cfg: &GlmConfig, vb: VarBuilder) -> Result<Self> {
        let (h, eps) = (cfg.hidden_size, cfg.layernorm_epsilon);
        Ok(Self {
            input_layernorm: LayerNorm::load(h, eps, vb.pp("input_layernorm"))?,
            attention: SelfAttention::load(cfg, vb.pp("attention"))?,
            post_attention_layernorm: LayerNorm::load(h, eps, vb.pp("post_attention_layernorm"))?,
            mlp: Mlp::load(
                cfg.hidden_size,
                cfg.mlp_width(),
                Activation::GeluTanh,
                vb.pp("mlp.dense_h_to_4h"),
                vb.pp("mlp.dense_4h_to_h"),
            )?,
            alpha: cfg.alpha(),
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        rotary: &Rotary2d,
        position_ids: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<(&mut KvCache, usize)>,
    ) -> Result<Tensor> {
        let a = self.input_layernorm.forward(x)?;
        let attn = self
            .attention
            .forward(&a, rotary, position_ids, mask, cache)?;
        let h = ((&a * self.alpha)? + attn)?;
        let m = self.post_attention_layernorm.forward(&h)?;
        (&m * self.alpha)? + self.mlp.forward(&m)?
    }

    /// Whether some weight of the block trains (a variable or an adapter).
    fn has_params(&self) -> bool {
        self.input_layernorm.has_params()
            || self.attention.query_key_value.has_params()
            || self.attention.dense.has_params()
            || self.post_attention_layernorm.has_params()
            || self.mlp.has_params()
    }
}

/// The ChatGLM-6B language model.
#[derive(Debug, Clone)]
pub struct ChatGlm {
    word_embeddings: WordEmbeddings,
    layers: Vec<Block>,
    final_layernorm: LayerNorm,
    lm_head: Linear,
    rotary: Rotary2d,
    config: GlmConfig,
    /// The activation dtype (that of the `VarBuilder` the model was loaded from).
    dtype: DType,
    /// The dtype new KV caches store keys and values in (`None`: the activation dtype).
    kv_cache_dtype: Option<DType>,
    /// Recompute each block in the backward pass instead of keeping its activations.
    checkpointing: Option<Checkpointing>,
    device: Device,
}

impl ChatGlm {
    /// Loads the model from `vb` at the checkpoint root (`transformer.*`, `lm_head.weight`).
    pub fn load(cfg: &GlmConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden_size;
        let tvb = vb.pp("transformer");
        let word_embeddings =
            WordEmbeddings::dense(tvb.get((cfg.vocab_size, h), "word_embeddings.weight")?)?;
        let layers = (0..cfg.num_layers)
            .map(|i| Block::load(cfg, tvb.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let final_layernorm = LayerNorm::load(h, cfg.layernorm_epsilon, tvb.pp("final_layernorm"))?;
        let lm_head = Linear::load_no_bias(h, cfg.vocab_size, vb.pp("lm_head"))?;
        let rotary = Rotary2d::new(cfg.head_dim(), cfg.rotary_inv_freq_f16, vb.device())?;
        Ok(Self {
            word_embeddings,
            layers,
            final_layernorm,
            lm_head,
            rotary,
            config: cfg.clone(),
            dtype: vb.dtype(),
            kv_cache_dtype: None,
            checkpointing: None,
            device: vb.device().clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GlmConfig {
        &self.config
    }

    /// The device of the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The activation dtype (that of the dense weights; quantized weights run in it too).
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The word-embedding table (dense or quantized).
    pub fn word_embeddings(&self) -> &WordEmbeddings {
        &self.word_embeddings
    }

    /// The output projection `lm_head` (`[vocab, hidden]`, no bias). Training's chunked loss
    /// (`visualglm_train::chunked_ce`) runs it a chunk of rows at a time instead of
    /// [`ChatGlm::logits`].
    pub fn lm_head(&self) -> &Linear {
        &self.lm_head
    }

    /// An empty KV cache sized for this model, storing keys and values in
    /// [`ChatGlm::kv_cache_dtype`].
    pub fn new_cache(&self) -> KvCache {
        KvCache::with_dtype(self.layers.len(), self.kv_cache_dtype)
    }

    /// The dtype new KV caches store keys and values in (`None`: the activation dtype).
    pub fn kv_cache_dtype(&self) -> Option<DType> {
        self.kv_cache_dtype
    }

    /// Stores the keys and values of caches made from now on in `dtype` (`None`: the activation
    /// dtype). f16 for an f32 (e.g. quantized) model halves the cache, 0.9 → 0.46 MB per
    /// position for the 28-layer model, at the cost of rounding keys and values to f16.
    pub fn set_kv_cache_dtype(&mut self, dtype: Option<DType>) {
        self.kv_cache_dtype = dtype;
    }

    /// Checkpoints every block from now on (SAT's `checkpoint_activations`): a block keeps only
    /// its input for the backward pass and recomputes the rest there. Forwards with a KV cache
    /// (generation) are never checkpointed. `None` turns it off.
    pub fn set_checkpointing(&mut self, checkpointing: Option<Checkpointing>) {
        self.checkpointing = checkpointing;
    }

    /// Word embeddings of `ids` `[B, S]` → `[B, S, hidden]`.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        self.word_embeddings.forward(ids, self.dtype)
    }

    /// Runs the blocks and the final LayerNorm on input embeddings `[B, S, hidden]`.
    ///
    /// `position_ids` is `[B, 2, S]` (u32), `mask` additive `[B|1, 1, S, past+S]`. With a cache,
    /// keys/values are appended to it. When `layer_outputs` is given, each block's output is
    /// pushed there.
    pub fn forward_embeds(
        &self,
        embeds: &Tensor,
        position_ids: &Tensor,
        mask: Option<&Tensor>,
        mut cache: Option<&mut KvCache>,
        mut layer_outputs: Option<&mut Vec<Tensor>>,
    ) -> Result<Tensor> {
        let mut x = embeds.to_dtype(self.dtype())?;
        for (i, layer) in self.layers.iter().enumerate() {
            x = match (&self.checkpointing, cache.as_deref_mut()) {
                (Some(ck), None) => {
                    let (block, rotary) = (layer.clone(), self.rotary.clone());
                    let (pos, mask) = (position_ids.clone(), mask.cloned());
                    ck.segment(&x, layer.has_params(), move |h| {
                        block.forward(h, &rotary, &pos, mask.as_ref(), None)
                    })?
                }
                (_, c) => layer.forward(&x, &self.rotary, position_ids, mask, c.map(|c| (c, i)))?,
            };
            if let Some(out) = layer_outputs.as_deref_mut() {
                out.push(x.clone());
            }
        }
        self.final_layernorm.forward(&x)
    }

    /// Logits (f32) from final hidden states `[B, S, hidden]` → `[B, S, vocab]`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(hidden)?.to_dtype(DType::F32)
    }

    /// The additive prefix-LM mask `[1, 1, S, past+S]` for `seq_len` new tokens after `past`
    /// cached ones, with a context (bidirectional part) of `context_len` tokens.
    pub fn prefix_lm_mask(
        &self,
        context_len: usize,
        past: usize,
        seq_len: usize,
    ) -> Result<Tensor> {
        prefix_lm_mask(context_len, past, seq_len, self.device())
    }
}

/// The additive prefix-LM mask `[1, 1, S, past+S]` (0 = attend, −∞ = blocked).
pub fn prefix_lm_mask(
    context_len: usize,
    past: usize,
    seq_len: usize,
    device: &Device,
) -> Result<Tensor> {
    let total = past + seq_len;
    let data: Vec<f32> = (0..seq_len)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if attends(past + i, j, context_len) {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Tensor::from_vec(data, (1, 1, seq_len, total), device)
}

/// Weight-only quantization of the GLM linears (inference only; see `visualglm_nn::quant`).
impl ChatGlm {
    /// Quantizes every GLM layer's `query_key_value`, `dense`, `dense_h_to_4h` and
    /// `dense_4h_to_h` weight to `dtype`, as the release's HF `model.quantize(bits)` does:
    /// the word embeddings, LayerNorms, biases and `lm_head` stay in the run dtype (use
    /// [`ChatGlm::quantize_lm_head`] for `lm_head`). A layer whose input width is not a multiple
    /// of the block size falls back per [`visualglm_nn::quant::fit_dtype`] with a warning.
    /// Returns each weight's canonical name and the type used (`None`: left dense).
    pub fn quantize(
        &mut self,
        dtype: candle_core::quantized::GgmlDType,
    ) -> Result<Vec<(String, Option<candle_core::quantized::GgmlDType>)>> {
        self.named_linears_mut(false)
            .into_iter()
            .map(|(name, l)| {
                Ok((
                    name.clone(),
                    visualglm_nn::quant::quantize_linear(&name, l, dtype)?,
                ))
            })
            .collect()
    }

    /// Quantizes `lm_head` too (not done by the release; saves `vocab × hidden` weights).
    pub fn quantize_lm_head(
        &mut self,
        dtype: candle_core::quantized::GgmlDType,
    ) -> Result<Option<candle_core::quantized::GgmlDType>> {
        visualglm_nn::quant::quantize_linear(LM_HEAD_WEIGHT, &mut self.lm_head, dtype)
    }

    /// Quantizes the word-embedding table to `dtype` (per
    /// [`visualglm_nn::quant::fit_dtype`]: `None` = width fits no type, left dense with a
    /// warning). With `lm_head`, `lm_head` is quantized too: when its (dense) weight holds the
    /// same values as the table (HF layout: tied), it gets the **same** `Arc<QTensor>` and both
    /// dense tensors are dropped (chatglm.cpp's layout); otherwise it is quantized on its own.
    /// Returns the canonical names and types used, embeddings first.
    pub fn quantize_embeddings(
        &mut self,
        dtype: GgmlDType,
        lm_head: bool,
    ) -> Result<Vec<(String, Option<GgmlDType>)>> {
        let mut out = Vec::with_capacity(2);
        let (_, hidden) = self.word_embeddings.dims()?;
        let chosen = match &self.word_embeddings {
            WordEmbeddings::Quantized(q) => Some(q.dtype()),
            WordEmbeddings::Dense(e) => {
                let chosen = visualglm_nn::quant::fit_dtype(dtype, hidden);
                match chosen {
                    Some(d) if d != dtype => tracing::debug!(
                        "{WORD_EMBEDDINGS_WEIGHT}: width {hidden} is not a multiple of {}; using {}",
                        dtype.block_size(),
                        visualglm_nn::quant::dtype_name(d)
                    ),
                    None => tracing::debug!(
                        "{WORD_EMBEDDINGS_WEIGHT}: width {hidden} is not a multiple of {}; left \
                         unquantized",
                        dtype.block_size()
                    ),
                    _ => {}
                }
                if let Some(d) = chosen {
                    let table = e.embeddings().clone();
                    let tied = lm_head
                        && self
                            .lm_head
                            .weight()
                            .map(|w| same_values(w, &table))
                            .transpose()?
                            .unwrap_or(false);
                    let q =
                        Arc::new(QTensor::quantize(&table, d).map_err(|e| {
                            e.context(format!("quantizing {WORD_EMBEDDINGS_WEIGHT}"))
                        })?);
                    drop(table);
                    let q = visualglm_nn::QuantizedWeight::new(q)?;
                    self.word_embeddings = WordEmbeddings::from_quantized_weight(q.clone())?;
                    if tied {
                        self.lm_head.set_quantized_weight(q)?;
                    }
                }
                chosen
            }
        };
        out.push((WORD_EMBEDDINGS_WEIGHT.to_string(), chosen));
        if lm_head {
            let d = match self.lm_head.quantized_dtype() {
                Some(d) => Some(d),
                None => self.quantize_lm_head(dtype)?,
            };
            out.push((LM_HEAD_WEIGHT.to_string(), d));
        }
        Ok(out)
    }

    /// Replaces the word-embedding table by a quantized `[vocab, hidden]` one; with
    /// `tie_lm_head`, `lm_head` gets the same weight as its base (one copy for both).
    pub fn set_quantized_embeddings(
        &mut self,
        table: visualglm_nn::QuantizedWeight,
        tie_lm_head: bool,
    ) -> Result<()> {
        let want = self.word_embeddings.dims()?;
        let got = table.dims()?;
        if got != want {
            candle_core::bail!("quantized embeddings have shape {got:?}, the model needs {want:?}");
        }
        if tie_lm_head {
            self.lm_head.set_quantized_weight(table.clone())?;
        }
        self.word_embeddings = WordEmbeddings::from_quantized_weight(table)?;
        Ok(())
    }

    /// Replaces the word-embedding table (dense in any float dtype, or quantized); its
    /// `[vocab, hidden]` must match. `lm_head` is left as it is.
    pub fn set_word_embeddings(&mut self, table: WordEmbeddings) -> Result<()> {
        let want = self.word_embeddings.dims()?;
        let got = table.dims()?;
        if got != want {
            candle_core::bail!("word embeddings have shape {got:?}, the model needs {want:?}");
        }
        self.word_embeddings = table;
        Ok(())
    }

    /// Replaces `lm_head`'s base by a quantized `[vocab, hidden]` weight.
    pub fn set_quantized_lm_head(&mut self, weight: visualglm_nn::QuantizedWeight) -> Result<()> {
        self.lm_head.set_quantized_weight(weight)
    }

    /// Whether `lm_head`'s quantized base is the very tensor of the quantized embedding table
    /// (shared, not a copy).
    pub fn lm_head_shares_embeddings(&self) -> bool {
        match (self.word_embeddings.quantized_table(), self.lm_head.base()) {
            (Some(e), visualglm_nn::LinearBase::Quantized(q)) => q.shares_storage(e),
            _ => false,
        }
    }

    /// Every quantizable linear with the canonical name of its weight
    /// (`transformer.layers.{i}.attention.query_key_value.weight`, …), in layer order, then
    /// `lm_head.weight` when `include_lm_head`.
    pub fn named_linears_mut(&mut self, include_lm_head: bool) -> Vec<(String, &mut Linear)> {
        let mut out = Vec::with_capacity(4 * self.layers.len() + 1);
        for (i, b) in self.layers.iter_mut().enumerate() {
            let p = format!("transformer.layers.{i}");
            out.push((
                format!("{p}.attention.query_key_value.weight"),
                &mut b.attention.query_key_value,
            ));
            out.push((
                format!("{p}.attention.dense.weight"),
                &mut b.attention.dense,
            ));
            out.push((format!("{p}.mlp.dense_h_to_4h.weight"), &mut b.mlp.up));
            out.push((format!("{p}.mlp.dense_4h_to_h.weight"), &mut b.mlp.down));
        }
        if include_lm_head {
            out.push((LM_HEAD_WEIGHT.to_string(), &mut self.lm_head));
        }
        out
    }
}

/// Canonical name of the `lm_head` weight.
const LM_HEAD_WEIGHT: &str = "lm_head.weight";
/// Canonical name of the word-embedding table.
const WORD_EMBEDDINGS_WEIGHT: &str = "transformer.word_embeddings.weight";
