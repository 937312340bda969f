//! Unmasked multi-head attention read in place from the projection outputs (the ViT's and the
//! Q-Former's), one (batch row, head) pair per task.
//!
//! The general path ([`crate::attention::scaled_dot_product_attention`]) first copies each of
//! `q`, `k` and `v` out of the fused projection into `[B, H, S, D]`, scales a copy of `q`, then
//! runs two batched matmuls that split every small per-head product over the threads. Here each
//! task multiplies its head's rows where they lie (`[B, S, C]` rows, the head's `D` columns at
//! a column offset), single-threaded, with the scores and probabilities in a per-task buffer,
//! and the tasks share the threads. One ViT-g layer's attention at 8 images: 37 → 21 ms on two
//! threads (PyTorch: 45 ms); the Q-Former's cross-attention: 6.7 → 2.2 ms (`BENCHMARKS.md`).

use candle_core::{Result, Tensor};
use rayon::prelude::*;

/// One operand's heads: columns `offset .. offset + H·D` of a `[B, S, C]` tensor, head `h` in
/// columns `offset + h·D ..`.
#[derive(Clone, Copy, Debug)]
pub struct Heads<'a> {
    /// The projection output, `[B, S, C]`.
    pub tensor: &'a Tensor,
    /// The column of head 0.
    pub offset: usize,
}

impl<'a> Heads<'a> {
    /// Heads starting at column `offset` of `tensor`.
    pub fn new(tensor: &'a Tensor, offset: usize) -> Self {
        Self { tensor, offset }
    }

    /// The heads copied out, `[B, H, S, D]`.
    pub fn copied(&self, num_heads: usize, head_dim: usize) -> Result<Tensor> {
        let columns = self.tensor.narrow(2, self.offset, num_heads * head_dim)?;
        crate::split_heads(&columns, num_heads)
    }
}

/// Whether [`try_attention`] takes these operands: untracked contiguous f32 CPU tensors of rank
/// 3, one batch size, `k` and `v` with the same number of rows, and `num_heads · head_dim`
/// columns from each offset within each tensor's width.
pub fn applies(q: Heads, k: Heads, v: Heads, num_heads: usize, head_dim: usize) -> bool {
    let width = num_heads * head_dim;
    let fits = |h: &Heads| {
        crate::kernels::fast_math::fused_applies(h.tensor)
            && h.tensor
                .dims3()
                .is_ok_and(|(_, _, c)| h.offset + width <= c)
    };
    let rows = |h: &Heads| h.tensor.dims3().map(|(b, s, _)| (b, s)).ok();
    width > 0
        && fits(&q)
        && fits(&k)
        && fits(&v)
        && rows(&k) == rows(&v)
        && rows(&q).map(|r| r.0) == rows(&k).map(|r| r.0)
}

/// `softmax(q·kᵀ·scale)·v` with heads concatenated, `[B, Sq, H·D]`: in place when [`applies`]
/// accepts the operands, otherwise (tracked for gradients, f16, …) through copied-out heads and
/// [`crate::scaled_dot_product_attention`].
pub fn attention(
    q: Heads,
    k: Heads,
    v: Heads,
    num_heads: usize,
    head_dim: usize,
    scale: f64,
) -> Result<Tensor> {
    let ctx = match try_attention(q, k, v, num_heads, head_dim, scale)? {
        Some(ctx) => ctx,
        None => {
            let split = |h: Heads| h.copied(num_heads, head_dim);
            crate::scaled_dot_product_attention(&split(q)?, &split(k)?, &split(v)?, scale, None)?
        }
    };
    crate::merge_heads(&ctx)
}

