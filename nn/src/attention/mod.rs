//! Multi-head attention helpers: head split/merge and scaled dot-product attention in f32.

pub mod decode;
pub mod projection;

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

/// Query rows per pass of the batched-matmul attention at inference, so that one pass holds
/// `[B, H, QUERY_CHUNK, Sk]` f32 scores (32 heads, 1 500 positions: 98 MB) instead of
/// `[B, H, Sq, Sk]` (288 MB, and as much again for the probabilities).
pub const QUERY_CHUNK: usize = 512;

/// `softmax(q·kᵀ·scale + mask)·v` for `[B, H, Sq, D]` inputs; scores and softmax in f32.
///
/// `mask` is additive (0 or −∞), broadcastable to `[B, H, Sq, Sk]`. A few query rows (decode)
/// take [`decode`], one f32 pass over the keys and values; otherwise batched
/// matmuls, at inference [`QUERY_CHUNK`] query rows at a time.
pub fn scaled_dot_product_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    if let Some(out) = decode::try_attention(q, k, v, scale, mask)? {
        return Ok(out);
    }
    let sq = q.dim(2)?;
    let tracked = q.track_op() || k.track_op() || v.track_op();
    // A mask with one row per query row is split with the queries; one with a single row
    // serves every chunk; any other form is not split.
    let mask_rows = match mask {
        Some(m) if m.rank() == 4 => Some(m.dim(2)?),
        Some(_) => Some(0),
        None => None,
    };
    let per_query_mask = mask_rows == Some(sq);
    let splittable = per_query_mask || matches!(mask_rows, None | Some(1));
    if tracked || sq <= QUERY_CHUNK || !splittable {
        return composed_attention(q, k, v, scale, mask);
    }
    let mut parts = Vec::with_capacity(sq.div_ceil(QUERY_CHUNK));
    for start in (0..sq).step_by(QUERY_CHUNK) {
        let len = QUERY_CHUNK.min(sq - start);
        let m = match mask {
            Some(m) if per_query_mask => Some(m.narrow(2, start, len)?),
            other => other.cloned(),
        };
        parts.push(composed_attention(
            &q.narrow(2, start, len)?,
            k,
            v,
            scale,
            m.as_ref(),
        )?);
    }
    Tensor::cat(&parts, 2)
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
    // `v` may be a view of a larger KV-cache buffer; matmul reads strided batches directly. A
    // cache kept in another dtype (f16 for an f32 model) is widened for the product.
    probs.to_dtype(dtype)?.matmul(&v.to_dtype(dtype)?)
}

/// Unmasked multi-head self-attention with a fused `[Q;K;V]` projection and an output
/// projection.
#[derive(Debug, Clone)]
pub struct FusedSelfAttention {
    /// `[3·width, width]`, rows in `[Q|K|V]` blocks.
    pub qkv: crate::Linear,
    /// The output projection `[width, width]`.
    pub out: crate::Linear,
    num_heads: usize,
}

impl FusedSelfAttention {
    /// Loads the fused QKV projection from `qkv` and the output projection from `out`, which
    /// name them as the checkpoint does.
    pub fn load(
        width: usize,
        num_heads: usize,
        qkv: candle_nn::VarBuilder,
        out: candle_nn::VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            qkv: crate::Linear::load(width, 3 * width, qkv)?,
            out: crate::Linear::load(width, width, out)?,
            num_heads,
        })
    }
}

impl Module for FusedSelfAttention {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        use projection::{attention, Heads};
        let qkv = self.qkv.forward(x)?;
        let width = qkv.dim(2)? / 3;
        let head_dim = width / self.num_heads;
        let ctx = attention(
            Heads::new(&qkv, 0),
            Heads::new(&qkv, width),
            Heads::new(&qkv, 2 * width),
            self.num_heads,
            head_dim,
            1.0 / (head_dim as f64).sqrt(),
        )?;
        self.out.forward(&ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use visualglm_testing::max_abs_diff;

    #[test]
    fn long_inputs_in_query_chunks_match_one_pass() -> Result<()> {
        let dev = Device::Cpu;
        let (b, h, sq, d) = (1usize, 2usize, 2 * QUERY_CHUNK + 3, 8usize);
        let q = Tensor::randn(0f32, 1.0, (b, h, sq, d), &dev)?;
        let k = Tensor::randn(0f32, 1.0, (b, h, sq, d), &dev)?;
        let v = Tensor::randn(0f32, 1.0, (b, h, sq, d), &dev)?;
        // A causal mask (one row per query) and a padding mask (one row for all).
        let causal: Vec<f32> = (0..sq)
            .flat_map(|i| (0..sq).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
            .collect();
        let causal = Tensor::from_vec(causal, (1, 1, sq, sq), &dev)?;
        let pad: Vec<f32> = (0..sq)
            .map(|j| if j < 5 { f32::NEG_INFINITY } else { 0.0 })
            .collect();
        let pad = Tensor::from_vec(pad, (1, 1, 1, sq), &dev)?;
        for mask in [None, Some(&causal), Some(&pad)] {
            let got = scaled_dot_product_attention(&q, &k, &v, 0.3, mask)?;
            let want = composed_attention(&q, &k, &v, 0.3, mask)?;
            assert_eq!(got.dims(), want.dims());
            let diff = max_abs_diff(&got, &want);
            assert!(diff <= 1e-6, "{diff}");
        }
        Ok(())
    }
}
