//! The CPU kernels behind [`crate::Linear`], attention and the fused element-wise ops: f32
//! GEMM for many rows, Q4_0 GEMV/GEMM, f16 GEMV, and the SIMD math they share. Each kernel
//! says when it applies (`applies`) and otherwise leaves the product to candle.
//!
//! Every kernel with instruction-set specific code runs the one path chosen at run time in
//! [`isa`] (the host's best, or the one the `VISUALGLM_CPU` environment variable names:
//! `scalar`, `avx2` or `avx512`); [`isa::active`] says which.

pub(crate) mod fast_math;
pub mod gemm_f32;
pub mod gemm_q4_0;
pub mod gemv_f16;
pub mod gemv_q4_0;
pub mod isa;
pub mod packed8;
mod packed8_layout;
pub(crate) mod x86;

use rayon::prelude::*;

/// The dims of a product's output: the input's, with the last (the input width) replaced by
/// the output width `n`.
pub(crate) fn output_dims(input: &[usize], n: usize) -> Vec<usize> {
    let mut dims = input.to_vec();
    if let Some(last) = dims.last_mut() {
        *last = n;
    }
    dims
}

/// Up to this many input rows, a dense f32 CPU product runs as `(W·xᵀ)ᵀ` (measured on two
/// threads: the Q-Former's `[32, 3072] × [3072, 768]` 1.58 → 0.87 ms, `[32, 768] × [768, 3072]`
/// 1.14 → 0.87 ms; on par at 128 rows, slower at 256; `bench/LOG.md`). More rows take
/// [`gemm_f32`].
pub(crate) const SWAP_MAX_ROWS: usize = 64;

/// Weight rows per rayon task in [`par_row_groups`].
pub(crate) const ROWS_PER_TASK: usize = 64;

/// Splits the outputs of a GEMV over rayon's pool: `y` holds `width` values per weight row
/// (row `r` at `y[r * width..(r + 1) * width]`), taken in tasks of [`ROWS_PER_TASK`] rows.
/// Within a task, `group(r, out)` fills whole groups of `group_rows` rows starting at row `r`
/// (`out` is `group_rows * width` long) and `single(r, out)` each remaining row (`out` is
/// `width` long). A zero `width` or `group_rows` does nothing.
pub(crate) fn par_row_groups<G, S>(
    y: &mut [f32],
    width: usize,
    group_rows: usize,
    group: G,
    single: S,
) where
    G: Fn(usize, &mut [f32]) + Sync,
    S: Fn(usize, &mut [f32]) + Sync,
{
    if width == 0 || group_rows == 0 {
        return;
    }
    y.par_chunks_mut(ROWS_PER_TASK * width)
        .enumerate()
        .for_each(|(c, ys)| {
            let first = c * ROWS_PER_TASK;
            let rows = ys.len() / width;
            let whole = rows / group_rows * group_rows;
            let (groups, rest) = ys.split_at_mut(whole * width);
            for (j, out) in groups.chunks_exact_mut(group_rows * width).enumerate() {
                group(first + j * group_rows, out);
            }
            for (i, out) in rest.chunks_exact_mut(width).enumerate() {
                single(first + whole + i, out);
            }
        });
}
