//! Softmax over the last dimension for inference: one pass per row with a vectorized `exp`
//! ([`crate::kernels::fast_math`]), rows split over rayon's pool. candle's fused CPU softmax calls
//! libm's `expf` per element (1.9 ms for one image's ViT attention scores on two threads).

use candle_core::{Result, Tensor};

use crate::kernels::fast_math::{
    fused_applies, lane_max, lane_sum, par_rows, simd_kernel, with_f32,
};

/// Softmax of each row of `xs` (rows `width` wide) into `ys`: `exp(x − max) / Σ exp(x − max)`.
#[inline(always)]
fn softmax_kernel(xs: &[f32], ys: &mut [f32], width: usize) {
    for (x, y) in xs.chunks_exact(width).zip(ys.chunks_exact_mut(width)) {
        let max = lane_max(x);
        for (o, &v) in y.iter_mut().zip(x) {
            *o = crate::kernels::fast_math::exp(v - max);
        }
        let sum = lane_sum(y, |v| v);
        for o in y.iter_mut() {
            *o /= sum;
        }
    }
}

simd_kernel!(
    /// [`softmax_kernel`] on the active instruction-set path ([`crate::kernels::isa`]).
    pub(crate) fn softmax_rows, softmax_rows_with => softmax_kernel(xs: &[f32], ys: &mut [f32], width: usize)
);

/// Softmax over the last dimension. Untracked contiguous CPU f32 tensors take the fused
/// kernel (within a few ulp of candle's); others, candle's `softmax_last_dim` (no backward)
/// or, when a gradient must flow, the composed `softmax`.
///
/// A row whose values are all −∞ (every position masked) gives NaN, as candle's does.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if x.track_op() {
        return candle_nn::ops::softmax(x, candle_core::D::Minus1);
    }
    if !fused_applies(x) || x.rank() == 0 {
        return candle_nn::ops::softmax_last_dim(x);
    }
    let width = x.dims().last().copied().unwrap_or(1);
    let mut out = vec![0f32; x.elem_count()];
    with_f32(x, |xs| {
        par_rows(xs, &mut out, width, |x, y| softmax_rows(x, y, width))
    })?;
    Tensor::from_vec(out, x.shape(), x.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};
    use visualglm_testing::max_abs_diff;

    #[test]
    fn every_path_matches_the_baseline_kernel() {
        use crate::kernels::fast_math::path_tests::{check_every_path, values};
        for (rows, width) in [(1usize, 1usize), (3, 5), (4, 17), (2, 257), (3, 4099)] {
            let mut xs = values(rows * width, width as u64, 20.0);
            // Masked positions, and one fully masked row (NaN, as candle's).
            for v in xs.iter_mut().step_by(7) {
                *v = f32::NEG_INFINITY;
            }
            if rows > 1 {
                xs[..width].fill(f32::NEG_INFINITY);
            }
            let mut want = vec![0f32; xs.len()];
            softmax_kernel(&xs, &mut want, width);
            check_every_path(&format!("softmax [{rows}, {width}]"), &want, 1e-6, |isa| {
                let mut got = vec![0f32; xs.len()];
                softmax_rows_with(isa, &xs, &mut got, width);
                got
            });
        }
    }

    #[test]
    fn fused_softmax_matches_candles() -> Result<()> {
        let dev = Device::Cpu;
        for dims in [&[1usize, 5][..], &[2, 3, 17], &[1, 16, 257, 257], &[4, 100]] {
            let x = (Tensor::randn(0f32, 4.0, dims, &dev)? - 3.0)?;
            let want = candle_nn::ops::softmax_last_dim(&x)?;
            let got = softmax_last_dim(&x)?;
            assert_eq!(got.dims(), x.dims());
            let diff = max_abs_diff(&got, &want);
            assert!(diff <= 1e-6, "{dims:?}: {diff}");
        }
        // Masked positions (−∞) get exactly 0.
        let x = Tensor::new(&[[0f32, f32::NEG_INFINITY, 1.0]], &dev)?;
        let p = softmax_last_dim(&x)?.to_vec2::<f32>()?;
        assert_eq!(p[0][1], 0.0);
        assert!((p[0][0] + p[0][2] - 1.0).abs() < 1e-6);
        // f16 and tracked inputs take candle's ops; the latter keeps its gradient.
        let h = Tensor::randn(0f32, 1.0, (2, 8), &dev)?.to_dtype(DType::F16)?;
        assert_eq!(softmax_last_dim(&h)?.dtype(), DType::F16);
        let v = Var::randn(0f32, 1.0, (2, 8), &dev)?;
        let g = softmax_last_dim(v.as_tensor())?
            .sqr()?
            .sum_all()?
            .backward()?;
        assert!(g.get(v.as_tensor()).is_some());
        Ok(())
    }
}
