//! Exact (`erf`) GELU for inference: a vectorized kernel ([`crate::fast_math`]) split over
//! rayon's pool. candle's op evaluates libm's `erff` one element at a time (6.9 ms per ViT
//! layer on two threads); tensors tracked for gradients keep candle's op and its backward.

use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

use crate::fast_math::{fused_applies, simd_kernel, with_f32, MIN_PARALLEL};

/// Elements per rayon task.
const CHUNK: usize = 1 << 14;

#[inline(always)]
fn gelu_kernel(xs: &[f32], ys: &mut [f32]) {
    for (y, &x) in ys.iter_mut().zip(xs) {
        *y = crate::fast_math::gelu_erf(x);
    }
}

simd_kernel!(
    /// [`gelu_kernel`] with the CPU's best vector instructions.
    fn gelu_slice => gelu_kernel(xs: &[f32], ys: &mut [f32])
);

/// Exact (`erf`) GELU, `x·(1 + erf(x/√2))/2`, as candle's `gelu_erf` (within 3·10⁻⁷·max(|x|, 1) of it,
/// see [`crate::fast_math`]). Untracked CPU tensors take the fused kernel (f16/bf16 through
/// f32, as candle computes them); others keep candle's op.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && !x.track_op() && x.dtype() != DType::F32 {
        if matches!(x.dtype(), DType::F16 | DType::BF16) {
            return gelu_erf(&x.to_dtype(DType::F32)?)?.to_dtype(x.dtype());
        }
        return x.gelu_erf();
    }
    if !fused_applies(x) {
        return x.gelu_erf();
    }
    let n = x.elem_count();
    let mut out = vec![0f32; n];
    with_f32(x, |xs| {
        if n < MIN_PARALLEL {
            gelu_slice(xs, &mut out);
        } else {
            out.par_chunks_mut(CHUNK)
                .zip(xs.par_chunks(CHUNK))
                .for_each(|(ys, xs)| gelu_slice(xs, ys));
        }
    })?;
    Tensor::from_vec(out, x.shape(), x.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn assert_close_to_candle(got: &Tensor, x: &Tensor) -> Result<()> {
        assert_eq!(got.dims(), x.dims());
        let want = x
            .gelu_erf()?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let got = got.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let tol = if x.dtype() == DType::F32 { 3e-7 } else { 2e-3 };
        for ((g, w), v) in got.iter().zip(&want).zip(&xs) {
            assert!(
                (g - w).abs() <= tol * v.abs().max(1.0),
                "gelu({v}): {g} vs {w}"
            );
        }
        Ok(())
    }

    #[test]
    fn fused_gelu_erf_matches_candles() -> Result<()> {
        let dev = Device::Cpu;
        for shape in [(3usize, 7usize), (257, 6144), (1, MIN_PARALLEL + 5)] {
            let x = (Tensor::randn(0f32, 2.0, shape, &dev)? * 1.5)?;
            assert_close_to_candle(&gelu_erf(&x)?, &x)?;
            let h = x.to_dtype(DType::F16)?;
            let got = gelu_erf(&h)?;
            assert_eq!(got.dtype(), DType::F16);
            assert_close_to_candle(&got, &h)?;
        }
        // A view that starts inside its storage.
        let big = Tensor::randn(0f32, 1.0, (2, MIN_PARALLEL), &dev)?;
        let row = big.get(1)?;
        assert_close_to_candle(&gelu_erf(&row)?, &row)?;
        // A strided view takes candle's op.
        let t = big.t()?;
        assert_close_to_candle(&gelu_erf(&t)?, &t)?;
        // A tracked tensor keeps candle's op and its gradient.
        let v = Var::randn(0f32, 1.0, (1, MIN_PARALLEL), &dev)?;
        let y = gelu_erf(v.as_tensor())?;
        let g = y.sum_all()?.backward()?;
        assert!(g.get(v.as_tensor()).is_some());
        Ok(())
    }
}
