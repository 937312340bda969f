//! GELU, exact (`erf`) and tanh-approximated: vectorized kernels ([`crate::kernels::fast_math`])
//! split over rayon's pool. candle's ops evaluate libm's `erff` or `tanhf` one element at a time
//! (6.9 ms per ViT layer, 1.0 ms per decode step of a 6B model's 16384 MLP values on two
//! threads).
//!
//! Tracked f32 CPU tensors (training) go through a graph op with the same forward kernel and a
//! fused backward, `grad·gelu'(x)` in one pass over the saved input: candle's `gelu` backward
//! builds about ten temporaries the size of the MLP's hidden layer (84 MB each for 1280 tokens
//! of a 16384-wide MLP), the memory peak of a checkpointed layer's backward pass. Other
//! tracked tensors keep candle's ops and their backward.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::kernels::fast_math::{fused_applies, simd_kernel, with_f32, MIN_PARALLEL};

/// Elements per rayon task.
const CHUNK: usize = 1 << 14;

#[inline(always)]
fn gelu_erf_kernel(xs: &[f32], ys: &mut [f32]) {
    for (y, &x) in ys.iter_mut().zip(xs) {
        *y = crate::kernels::fast_math::gelu_erf(x);
    }
}

simd_kernel!(
    /// [`gelu_erf_kernel`] on the active instruction-set path ([`crate::kernels::isa`]).
    fn gelu_erf_slice, gelu_erf_slice_with => gelu_erf_kernel(xs: &[f32], ys: &mut [f32])
);

#[inline(always)]
fn gelu_tanh_kernel(xs: &[f32], ys: &mut [f32]) {
    for (y, &x) in ys.iter_mut().zip(xs) {
        *y = crate::kernels::fast_math::gelu_tanh(x);
    }
}

simd_kernel!(
    /// [`gelu_tanh_kernel`] on the active instruction-set path ([`crate::kernels::isa`]).
    fn gelu_tanh_slice, gelu_tanh_slice_with => gelu_tanh_kernel(xs: &[f32], ys: &mut [f32])
);

#[inline(always)]
fn gelu_erf_grad_kernel(xs: &[f32], gs: &[f32], ys: &mut [f32]) {
    for ((y, &x), &g) in ys.iter_mut().zip(xs).zip(gs) {
        *y = g * crate::kernels::fast_math::gelu_erf_derivative(x);
    }
}

simd_kernel!(
    /// [`gelu_erf_grad_kernel`] on the active instruction-set path ([`crate::kernels::isa`]).
    fn gelu_erf_grad_slice, gelu_erf_grad_slice_with => gelu_erf_grad_kernel(xs: &[f32], gs: &[f32], ys: &mut [f32])
);

#[inline(always)]
fn gelu_tanh_grad_kernel(xs: &[f32], gs: &[f32], ys: &mut [f32]) {
    for ((y, &x), &g) in ys.iter_mut().zip(xs).zip(gs) {
        *y = g * crate::kernels::fast_math::gelu_tanh_derivative(x);
    }
}

simd_kernel!(
    /// [`gelu_tanh_grad_kernel`] on the active instruction-set path ([`crate::kernels::isa`]).
    fn gelu_tanh_grad_slice, gelu_tanh_grad_slice_with => gelu_tanh_grad_kernel(xs: &[f32], gs: &[f32], ys: &mut [f32])
);

/// Exact (`erf`) GELU, `x·(1 + erf(x/√2))/2`, as candle's `gelu_erf` (within 3·10⁻⁷·max(|x|, 1) of it,
/// see [`crate::kernels::fast_math`]). CPU tensors take the fused kernel (f16/bf16 through f32,
/// as candle computes them; tracked f32 ones through the graph op); others keep candle's op.
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    Gelu::Erf.apply(x)
}

/// tanh-approximated GELU, `x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))/2`, as candle's `gelu`
/// (within 10⁻⁶·max(|x|, 1) of it). CPU tensors take the fused kernel (f16/bf16 through f32;
/// tracked f32 ones through the graph op); others keep candle's op.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    Gelu::Tanh.apply(x)
}

/// The two GELUs.
#[derive(Debug, Clone, Copy)]
enum Gelu {
    Erf,
    Tanh,
}

impl Gelu {
    /// The f32 forward kernel.
    fn kernel(self) -> fn(&[f32], &mut [f32]) {
        match self {
            Gelu::Erf => gelu_erf_slice,
            Gelu::Tanh => gelu_tanh_slice,
        }
    }

    /// The f32 kernel of `grad·gelu'(x)`.
    fn grad_kernel(self) -> fn(&[f32], &[f32], &mut [f32]) {
        match self {
            Gelu::Erf => gelu_erf_grad_slice,
            Gelu::Tanh => gelu_tanh_grad_slice,
        }
    }

