//! Multi-head attention helpers: head split/merge and scaled dot-product attention in f32.

use candle_core::{DType, Module, Result, Tensor};

/// `[B, S, H·D]` → `[B, H, S, D]`.
pub fn split_heads(x: &Tensor, num_heads: usize) -> Result<Tensor> {
    let (b, s, hd) = x.dims3()?;
    x.reshape((b, s, num_heads, hd / num_heads))?
        .transpose(1, 2)?
        .contiguous()
}

/// Splits a fused projection `[B, S, 3·H·D]` in `[Q|K|V]` block layout into `q`, `k`, `v`,
/// each `[B, H, S, D]`.
pub fn split_qkv(qkv: &Tensor, num_heads: usize) -> Result<(Tensor, Tensor, Tensor)> {
    let width = qkv.dim(2)? / 3;
    Ok((
        split_heads(&qkv.narrow(2, 0, width)?, num_heads)?,
        split_heads(&qkv.narrow(2, width, width)?, num_heads)?,
        split_heads(&qkv.narrow(2, 2 * width, width)?, num_heads)?,
    ))
}

/// `[B, H, S, D]` → `[B, S, H·D]` (heads concatenated in head order).
pub fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (b, h, s, d) = x.dims4()?;
    x.transpose(1, 2)?.reshape((b, s, h * d))
}

/// `softmax(q·kᵀ·scale + mask)·v` for `[B, H, Sq, D]` inputs; scores and softmax in f32.
///
/// `mask` is additive (0 or −∞), broadcastable to `[B, H, Sq, Sk]`. A few query rows (decode)
/// take [`crate::decode_attention`], one f32 pass over the keys and values; otherwise batched
/// matmuls.
pub fn scaled_dot_product_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    if crate::decode_attention::applies(q, k, v, mask) {
        return crate::decode_attention::attention(q, k, v, scale, mask);
    }
    composed_attention(q, k, v, scale, mask)
}

/// [`scaled_dot_product_attention`] with batched matmuls (differentiable when the softmax is):
/// the scores in f32, the probabilities cast back to the inputs' dtype for the product with `v`.
pub fn composed_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let dtype = q.dtype();
    let q = (q.to_dtype(DType::F32)? * scale)?;
    let k = k.to_dtype(DType::F32)?;
    let mut scores = q.matmul(&k.t()?)?;
    if let Some(mask) = mask {
        scores = scores.broadcast_add(mask)?;
    }
    // The fused softmax has no backward: when a gradient must flow, use the composed one.
    let probs = if scores.track_op() || v.track_op() {
        candle_nn::ops::softmax(&scores, candle_core::D::Minus1)?
    } else {
        crate::softmax::softmax_last_dim(&scores)?
    };
    // `v` may be a view of a larger KV-cache buffer; matmul reads strided batches directly.
    probs.to_dtype(dtype)?.matmul(v)
}

/// Unmasked multi-head self-attention with a fused `[Q;K;V]` projection and an output
/// `dense` (the ViT's and the Q-Former's).
#[derive(Debug, Clone)]
pub struct FusedSelfAttention {
    /// `[3·width, width]`, rows in `[Q|K|V]` blocks.
    pub query_key_value: crate::Linear,
    /// `[width, width]`.
    pub dense: crate::Linear,
    num_heads: usize,
}

impl FusedSelfAttention {
    /// Loads `query_key_value` and `dense` from `vb`.
    pub fn load(width: usize, num_heads: usize, vb: candle_nn::VarBuilder) -> Result<Self> {
        Ok(Self {
            query_key_value: crate::Linear::load(width, 3 * width, vb.pp("query_key_value"))?,
            dense: crate::Linear::load(width, width, vb.pp("dense"))?,
            num_heads,
        })
    }
}

impl Module for FusedSelfAttention {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let qkv = self.query_key_value.forward(x)?;
        let head_dim = qkv.dim(2)? / 3 / self.num_heads;
        let (q, k, v) = split_qkv(&qkv, self.num_heads)?;
        let ctx = scaled_dot_product_attention(&q, &k, &v, 1.0 / (head_dim as f64).sqrt(), None)?;
        self.dense.forward(&merge_heads(&ctx)?)
    }
}