/// `softmax(q·kᵀ·scale)·v` per head for operands [`applies`] accepts, as `[B, H, Sq, D]` f32
/// (the layout [`crate::merge_heads`] takes); `None`, with nothing computed, for others.
pub fn try_attention(
    q: Heads,
    k: Heads,
    v: Heads,
    num_heads: usize,
    head_dim: usize,
    scale: f64,
) -> Result<Option<Tensor>> {
    if !applies(q, k, v, num_heads, head_dim) {
        return Ok(None);
    }
    let (b, sq, _) = q.tensor.dims3()?;
    let sk = k.tensor.dim(1)?;
    let d = head_dim;
    let mut out = vec![0f32; b * num_heads * sq * d];
    if sq > 0 && sk > 0 && d > 0 {
        with_rows(q, |qs| {
            with_rows(k, |ks| {
                with_rows(v, |vs| {
                    // Scores and probabilities: one pair of buffers per rayon job, reused.
                    let scratch = || (vec![0f32; sq * sk], vec![0f32; sq * sk]);
                    out.par_chunks_mut(sq * d).enumerate().for_each_init(
                        scratch,
                        |(scores, probs), (task, out)| {
                            let (bi, hi) = (task / num_heads, task % num_heads);
                            // Scores `[Sq, Sk]` = q_h · k_hᵀ · scale.
                            product(
                                qs.head(bi, hi, d),
                                (1, qs.stride),
                                ks.head(bi, hi, d),
                                (ks.stride, 1),
                                (sq, sk, d),
                                scale as f32,
                                scores,
                            );
                            crate::softmax::softmax_rows(scores, probs, sk);
                            // Output `[Sq, D]` = probs · v_h.
                            product(
                                probs,
                                (1, sk),
                                vs.head(bi, hi, d),
                                (1, vs.stride),
                                (sq, d, sk),
                                1.0,
                                out,
                            );
                        },
                    );
                })
            })
        })???;
    }
    Tensor::from_vec(out, (b, num_heads, sq, d), q.tensor.device()).map(Some)
}

/// An operand's storage from its head-0 column, with its row stride `C` and rows per batch
/// row `S`.
struct Rows<'a> {
    values: &'a [f32],
    stride: usize,
    rows: usize,
}

impl<'a> Rows<'a> {
    /// The elements from head `h` of batch row `b` to the end of that batch row's last row:
    /// row `i` of the head is `[i·C .. i·C + D]`.
    fn head(&self, b: usize, h: usize, d: usize) -> &'a [f32] {
        let from = b * self.rows * self.stride + h * d;
        let to = from + self.rows.saturating_sub(1) * self.stride + d;
        // `applies` checked `offset + H·D ≤ C` and the tensor's length, so the span is in
        // bounds; an empty slice would only make `product` refuse to run.
        self.values.get(from..to).unwrap_or(&[])
    }
}

