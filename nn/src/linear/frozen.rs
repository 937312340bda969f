//! The product of a frozen base weight as a graph node whose backward returns only the
//! gradient of its input.
//!
//! candle's matmul backward also computes the weight side `xᵀ·grad` when the weight is not a
//! variable (one more full product per frozen linear in training), and candle's `QMatMul` has no
//! backward at all. Here [`attach`] wraps an output `y = x·Wᵀ (+ b)` computed on the detached
//! input by the inference kernels into a custom op over `(x, y)`: its forward is a copy of `y`,
//! its backward `grad·W` for `x` only ([`backward_input`]), in f32 a block of weight rows at a
//! time for half-precision and GGML-quantized weights.
//!
//! Measured once (release build, CPU, 2 rayon threads on a machine shared with other builds):
//! the backward of `sum(x·Wᵀ ∘ r)` for a frozen f32 `W` `[4096, 4096]` and `x` `[1280, 4096]`
//! took 604–739 ms through candle's matmul and 404–432 ms through this op (3 rounds each,
//! identical input gradients).

use candle_core::{DType, Result, Tensor};

use super::base::LinearBase;
use crate::graph::join_output;

/// The most bytes of f32 weight rows [`backward_input`] widens at once.
const BLOCK_BYTES: usize = 16 << 20;

/// How many weight rows of width `in_dim` make one f32 block of [`BLOCK_BYTES`] (at least 1).
pub(super) fn block_rows(in_dim: usize) -> usize {
    (BLOCK_BYTES / (4 * in_dim.max(1))).max(1)
}

/// Whether the product of `base` with `x` goes through the frozen op: the input is tracked for
/// gradients and the weight is not (quantized, or a dense tensor that is no variable and comes
/// from no tracked op).
pub(super) fn applies(base: &LinearBase, x: &Tensor) -> bool {
    x.track_op()
        && match base {
            LinearBase::Dense(w) => !w.track_op(),
            LinearBase::Quantized(_) => true,
        }
}

/// `y` (computed from `x.detach()`) as a node of `x`'s graph whose backward gives `x` the
/// gradient `grad·W` (weight rows widened `block_rows` at a time) and nothing to the weight.
pub(super) fn attach(
    x: &Tensor,
    y: &Tensor,
    base: &LinearBase,
    block_rows: usize,
) -> Result<Tensor> {
    let base = base.clone();
    join_output(x, y, "frozen-linear", move |x, grad| {
        let g = backward_input(&base, grad, block_rows)?.to_dtype(x.dtype())?;
        Ok(Some(g))
    })
}

/// `grad·W` `[.., in]` in f32 for `grad` `[.., out]` (any float dtype) and the `[out, in]`
/// weight of `base`: one product for a dense f32 weight; for f16/bf16 and GGML-quantized weights
/// the sum over blocks of `block_rows` weight rows of `grad[.., rows]·W[rows, :]`, each block
/// widened (dequantized) to f32 on the weight's device, so the f32 temporary never exceeds
/// `block_rows × in` values.
pub(super) fn backward_input(
    base: &LinearBase,
    grad: &Tensor,
    block_rows: usize,
) -> Result<Tensor> {
    let (out, inp) = match base {
        LinearBase::Dense(w) => w.dims2()?,
        LinearBase::Quantized(q) => q.dims()?,
    };
    let dims = grad.dims();
    let Some((&last, lead)) = dims.split_last() else {
        candle_core::bail!("frozen linear backward: scalar gradient");
    };
    if last != out {
        candle_core::bail!("frozen linear backward: gradient {dims:?} for a [{out}, {inp}] weight");
    }
    let mut out_dims = lead.to_vec();
    out_dims.push(inp);
    let rows: usize = lead.iter().product();
    let g = grad
        .to_dtype(DType::F32)?
        .contiguous()?
        .reshape((rows, out))?;
    let block_rows = block_rows.max(1);
    let product = match base {
        LinearBase::Dense(w) if w.dtype() == DType::F32 => g.matmul(w)?,
        LinearBase::Dense(w) => sum_blocks(&g, out, block_rows, |start, len| {
            w.narrow(0, start, len)?.to_dtype(DType::F32)
        })?,
        LinearBase::Quantized(q) => sum_blocks(&g, out, block_rows, |start, len| {
            q.dequantize_rows(start, len)
        })?,
    };
    product.reshape(out_dims)
}

/// `Σ g[:, rows]·block(rows)` over consecutive blocks of at most `block_rows` of the `out`
/// weight rows, `block(start, len)` giving rows `start..start + len` as f32 `[len, in]`.
fn sum_blocks(
    g: &Tensor,
    out: usize,
    block_rows: usize,
    block: impl Fn(usize, usize) -> Result<Tensor>,
) -> Result<Tensor> {
    let mut sum: Option<Tensor> = None;
    for start in (0..out).step_by(block_rows) {
        let len = block_rows.min(out - start);
        let part = g
            .narrow(1, start, len)?
            .contiguous()?
            .matmul(&block(start, len)?)?;
        sum = Some(match sum {
            Some(s) => (s + part)?,
            None => part,
        });
    }
    match sum {
        Some(s) => Ok(s),
        None => candle_core::bail!("frozen linear backward: a weight without rows"),
    }
}

#[cfg(test)]
mod tests;
