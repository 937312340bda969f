//! Many-row products with Q4_0 weights (prompt prefill): a block of weight rows at a time is
//! widened to f32 and multiplied with candle's f32 GEMM.
//!
//! candle 0.11 has no many-row Q4_0 kernel: it quantizes the input to `q8_0` and takes one
//! vector dot product per (input row, weight row) pair, 19 tokens/s of prefill for two
//! full-width layers of a 6B model on two threads against 189 with Q4_K. Widening costs one pass over
//! the weight per product, small next to the GEMM's `rows` multiply-adds per weight; only one
//! block (about [`BLOCK_VALUES`] f32 values) is held at a time, so memory stays that of the
//! quantized model. The input is not quantized, so the result is `x · dequantize(W)ᵀ` to f32
//! rounding.
//!
//! There is no instruction-set specific code here (the widening is plain Rust, the product the
//! `gemm` crate's, which picks its own instructions), so this kernel runs the same on every path
//! of [`super::isa`], `scalar` included.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

use super::gemv_q4_0::{BLOCK_BYTES, QK};
use super::output_dims;

/// From this many input rows on, [`matmul`] takes over from the decode GEMV (which handles up
/// to 4 rows).
pub const MIN_ROWS: usize = 5;

/// Weight values widened per block: 8 MiB of f32 (512 rows of a 4096-wide weight).
const BLOCK_VALUES: usize = 1 << 21;

/// Whether [`matmul`] handles `x · wᵀ`: a CPU Q4_0 weight `[n, k]` with `k` a multiple of 32,
/// an f32 CPU input `[.., k]` of at least [`MIN_ROWS`] rows, not tracked for gradients (the
/// product has no backward).
pub fn applies(w: &QTensor, x: &Tensor) -> bool {
    let rows = x.dims().iter().rev().skip(1).product::<usize>();
    super::gemv_q4_0::q4_0_and_f32_on_cpu(w, x) && !x.track_op() && rows >= MIN_ROWS
}

/// `x · wᵀ` for a `[n, k]` Q4_0 weight and an f32 input `[.., k]`, returned as `[.., n]` f32
/// (check [`applies`]; other inputs are refused with an error).
pub fn matmul(w: &QTensor, x: &Tensor) -> Result<Tensor> {
    if w.dtype() != GgmlDType::Q4_0 || x.dtype() != DType::F32 {
        candle_core::bail!(
            "Q4_0 GEMM: needs a Q4_0 weight and an f32 input, got {:?} and {:?}",
            w.dtype(),
            x.dtype()
        );
    }
    let (n, k) = w.shape().dims2()?;
    let in_dims = x.dims().to_vec();
    if in_dims.last() != Some(&k) || k % QK != 0 {
        candle_core::bail!("Q4_0 GEMM: input {in_dims:?} against a [{n}, {k}] weight");
    }
    let data = w.data()?;
    let row_bytes = k / QK * BLOCK_BYTES;
    if data.len() != n * row_bytes {
        candle_core::bail!("Q4_0 GEMM: {} weight bytes for [{n}, {k}]", data.len());
    }
    widening_matmul(x, n, 1, |first, m, dst| {
        for (r, out) in dst.chunks_exact_mut(k).take(m).enumerate() {
            dequantize_row(&data[(first + r) * row_bytes..][..row_bytes], out);
        }
    })
}

