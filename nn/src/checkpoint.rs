//! Activation checkpointing: a segment of the network (one transformer layer) keeps only its
//! input for the backward pass and recomputes its internals there.
//!
//! [`Checkpointing::segment`] runs the segment once, keeps its input and output (once), and
//! drops everything in between. Its backward pass runs the segment again on the saved input, with
//! the same code and therefore the same kernels (both passes see a tracked input), and
//! back-propagates the incoming gradient through that copy. The gradient of the input goes on
//! down the outer graph; the gradients of the trainable parameters reached inside the segment
//! cannot (a candle custom op returns gradients for its arguments only), so they are collected
//! here and added to the outer result with [`Checkpointing::merge_into`] after
//! `loss.backward()`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, TensorId, Var};

use crate::graph::join_output;

use crate::{FusedSelfAttention, LayerNorm, Linear, Mlp};

/// Whether a part holds tensors that train (variables or unmerged adapters), so that a
/// checkpointed segment made of it needs a backward pass even when its input does not.
pub trait HasParams {
    /// `true` when some weight of the part is tracked for gradients.
    fn has_params(&self) -> bool;
}

impl HasParams for Linear {
    fn has_params(&self) -> bool {
        self.weight().is_some_and(Tensor::track_op)
            || self.bias().is_some_and(Tensor::track_op)
            || !self.adapters().is_empty()
    }
}

impl HasParams for LayerNorm {
    fn has_params(&self) -> bool {
        self.weight().track_op() || self.bias().track_op()
    }
}

impl HasParams for Mlp {
    fn has_params(&self) -> bool {
        self.up.has_params() || self.down.has_params()
    }
}

impl HasParams for FusedSelfAttention {
    fn has_params(&self) -> bool {
        self.qkv.has_params() || self.out.has_params()
    }
}

/// Gradients of parameters collected by segments' backward passes, by tensor id.
type Sink = Arc<Mutex<HashMap<TensorId, Tensor>>>;

/// Activation checkpointing over the trainable parameters of one model (clones share state).
#[derive(Clone, Default)]
pub struct Checkpointing {
    params: Arc<Vec<Tensor>>,
    sink: Sink,
}

impl std::fmt::Debug for Checkpointing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointing")
            .field("params", &self.params.len())
            .finish()
    }
}

impl Checkpointing {
    /// Checkpointing whose segments collect the gradients of `params` (the trainable
    /// variables; gradients of other tensors inside a segment are dropped).
    pub fn new(params: Vec<Tensor>) -> Self {
        Self {
            params: Arc::new(params),
            sink: Sink::default(),
        }
    }

    /// Runs `f` on `x` as a checkpointed segment. `has_params` says whether the segment holds
    /// trainable tensors; when it does not and `x` is untracked, `f` simply runs untracked.
    pub fn segment<F>(&self, x: &Tensor, has_params: bool, f: F) -> Result<Tensor>
    where
        F: Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static,
    {
        if !x.track_op() && !has_params {
            return f(x);
        }
        // The first pass runs on a tracked leaf, as the recomputation will, so both take the
        // same kernels; its graph is dropped with `out` once the output is detached.
        let leaf = Var::from_tensor(&x.detach())?;
        let y = f(leaf.as_tensor())?.detach();
        // A tracked argument makes the result tracked even when `x` is not.
        let arg = if x.track_op() {
            x.clone()
        } else {
            leaf.as_tensor().clone()
        };
        let checkpointing = self.clone();
        join_output(&arg, &y, "checkpoint", move |arg, grad| {
            checkpointing.recompute_backward(&f, arg, grad)
        })
    }

    /// The segment's backward: runs `f` again on the saved input `arg` with the graph on,
    /// back-propagates `grad` through it, keeps the parameters' gradients and returns the
    /// input's.
    fn recompute_backward(
        &self,
        f: &dyn Fn(&Tensor) -> Result<Tensor>,
        arg: &Tensor,
        grad: &Tensor,
    ) -> Result<Option<Tensor>> {
        let leaf = Var::from_tensor(&arg.detach())?;
        let out = f(leaf.as_tensor())?;
        let grad = grad.detach().to_dtype(out.dtype())?;
        let grads = (out * grad)?.sum_all()?.backward()?;
        self.collect(&grads)?;
        Ok(grads.get(leaf.as_tensor()).map(Tensor::detach))
    }

