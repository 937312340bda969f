//! ChatGLM's 2D rotary position embedding (spec §3.5).
//!
//! Each head vector is split in two halves: the first half is rotated by the absolute position
//! (`position_ids[0]`), the second by the block position (`position_ids[1]`). Each half is
//! rotated GPT-NeoX style (`rotate_half` over its two quarters) with base 10000.

use candle_core::{DType, Device, Result, Tensor, D};

/// Inverse frequencies and the rotation itself.
#[derive(Debug, Clone)]
pub struct Rotary2d {
    inv_freq: Tensor,
}

impl Rotary2d {
    /// Rotary embedding for heads of width `head_dim` (each half rotates `head_dim/2` dims).
    ///
    /// With `round_inv_freq_f16` the frequencies are rounded to f16 as the HF code stores them.
    pub fn new(head_dim: usize, round_inv_freq_f16: bool, device: &Device) -> Result<Self> {
        let rot_dim = head_dim / 2;
        let inv_freq: Vec<f32> = (0..rot_dim / 2)
            .map(|j| {
                let f = 1.0 / 10000f64.powf((2 * j) as f64 / rot_dim as f64);
                if round_inv_freq_f16 {
                    half::f16::from_f64(f).to_f32()
                } else {
                    f as f32
                }
            })
            .collect();
        let n = inv_freq.len();
        Ok(Self {
            inv_freq: Tensor::from_vec(inv_freq, (1, 1, n), device)?,
        })
    }

    /// `cos` and `sin` for positions `[B, S]` (u32), shaped `[B, 1, S, rot_dim]`, in f32.
    pub fn cos_sin(&self, positions: &Tensor) -> Result<(Tensor, Tensor)> {
        let p = positions.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
        let theta = p.broadcast_mul(&self.inv_freq)?;
        let theta = Tensor::cat(&[&theta, &theta], D::Minus1)?.unsqueeze(1)?;
        Ok((theta.cos()?, theta.sin()?))
    }

    /// Rotates `x` `[B, H, S, head_dim]` with `position_ids` `[B, 2, S]`.
    pub fn apply(&self, x: &Tensor, position_ids: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let half = x.dim(D::Minus1)? / 2;
        let (cos0, sin0) = self.cos_sin(&position_ids.narrow(1, 0, 1)?.squeeze(1)?)?;
        let (cos1, sin1) = self.cos_sin(&position_ids.narrow(1, 1, 1)?.squeeze(1)?)?;
        let x0 = rotate(&x.narrow(D::Minus1, 0, half)?, &cos0, &sin0)?;
        let x1 = rotate(&x.narrow(D::Minus1, half, half)?, &cos1, &sin1)?;
        Tensor::cat(&[&x0, &x1], D::Minus1)?.to_dtype(dtype)
    }
}

/// `x·cos + rotate_half(x)·sin` (differentiable composed form).
fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let r = x.dim(D::Minus1)? / 2;
    let x1 = x.narrow(D::Minus1, 0, r)?;
    let x2 = x.narrow(D::Minus1, r, r)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use visualglm_testing::max_abs_diff;

    #[test]
    fn position_zero_is_identity() -> Result<()> {
        let dev = Device::Cpu;
        let rot = Rotary2d::new(16, true, &dev)?;
        let x = Tensor::arange(0f32, 32.0, &dev)?.reshape((1, 1, 2, 16))?;
        let pos = Tensor::zeros((1, 2, 2), DType::U32, &dev)?;
        let y = rot.apply(&x, &pos)?;
        let diff = max_abs_diff(&y, &x);
        assert!(diff < 1e-6);
        Ok(())
    }

    #[test]
    fn rotation_preserves_norm() -> Result<()> {
        let dev = Device::Cpu;
        let rot = Rotary2d::new(16, false, &dev)?;
        let x = Tensor::arange(0f32, 16.0, &dev)?.reshape((1, 1, 1, 16))?;
        let pos = Tensor::new(&[[[7u32], [3u32]]], &dev)?;
        let y = rot.apply(&x, &pos)?;
        let n0 = x.sqr()?.sum_all()?.to_scalar::<f32>()?;
        let n1 = y.sqr()?.sum_all()?.to_scalar::<f32>()?;
        assert!((n0 - n1).abs() / n0 < 1e-5);
        let moved = max_abs_diff(&y, &x);
        assert!(moved > 0.1);
        Ok(())
    }
}