/// `x · wᵀ` for an f32 input `[.., k]` and an `[n, k]` weight that `widen(first, m, dst)`
/// writes as f32 rows `first..first + m` into `dst` (`m × k` values): a block of about
/// [`BLOCK_VALUES`] values at a time, widened in parallel `unit` rows per call (`unit` divides
/// every block but the last, which may be shorter), then multiplied with candle's GEMM.
pub(crate) fn widening_matmul(
    x: &Tensor,
    n: usize,
    unit: usize,
    widen: impl Fn(usize, usize, &mut [f32]) + Sync,
) -> Result<Tensor> {
    let in_dims = x.dims().to_vec();
    let Some(&k) = in_dims.last() else {
        candle_core::bail!("Q4_0 GEMM: a scalar input");
    };
    let rows = in_dims.iter().rev().skip(1).product::<usize>();
    let x2 = x.reshape((rows, k))?;
    let unit = unit.max(1);
    let block_rows = ((BLOCK_VALUES / k.max(1)).max(unit) / unit * unit).min(n.max(1));
    // Each block's `[rows, block]` product is copied into its columns of the output, so no
    // more than one block's product exists besides the output.
    let mut out = vec![0f32; rows * n];
    for first in (0..n).step_by(block_rows) {
        let m = block_rows.min(n - first);
        let mut wf = vec![0f32; m * k];
        wf.par_chunks_mut(unit * k)
            .enumerate()
            .for_each(|(i, dst)| {
                widen(first + i * unit, dst.len() / k, dst);
            });
        let wb = Tensor::from_vec(wf, (m, k), x.device())?;
        let part = x2.matmul(&wb.t()?)?.flatten_all()?.to_vec1::<f32>()?;
        for (dst, src) in out.chunks_exact_mut(n).zip(part.chunks_exact(m)) {
            dst[first..first + m].copy_from_slice(src);
        }
    }
    let out_dims = output_dims(&in_dims, n);
    Tensor::from_vec(out, out_dims, x.device())
}

/// Widens one row of Q4_0 blocks (`src`, 18 bytes per 32 values) into `dst`: value `j` of a
/// block is `(nibble_j − 8)·d`, the low nibbles of its 16 bytes first, then the high ones.
pub(crate) fn dequantize_row(src: &[u8], dst: &mut [f32]) {
    for (block, out) in src.chunks_exact(BLOCK_BYTES).zip(dst.chunks_exact_mut(QK)) {
        let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
        let (low, high) = out.split_at_mut(QK / 2);
        for ((q, lo), hi) in block[2..].iter().zip(low).zip(high) {
            *lo = (f32::from(q & 0x0f) - 8.0) * d;
            *hi = (f32::from(q >> 4) - 8.0) * d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use visualglm_testing::{max_abs, max_abs_diff};

    #[test]
    fn matches_the_dequantized_product() -> Result<()> {
        let dev = Device::Cpu;
        // Several weight blocks (k = 4096 gives 512 rows per block), one partial.
        for (rows, n, k) in [(5usize, 7usize, 32usize), (37, 1100, 4096), (300, 96, 64)] {
            let w = Tensor::randn(0f32, 0.02, (n, k), &dev)?;
            let q = QTensor::quantize(&w, GgmlDType::Q4_0)?;
            let x = Tensor::randn(0f32, 1.0, (1, rows, k), &dev)?;
            assert!(applies(&q, &x));
            let got = matmul(&q, &x)?;
            assert_eq!(got.dims(), &[1, rows, n]);
            let want = x.broadcast_matmul(&q.dequantize(&dev)?.t()?)?;
            let rel = (max_abs_diff(&got, &want) / max_abs(&want).max(1e-6)) as f64;
            assert!(rel < 1e-5, "{:?}: {rel}", (rows, n, k));
        }
        Ok(())
    }

    #[test]
    fn refuses_what_it_does_not_handle() -> Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::randn(0f32, 0.02, (8, 64), &dev)?;
        let q4 = QTensor::quantize(&w, GgmlDType::Q4_0)?;
        let q8 = QTensor::quantize(&w, GgmlDType::Q8_0)?;
        let x = Tensor::randn(0f32, 1.0, (MIN_ROWS, 64), &dev)?;
        assert!(applies(&q4, &x));
        assert!(!applies(&q8, &x));
        assert!(matmul(&q8, &x).is_err());
        // Decode rows stay with the GEMV; a wrong width or dtype is refused.
        assert!(!applies(&q4, &x.narrow(0, 0, MIN_ROWS - 1)?));
        let wide = Tensor::randn(0f32, 1.0, (MIN_ROWS, 96), &dev)?;
        assert!(!applies(&q4, &wide));
        assert!(matmul(&q4, &wide).is_err());
        assert!(!applies(&q4, &x.to_dtype(DType::F16)?));
        Ok(())
    }
}