    /// Adds the parameter gradients the segments' backward passes collected to `store` (the
    /// result of `loss.backward()`), and empties the collection.
    pub fn merge_into(&self, store: &mut GradStore) -> Result<()> {
        let collected =
            std::mem::take(&mut *self.sink.lock().unwrap_or_else(PoisonError::into_inner));
        for (id, grad) in collected {
            let sum = match store.get_id(id) {
                Some(g) => (g + grad)?,
                None => grad,
            };
            store.insert_id(id, sum);
        }
        Ok(())
    }

    /// Drops collected gradients (after a failed backward pass).
    pub fn clear(&self) {
        self.sink
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn collect(&self, grads: &GradStore) -> Result<()> {
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        for p in self.params.iter() {
            let Some(g) = grads.get(p) else { continue };
            let g = g.detach();
            let sum = match sink.remove(&p.id()) {
                Some(prev) => (prev + g)?,
                None => g,
            };
            sink.insert(p.id(), sum);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Module};

    /// Two small layers with a trainable weight in the second; the checkpointed and plain
    /// gradients of every variable must be equal.
    #[test]
    fn checkpointed_gradients_equal_plain_ones() -> Result<()> {
        let dev = Device::Cpu;
        let x0 = Var::randn(0f32, 1.0, (2, 3, 8), &dev)?;
        let frozen = Tensor::randn(0f32, 0.3, (8, 8), &dev)?;
        let w = Var::randn(0f32, 0.3, (8, 8), &dev)?;
        let layer1 = Linear::from_weights(frozen.clone(), None);
        let layer2 = Linear::from_weights(w.as_tensor().clone(), None);
        let run = |ck: Option<&Checkpointing>, input: &Tensor| -> Result<Tensor> {
            let (l1, l2) = (layer1.clone(), layer2.clone());
            let f1 = move |h: &Tensor| l1.forward(h)?.tanh();
            let f2 = move |h: &Tensor| l2.forward(h)?.gelu();
            match ck {
                None => f2(&f1(input)?),
                Some(ck) => {
                    let h = ck.segment(input, false, f1)?;
                    ck.segment(&h, true, f2)
                }
            }
        };
        let target = Tensor::randn(0f32, 1.0, (2, 3, 8), &dev)?;
        let loss = |y: Tensor| (y - &target)?.sqr()?.sum_all();
        let plain = loss(run(None, x0.as_tensor())?)?.backward()?;
        let ck = Checkpointing::new(vec![w.as_tensor().clone(), x0.as_tensor().clone()]);
        let out = run(Some(&ck), x0.as_tensor())?;
        assert_eq!(
            out.flatten_all()?.to_vec1::<f32>()?,
            run(None, x0.as_tensor())?.flatten_all()?.to_vec1::<f32>()?
        );
        let mut got = loss(out)?.backward()?;
        ck.merge_into(&mut got)?;
        for v in [&w, &x0] {
            let want = plain.get(v.as_tensor()).expect("plain gradient");
            let have = got.get(v.as_tensor()).expect("checkpointed gradient");
            let diff = (want - have)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(diff <= 1e-6, "{diff}");
        }
        // The collection is emptied by the merge.
        assert!(ck.sink.lock().expect("sink").is_empty());
        Ok(())
    }

    /// An untracked input into a segment with parameters still yields their gradients; an
    /// untracked input into one without runs plainly (its output is untracked).
    #[test]
    fn untracked_inputs_reach_the_segment_parameters() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (4, 8), &dev)?;
        let w = Var::randn(0f32, 0.3, (8, 8), &dev)?;
        let lin = Linear::from_weights(w.as_tensor().clone(), None);
        let ck = Checkpointing::new(vec![w.as_tensor().clone()]);
        let l = lin.clone();
        let y = ck.segment(&x, true, move |h| l.forward(h))?;
        let mut got = y.sqr()?.sum_all()?.backward()?;
        ck.merge_into(&mut got)?;
        let want = lin.forward(&x)?.sqr()?.sum_all()?.backward()?;
        let diff = (want.get(w.as_tensor()).expect("plain")
            - got.get(w.as_tensor()).expect("checkpointed"))?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
        assert!(diff <= 1e-6, "{diff}");
        let frozen = Linear::from_weights(Tensor::randn(0f32, 0.3, (8, 8), &dev)?, None);
        assert!(!frozen.has_params() && lin.has_params());
        let y = ck.segment(&x, frozen.has_params(), move |h| frozen.forward(h))?;
        assert!(!y.track_op());
        Ok(())
    }
}
