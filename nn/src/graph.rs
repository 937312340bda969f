//! Helpers of the custom graph ops (frozen linears, checkpointed segments) whose forward
//! returns a copy of an output computed outside the graph.

use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::{Layout, Result, Shape};

/// A fresh contiguous copy of the elements of `s` under `layout` (any backend).
pub(crate) fn copy_of<S>(s: &S, layout: &Layout) -> Result<(S, Shape)>
where
    S: BackendStorage,
    S::Device: BackendDevice<Storage = S>,
{
    let shape = layout.shape().clone();
    // SAFETY: every element of the new storage is written by `copy_strided_src` just below
    // before it can be read.
    let mut dst = unsafe { s.device().alloc_uninit(&shape, s.dtype())? };
    s.copy_strided_src(&mut dst, 0, layout)?;
    Ok((dst, shape))
}