    /// candle's op, for the tensors the kernels do not take.
    fn candle(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Gelu::Erf => x.gelu_erf(),
            Gelu::Tanh => x.gelu(),
        }
    }

    fn apply(self, x: &Tensor) -> Result<Tensor> {
        if !x.device().is_cpu() {
            return self.candle(x);
        }
        if x.track_op() {
            return match x.dtype() {
                DType::F32 => x.contiguous()?.apply_op1(GeluOp(self)),
                _ => self.candle(x),
            };
        }
        match x.dtype() {
            DType::F16 | DType::BF16 => {
                return self.apply(&x.to_dtype(DType::F32)?)?.to_dtype(x.dtype());
            }
            DType::F32 => {}
            _ => return self.candle(x),
        }
        if !fused_applies(x) {
            return self.candle(x);
        }
        let mut out = vec![0f32; x.elem_count()];
        with_f32(x, |xs| map_slices(xs, None, &mut out, self))?;
        Tensor::from_vec(out, x.shape(), x.device())
    }
}

/// `ys = gelu(xs)`, or `ys = gs·gelu'(xs)` when `gs` is given, over rayon's pool when large.
fn map_slices(xs: &[f32], gs: Option<&[f32]>, ys: &mut [f32], gelu: Gelu) {
    match gs {
        None if xs.len() < MIN_PARALLEL => gelu.kernel()(xs, ys),
        None => ys
            .par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK))
            .for_each(|(ys, xs)| gelu.kernel()(xs, ys)),
        Some(gs) if xs.len() < MIN_PARALLEL => gelu.grad_kernel()(xs, gs, ys),
        Some(gs) => ys
            .par_chunks_mut(CHUNK)
            .zip(xs.par_chunks(CHUNK))
            .zip(gs.par_chunks(CHUNK))
            .for_each(|((ys, xs), gs)| gelu.grad_kernel()(xs, gs, ys)),
    }
}

/// GELU as a graph op over a contiguous f32 CPU tensor: the fused kernel forward; the backward
/// `grad·gelu'(x)` in one pass from the saved input.
struct GeluOp(Gelu);

