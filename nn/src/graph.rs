//! Outputs computed outside the autograd graph, joined to it with a backward of our own: the
//! frozen linear (input gradient only), the checkpointed segment (recompute in the backward),
//! a data-parallel gather (gradient summed over ranks).
//!
//! [`join_output`] makes `y` the result of a graph op over `x`. The op's forward takes `y`
//! (copying it once and dropping it), so the graph holds each such output once.

use std::sync::{Mutex, PoisonError};

use candle_core::backend::{BackendDevice, BackendStorage};
use candle_core::{
    CpuStorage, CudaStorage, CustomOp1, Layout, MetalStorage, Result, Shape, Storage, Tensor,
};

/// The backward of a joined output: `(x, grad of the output) → grad of x`.
pub type Backward = dyn Fn(&Tensor, &Tensor) -> Result<Option<Tensor>> + Send + Sync;

/// `y` (computed from `x` outside the graph, e.g. from `x.detach()`) as the result of a graph
/// op named `name` over `x`, whose backward is `backward(x, grad_y)`. `y` must be on `x`'s
/// device; when `x` is not tracked the result is simply a copy of `y`.
pub fn join_output(
    x: &Tensor,
    y: &Tensor,
    name: &'static str,
    backward: impl Fn(&Tensor, &Tensor) -> Result<Option<Tensor>> + Send + Sync + 'static,
) -> Result<Tensor> {
    x.apply_op1(Joined {
        name,
        y: Mutex::new(Some(y.detach())),
        backward: Box::new(backward),
    })
}

/// The op of [`join_output`].
struct Joined {
    name: &'static str,
    /// The output, until the forward takes it.
    y: Mutex<Option<Tensor>>,
    backward: Box<Backward>,
}

impl Joined {
    /// Takes the output and copies its elements for the backend `pick` selects.
    fn take<S>(&self, pick: impl Fn(&Storage) -> Option<&S>) -> Result<(S, Shape)>
    where
        S: BackendStorage,
        S::Device: BackendDevice<Storage = S>,
    {
        let y = self
            .y
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| candle_core::Error::Msg(format!("{}: run twice", self.name)))?;
        let (storage, layout) = y.storage_and_layout();
        let s = pick(&storage).ok_or_else(|| {
            candle_core::Error::Msg(format!("{}: the output is on another device", self.name))
        })?;
        copy_of(s, layout)
    }
}

impl CustomOp1 for Joined {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        self.take(|s| match s {
            Storage::Cpu(s) => Some(s),
            _ => None,
        })
    }

    fn cuda_fwd(&self, _: &CudaStorage, _: &Layout) -> Result<(CudaStorage, Shape)> {
        self.take(|s| match s {
            Storage::Cuda(s) => Some(s),
            _ => None,
        })
    }

    fn metal_fwd(&self, _: &MetalStorage, _: &Layout) -> Result<(MetalStorage, Shape)> {
        self.take(|s| match s {
            Storage::Metal(s) => Some(s),
            _ => None,
        })
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        (self.backward)(x, grad)
    }
}

/// A fresh contiguous copy of the elements of `s` under `layout` (any backend).
fn copy_of<S>(s: &S, layout: &Layout) -> Result<(S, Shape)>
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