/// Calls `f` with `heads`' values from its head-0 column on, under the storage's read lock.
fn with_rows<T>(heads: Heads, f: impl FnOnce(Rows<'_>) -> T) -> Result<T> {
    let (_, s, c) = heads.tensor.dims3()?;
    crate::kernels::fast_math::with_f32(heads.tensor, |all| {
        f(Rows {
            values: all.get(heads.offset..).unwrap_or(&[]),
            stride: c,
            rows: s,
        })
    })
}

/// `dst[m×n] = scale · lhs[m×k] · rhs[k×n]` (dst row-major), single-threaded; operands are
/// given by their (column, row) strides. Does nothing when an operand's slice is too short for
/// its shape and strides.
fn product(
    lhs: &[f32],
    (lhs_cs, lhs_rs): (usize, usize),
    rhs: &[f32],
    (rhs_cs, rhs_rs): (usize, usize),
    (m, n, k): (usize, usize, usize),
    scale: f32,
    dst: &mut [f32],
) {
    let reach =
        |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs + 1;
    if m == 0
        || n == 0
        || k == 0
        || lhs.len() < reach(m, k, lhs_rs, lhs_cs)
        || rhs.len() < reach(k, n, rhs_rs, rhs_cs)
        || dst.len() < m * n
    {
        return;
    }
    // SAFETY: `gemm` reads `lhs[i·lhs_rs + t·lhs_cs]` for i < m, t < k, and
    // `rhs[t·rhs_rs + j·rhs_cs]` for t < k, j < n, and writes `dst[i·n + j]`: every index is
    // below the length checked above, and `dst` is a unique borrow that the inputs (shared
    // borrows) cannot alias. `read_dst` is false, so `dst`'s old contents are not read.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            0.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attention::composed_attention;
    use candle_core::{DType, Device, Var};
    use visualglm_testing::max_abs_diff;

    /// The reference: heads copied out of their columns, batched-matmul attention, merged.
    fn reference(
        q: Heads,
        k: Heads,
        v: Heads,
        heads: usize,
        d: usize,
        scale: f64,
    ) -> Result<Tensor> {
        let split = |h: Heads| crate::split_heads(&h.tensor.narrow(2, h.offset, heads * d)?, heads);
        crate::merge_heads(&composed_attention(
            &split(q)?,
            &split(k)?,
            &split(v)?,
            scale,
            None,
        )?)
    }

    #[test]
    fn self_attention_on_a_fused_projection_matches_the_copied_heads() -> Result<()> {
        // 2 images, 7 tokens, 3 heads of 5; `[Q|K|V]` blocks plus 4 unused columns.
        let (heads, d) = (3, 5);
        let qkv = Tensor::randn(0f32, 1.0, (2, 7, 3 * heads * d + 4), &Device::Cpu)?;
        let (q, k, v) = (
            Heads::new(&qkv, 0),
            Heads::new(&qkv, 15),
            Heads::new(&qkv, 30),
        );
        let got = try_attention(q, k, v, heads, d, 0.4)?.expect("applies");
        assert_eq!(got.dims(), &[2, heads, 7, d]);
        let want = reference(q, k, v, heads, d, 0.4)?;
        assert!(max_abs_diff(&crate::merge_heads(&got)?, &want) < 1e-5);
        assert!(max_abs_diff(&attention(q, k, v, heads, d, 0.4)?, &want) < 1e-5);
        Ok(())
    }

    #[test]
    fn cross_attention_reads_queries_and_fused_keys_values_in_place() -> Result<()> {
        // The Q-Former's form: few queries, longer `[K|V]` rows at offsets 0 and H·D.
        let (heads, d) = (4, 6);
        let dev = &Device::Cpu;
        let q = Tensor::randn(0f32, 1.0, (3, 5, heads * d), dev)?;
        let kv = Tensor::randn(0f32, 1.0, (3, 13, 2 * heads * d), dev)?;
        let (q, k, v) = (
            Heads::new(&q, 0),
            Heads::new(&kv, 0),
            Heads::new(&kv, heads * d),
        );
        let got = attention(q, k, v, heads, d, 0.3)?;
        assert_eq!(got.dims(), &[3, 5, heads * d]);
        assert!(max_abs_diff(&got, &reference(q, k, v, heads, d, 0.3)?) < 1e-5);
        Ok(())
    }

    #[test]
    fn other_operands_are_refused_and_take_the_copied_heads() -> Result<()> {
        let (heads, d) = (2, 4);
        let dev = &Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 6, 3 * heads * d), dev)?;
        let half = x.to_dtype(DType::F16)?;
        let transposed = Tensor::randn(0f32, 1.0, (2, 3 * heads * d, 6), dev)?.transpose(1, 2)?;
        let other_batch = Tensor::randn(0f32, 1.0, (3, 6, 3 * heads * d), dev)?;
        let shorter = Tensor::randn(0f32, 1.0, (2, 5, 3 * heads * d), dev)?;
        fn at(t: &Tensor) -> (Heads<'_>, Heads<'_>, Heads<'_>) {
            (Heads::new(t, 0), Heads::new(t, 8), Heads::new(t, 16))
        }
        let (q, k, v) = at(&x);
        for (q, k, v) in [
            at(&half),
            at(&transposed),
            (q, k, Heads::new(&x, 17)),          // past the width
            (Heads::new(&other_batch, 0), k, v), // another batch size
            (q, Heads::new(&shorter, 8), v),     // keys and values of different lengths
        ] {
            assert!(!applies(q, k, v, heads, d));
            assert!(try_attention(q, k, v, heads, d, 0.5)?.is_none());
        }
        // f16 and strided operands still get an answer, from the copied heads (f16 rounds
        // the probabilities and the output).
        for (t, tolerance) in [(&half, 5e-3), (&transposed, 1e-5)] {
            let (q, k, v) = at(t);
            let got = attention(q, k, v, heads, d, 0.5)?;
            assert_eq!(got.dtype(), t.dtype());
            let t32 = t.to_dtype(DType::F32)?;
            let (q32, k32, v32) = at(&t32);
            assert!(max_abs_diff(&got, &reference(q32, k32, v32, heads, d, 0.5)?) < tolerance);
        }
        Ok(())
    }

    #[test]
    fn a_tracked_projection_keeps_the_differentiable_path() -> Result<()> {
        let (heads, d) = (2, 3);
        let x = Var::randn(0f32, 1.0, (1, 4, 3 * heads * d), &Device::Cpu)?;
        let t = x.as_tensor();
        let (q, k, v) = (Heads::new(t, 0), Heads::new(t, 6), Heads::new(t, 12));
        assert!(try_attention(q, k, v, heads, d, 0.5)?.is_none());
        let grads = attention(q, k, v, heads, d, 0.5)?
            .sqr()?
            .sum_all()?
            .backward()?;
        let g = grads.get(&x).expect("a gradient for the projection");
        assert!(g.abs()?.sum_all()?.to_scalar::<f32>()? > 0.0);
        Ok(())
    }
}