impl CustomOp1 for GeluOp {
    fn name(&self) -> &'static str {
        "gelu-fused"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (Some((start, end)), CpuStorage::F32(data)) = (layout.contiguous_offsets(), storage)
        else {
            candle_core::bail!("gelu: the graph op takes a contiguous f32 tensor");
        };
        let xs = &data[start..end];
        let mut ys = vec![0f32; xs.len()];
        map_slices(xs, None, &mut ys, self.0);
        Ok((CpuStorage::F32(ys), layout.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad.to_dtype(DType::F32)?.contiguous()?;
        let mut out = vec![0f32; x.elem_count()];
        with_f32(x, |xs| {
            with_f32(&grad, |gs| map_slices(xs, Some(gs), &mut out, self.0))
        })??;
        Ok(Some(Tensor::from_vec(out, x.shape(), x.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn assert_close_to_candle(
        got: &Tensor,
        x: &Tensor,
        candle: fn(&Tensor) -> Result<Tensor>,
        tol_f32: f32,
    ) -> Result<()> {
        assert_eq!(got.dims(), x.dims());
        let want = candle(x)?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let got = got.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let tol = if x.dtype() == DType::F32 {
            tol_f32
        } else {
            2e-3
        };
        for ((g, w), v) in got.iter().zip(&want).zip(&xs) {
            assert!(
                (g - w).abs() <= tol * v.abs().max(1.0),
                "gelu({v}): {g} vs {w}"
            );
        }
        Ok(())
    }

    #[test]
    fn every_path_matches_the_baseline_kernels() {
        use crate::kernels::fast_math::path_tests::{check_every_path, values};
        type Map = (
            &'static str,
            fn(&[f32], &mut [f32]),
            fn(crate::kernels::isa::Isa, &[f32], &mut [f32]),
        );
        type Grad = (
            &'static str,
            fn(&[f32], &[f32], &mut [f32]),
            fn(crate::kernels::isa::Isa, &[f32], &[f32], &mut [f32]),
        );
        let maps: [Map; 2] = [
            ("gelu_erf", gelu_erf_kernel, gelu_erf_slice_with),
            ("gelu_tanh", gelu_tanh_kernel, gelu_tanh_slice_with),
        ];
        let grads: [Grad; 2] = [
            (
                "gelu_erf_grad",
                gelu_erf_grad_kernel,
                gelu_erf_grad_slice_with,
            ),
            (
                "gelu_tanh_grad",
                gelu_tanh_grad_kernel,
                gelu_tanh_grad_slice_with,
            ),
        ];
        // Lengths around the vector widths (tails), values well into both tails of GELU.
        for len in [1usize, 7, 15, 16, 17, 33, 4099] {
            let xs = values(len, len as u64, 12.0);
            let gs = values(len, 1000 + len as u64, 2.0);
            for (name, kernel, with) in maps {
                let mut want = vec![0f32; len];
                kernel(&xs, &mut want);
                // Exactly rounded operations only: the same bits on every path.
                check_every_path(&format!("{name} [{len}]"), &want, 0.0, |isa| {
                    let mut got = vec![0f32; len];
                    with(isa, &xs, &mut got);
                    got
                });
            }
            for (name, kernel, with) in grads {
                let mut want = vec![0f32; len];
                kernel(&xs, &gs, &mut want);
                check_every_path(&format!("{name} [{len}]"), &want, 0.0, |isa| {
                    let mut got = vec![0f32; len];
                    with(isa, &xs, &gs, &mut got);
                    got
                });
            }
        }
    }

    #[test]
    fn fused_gelus_match_candles() -> Result<()> {
        let dev = Device::Cpu;
        type Op = fn(&Tensor) -> Result<Tensor>;
        let pairs: [(Op, Op, f32); 2] = [
            (gelu_erf, Tensor::gelu_erf, 3e-7),
            (gelu_tanh, Tensor::gelu, 1e-6),
        ];
        for (fused, candle, tol) in pairs {
            for shape in [(3usize, 7usize), (257, 6144), (1, MIN_PARALLEL + 5)] {
                let x = (Tensor::randn(0f32, 2.0, shape, &dev)? * 1.5)?;
                assert_close_to_candle(&fused(&x)?, &x, candle, tol)?;
                let h = x.to_dtype(DType::F16)?;
                let got = fused(&h)?;
                assert_eq!(got.dtype(), DType::F16);
                assert_close_to_candle(&got, &h, candle, tol)?;
            }
            // Far tails: large negative values give (signed) zero, large positive ones x.
            let x = Tensor::new(&[-1e4f32, -60.0, -9.0, 0.0, 9.0, 60.0, 1e4], &dev)?;
            assert_close_to_candle(&fused(&x)?, &x, candle, tol)?;
            // A view that starts inside its storage.
            let big = Tensor::randn(0f32, 1.0, (2, MIN_PARALLEL), &dev)?;
            let row = big.get(1)?;
            assert_close_to_candle(&fused(&row)?, &row, candle, tol)?;
            // A strided view takes candle's op.
            let t = big.t()?;
            assert_close_to_candle(&fused(&t)?, &t, candle, tol)?;
        }
        Ok(())
    }

    /// `(value, gradient)` of `Σ w·gelu(x)` through `gelu`, for a variable `x`.
    fn value_and_grad(
        gelu: fn(&Tensor) -> Result<Tensor>,
        x: &Var,
        w: &Tensor,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let y = gelu(x.as_tensor())?;
        let grads = (&y * w)?.sum_all()?.backward()?;
        let Some(g) = grads.get(x.as_tensor()) else {
            candle_core::bail!("no gradient reached x");
        };
        Ok((y.flatten_all()?.to_vec1()?, g.flatten_all()?.to_vec1()?))
    }

    #[test]
    fn tracked_gelus_match_candles_values_and_gradients() -> Result<()> {
        let dev = Device::Cpu;
        type Op = fn(&Tensor) -> Result<Tensor>;
        let pairs: [(Op, Op); 2] = [(gelu_erf, Tensor::gelu_erf), (gelu_tanh, Tensor::gelu)];
        for (fused, candle) in pairs {
            for n in [7usize, MIN_PARALLEL + 5] {
                let x = Var::from_tensor(&(Tensor::randn(0f32, 1.0, (2, n), &dev)? * 3.0)?)?;
                let w = Tensor::randn(0f32, 1.0, (2, n), &dev)?;
                let (y, g) = value_and_grad(fused, &x, &w)?;
                let (y_want, g_want) = value_and_grad(candle, &x, &w)?;
                let xs = x.flatten_all()?.to_vec1::<f32>()?;
                for i in 0..xs.len() {
                    let scale = xs[i].abs().max(1.0);
                    assert!((y[i] - y_want[i]).abs() <= 1e-6 * scale, "gelu({})", xs[i]);
                    assert!(
                        (g[i] - g_want[i]).abs() <= 2e-6 * scale,
                        "gelu'({}): {} vs {}",
                        xs[i],
                        g[i],
                        g_want[i]
                    );
                }
            }
            // Tails and a strided input: finite, and 0 / 1 far out.
            let x = Var::new(&[[-1e4f32, -60.0, -9.0], [0.0, 9.0, 1e4]], &dev)?;
            let w = Tensor::ones((3, 2), DType::F32, &dev)?.t()?;
            let (_, g) = value_and_grad(fused, &x, &w)?;
            assert!(g.iter().all(|v| v.is_finite()), "{g:?}");
            assert!(g[0].abs() < 1e-6 && (g[5] - 1.0).abs() < 1e-6, "{g:?}");
        }
        Ok(())
    }
}
