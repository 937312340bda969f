//! Helpers the unit tests share.

use candle_core::{DType, Result, Tensor};

/// The largest absolute elementwise difference of `a` and `b`, compared in f32.
pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    (a.to_dtype(DType::F32)? - b.to_dtype(DType::F32)?)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()
}
