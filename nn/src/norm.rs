//! LayerNorm computed in f32 whatever the activation dtype.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use crate::kernels::fast_math::{lane_sum, par_rows, simd_kernel, with_f32};

/// LayerNorm over the last dimension, with `weight` and `bias`, computed in f32.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// Loads `weight` and `bias` of width `dim`.
    pub fn load(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get(dim, "weight")?;
        let bias = vb.get(dim, "bias")?;
        Self::new(weight, bias, eps)
    }

    /// A LayerNorm over existing `weight` and `bias` (kept in f32).
    pub fn new(weight: Tensor, bias: Tensor, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: weight.to_dtype(DType::F32)?,
            bias: bias.to_dtype(DType::F32)?,
            eps,
        })
    }

    /// The epsilon.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// The gain `[dim]` (f32).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The shift `[dim]` (f32).
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// The composed form (candle ops, with a backward): mean, centred variance, normalise,
    /// scale and shift.
    fn forward_composed(&self, xf: &Tensor) -> Result<Tensor> {
        let mean = xf.mean_keepdim(D::Minus1)?;
        let centered = xf.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }

    /// The same arithmetic in one pass per row over an untracked contiguous CPU f32 tensor,
    /// rows split over rayon's pool (candle's composed form runs nine ops, each over the whole
    /// tensor).
    fn forward_fused(&self, xf: &Tensor) -> Result<Tensor> {
        let width = self.weight.elem_count();
        if xf.dims().last() != Some(&width) {
            candle_core::bail!(
                "layer norm: input {:?} does not end in width {width}",
                xf.dims()
            );
        }
        let mut out = vec![0f32; xf.elem_count()];
        let eps = self.eps as f32;
        with_f32(&self.weight.contiguous()?, |w| {
            with_f32(&self.bias.contiguous()?, |b| {
                with_f32(xf, |xs| {
                    par_rows(xs, &mut out, width, |x, y| layer_norm_rows(x, y, w, b, eps))
                })
            })
        })???;
        Tensor::from_vec(out, xf.shape(), xf.device())
    }
}

/// LayerNorm of each row of `xs` (rows as wide as `w`) into `ys`: `(x − mean) / √(var + eps)
/// · w + b`, with the variance of the centred values, as [`LayerNorm::forward_composed`].
#[inline(always)]
fn layer_norm_kernel(xs: &[f32], ys: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    let width = w.len();
    for (x, y) in xs.chunks_exact(width).zip(ys.chunks_exact_mut(width)) {
        let mean = lane_sum(x, |v| v) / width as f32;
        let var = lane_sum(x, |v| (v - mean) * (v - mean)) / width as f32;
        let std = (var + eps).sqrt();
        for (((o, &v), &wi), &bi) in y.iter_mut().zip(x).zip(w).zip(b) {
            *o = (v - mean) / std * wi + bi;
        }
    }
}

simd_kernel!(
    /// [`layer_norm_kernel`] on the active instruction-set path ([`crate::kernels::isa`]).
    fn layer_norm_rows, layer_norm_rows_with => layer_norm_kernel(xs: &[f32], ys: &mut [f32], w: &[f32], b: &[f32], eps: f32)
);

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?;
        let fused = xf.device().is_cpu() && !xf.track_op() && !self.weight.track_op();
        let y = if fused {
            self.forward_fused(&xf.contiguous()?)?
        } else {
            self.forward_composed(&xf)?
        };
        y.to_dtype(dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use visualglm_testing::{max_abs, max_abs_diff};

    #[test]
    fn every_path_matches_the_baseline_kernel() {
        use crate::kernels::fast_math::path_tests::{check_every_path, values};
        // Widths around the vector widths (tails); an offset far from zero.
        for (rows, width) in [(1usize, 1usize), (3, 7), (2, 17), (5, 1409), (2, 4099)] {
            let xs: Vec<f32> = values(rows * width, width as u64, 3.0)
                .into_iter()
                .map(|v| v + 50.0)
                .collect();
            let w = values(width, 7, 1.0);
            let b = values(width, 8, 0.5);
            let mut want = vec![0f32; xs.len()];
            layer_norm_kernel(&xs, &mut want, &w, &b, 1e-6);
            // Row sums in 16 fixed lanes on every path: the same values up to f32 rounding.
            check_every_path(
                &format!("layer_norm [{rows}, {width}]"),
                &want,
                1e-6,
                |isa| {
                    let mut got = vec![0f32; xs.len()];
                    layer_norm_rows_with(isa, &xs, &mut got, &w, &b, 1e-6);
                    got
                },
            );
        }
    }

    #[test]
    fn fused_layer_norm_matches_the_composed_ops() -> Result<()> {
        let dev = Device::Cpu;
        for (rows, width) in [(1usize, 7usize), (3, 64), (257, 1408), (40, 4096)] {
            // An offset far from zero checks that the variance is taken of centred values.
            let x = (Tensor::randn(0f32, 3.0, (rows, width), &dev)? + 50.0)?;
            let ln = LayerNorm::new(
                Tensor::randn(1f32, 0.2, width, &dev)?,
                Tensor::randn(0f32, 0.2, width, &dev)?,
                1e-6,
            )?;
            let want = ln.forward_composed(&x)?;
            let got = ln.forward(&x)?;
            let diff = max_abs_diff(&got, &want);
            // Inputs near 50 carry rounding of ulp(50) ≈ 3.8e-6 into the centred values (σ = 3),
            // about 1.3e-6 relative: both forms agree to a few times that of the output scale.
            let scale = max_abs(&want).max(1.0);
            let tol = 4e-6 * scale;
            assert!(diff <= tol, "[{rows}, {width}]: {diff} > {tol}");
            // f16 input: normalised in f32, returned in f16.
            let h = ln.forward(&x.to_dtype(DType::F16)?)?;
            assert_eq!(h.dtype(), DType::F16);
            // A non-contiguous input and a wrong width.
            let t = x.t()?.contiguous()?.t()?;
            let diff = max_abs_diff(&ln.forward(&t)?, &want);
            assert!(diff <= tol, "strided: {diff} > {tol}");
        }
        let ln = LayerNorm::new(
            Tensor::ones(8, DType::F32, &dev)?,
            Tensor::zeros(8, DType::F32, &dev)?,
            1e-5,
        )?;
        assert!(ln
            .forward(&Tensor::zeros((2, 9), DType::F32, &dev)?)
            .is_err());
        // Tracked inputs keep the composed ops and their gradient.
        let v = Var::randn(0f32, 1.0, (4, 8), &dev)?;
        let g = ln.forward(v.as_tensor())?.sqr()?.sum_all()?.backward()?;
        assert!(g.get(v.as_tensor()).is_some());
        Ok(())
    }
}
