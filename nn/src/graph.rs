//! Helpers of the custom graph ops (frozen linears, checkpointed segments) whose forward
//! returns a copy of an output computed outside the graph.

use std::sync::{Mutex, PoisonError};

use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::{CpuStorage, CudaStorage, Layout, MetalStorage, Result, Shape, Storage, Tensor};

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

/// An output computed outside the graph, waiting to be copied into a custom op's result: the
/// op's forward takes it (and so frees it once copied), so the graph keeps only the result and
/// not a second copy of every saved output.
pub(crate) struct PendingOutput(Mutex<Option<Tensor>>);

impl PendingOutput {
    /// Holds `y` until the op's forward.
    pub(crate) fn new(y: Tensor) -> Self {
        Self(Mutex::new(Some(y)))
    }

    /// Takes the output and copies its elements for the backend `pick` selects.
    fn take<S>(&self, pick: impl Fn(&Storage) -> Option<&S>) -> Result<(S, Shape)>
    where
        S: BackendStorage,
        S::Device: BackendDevice<Storage = S>,
    {
        let y = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| candle_core::Error::Msg("custom op run twice".into()))?;
        let (storage, layout) = y.storage_and_layout();
        let s = pick(&storage).ok_or_else(|| {
            candle_core::Error::Msg("the saved output is on another device".into())
        })?;
        copy_of(s, layout)
    }

    /// [`PendingOutput::take`] on the CPU.
    pub(crate) fn take_cpu(&self) -> Result<(CpuStorage, Shape)> {
        self.take(|s| match s {
            Storage::Cpu(s) => Some(s),
            _ => None,
        })
    }

    /// [`PendingOutput::take`] on CUDA.
    pub(crate) fn take_cuda(&self) -> Result<(CudaStorage, Shape)> {
        self.take(|s| match s {
            Storage::Cuda(s) => Some(s),
            _ => None,
        })
    }

    /// [`PendingOutput::take`] on Metal.
    pub(crate) fn take_metal(&self) -> Result<(MetalStorage, Shape)> {
        self.take(|s| match s {
            Storage::Metal(s) => Some(s),
            _ => None,
        })
    }
}
