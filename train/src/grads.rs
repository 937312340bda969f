//! Gradients of a [`ParamSet`]: extraction, accumulation over micro-batches, global-norm
//! clipping, the finite check, and GLM-130B's embedding-gradient shrink.

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor};

use crate::error::{Result, TrainError};
use crate::params::ParamSet;

/// One gradient per parameter of a [`ParamSet`] (same order), f32; `None` where the
/// parameter got no gradient.
#[derive(Debug, Clone)]
pub struct Gradients {
    grads: Vec<Option<Tensor>>,
}

impl Gradients {
    /// Takes the gradients of `params` out of a `loss.backward()` result.
    pub fn from_store(store: &GradStore, params: &ParamSet) -> Result<Self> {
        let grads = params
            .params()
            .iter()
            .map(|p| {
                store
                    .get(p.var.as_tensor())
                    .map(|g| g.to_dtype(DType::F32))
                    .transpose()
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self { grads })
    }

    /// Wraps explicit gradients (one per parameter).
    pub fn new(grads: Vec<Option<Tensor>>) -> Self {
        Self { grads }
    }

    /// Number of slots (= parameters).
    pub fn len(&self) -> usize {
        self.grads.len()
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.grads.is_empty()
    }

    /// The gradient of parameter `i`.
    pub fn get(&self, i: usize) -> Option<&Tensor> {
        self.grads.get(i).and_then(Option::as_ref)
    }

    /// Names of the parameters without a gradient (a frozen path or a no-backward op).
    pub fn missing<'a>(&self, params: &'a ParamSet) -> Vec<&'a str> {
        params
            .params()
            .iter()
            .zip(&self.grads)
            .filter(|(_, g)| g.is_none())
            .map(|(p, _)| p.name.as_str())
            .collect()
    }

    /// `√Σ‖g‖²` over all gradients, in f64 (NaN/∞ if any element is).
    pub fn global_norm(&self) -> Result<f64> {
        let mut total = 0f64;
        for g in self.grads.iter().flatten() {
            total += g
                .sqr()?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
        }
        Ok(total.sqrt())
    }

    /// Multiplies every gradient by `s`.
    pub fn scale(&mut self, s: f64) -> Result<()> {
        for g in self.grads.iter_mut().flatten() {
            *g = (&*g * s)?;
        }
        Ok(())
    }

    /// torch `clip_grad_norm_`: if the global norm exceeds `max_norm`, scales by
    /// `max_norm / (norm + 1e-6)`. Returns the norm before clipping.
    pub fn clip_global_norm(&mut self, max_norm: f64) -> Result<f64> {
        let norm = self.global_norm()?;
        if norm.is_finite() {
            let coef = max_norm / (norm + 1e-6);
            if coef < 1.0 {
                self.scale(coef)?;
            }
        }
        Ok(norm)
    }

    /// Adds `other` slot by slot (`None` + x = x).
    pub fn add(&mut self, other: &Gradients) -> Result<()> {
        if other.len() != self.len() {
            return Err(TrainError::Config(format!(
                "adding {} gradients to {}",
                other.len(),
                self.len()
            )));
        }
        for (a, b) in self.grads.iter_mut().zip(&other.grads) {
            match (a.as_mut(), b) {
                (Some(a), Some(b)) => *a = (&*a + b)?,
                (None, Some(b)) => *a = Some(b.clone()),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Sums gradients over micro-batches (gradient accumulation).
#[derive(Debug, Default)]
pub struct GradAccumulator {
    sum: Option<Gradients>,
    count: usize,
}

impl GradAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one micro-batch's gradients.
    pub fn add(&mut self, grads: Gradients) -> Result<()> {
        match &mut self.sum {
            Some(sum) => sum.add(&grads)?,
            None => self.sum = Some(grads),
        }
        self.count += 1;
        Ok(())
    }

    /// Micro-batches added since the last take.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The summed gradients; resets the accumulator.
    pub fn take_sum(&mut self) -> Option<Gradients> {
        self.count = 0;
        self.sum.take()
    }

    /// The mean over micro-batches (DeepSpeed's behaviour: each micro-batch loss is scaled
    /// by 1/N); resets the accumulator.
    pub fn take_mean(&mut self) -> Result<Option<Gradients>> {
        let n = self.count;
        match self.take_sum() {
            Some(mut g) => {
                g.scale(1.0 / n as f64)?;
                Ok(Some(g))
            }
            None => Ok(None),
        }
    }
}

/// GLM-130B's embedding gradient shrink: `emb·α + emb.detach()·(1−α)`. The forward value
/// is unchanged; the gradient reaching `emb` is multiplied by `α` (GLM-130B: 0.1).
pub fn shrink_embedding_gradient(emb: &Tensor, alpha: f64) -> Result<Tensor> {
    Ok(((emb * alpha)? + (emb.detach() * (1.0 - alpha))?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn shrink_keeps_the_value_and_scales_the_gradient() {
        let x = Var::new(&[1.5f32, -2.0, 3.0], &Device::Cpu).unwrap();
        let y = shrink_embedding_gradient(x.as_tensor(), 0.1).unwrap();
        let yv: Vec<f32> = y.to_vec1().unwrap();
        for (a, b) in yv.iter().zip([1.5f32, -2.0, 3.0]) {
            assert!((a - b).abs() < 1e-6);
        }
        let loss = (y.sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
        let g: Vec<f32> = loss
            .backward()
            .unwrap()
            .get(x.as_tensor())
            .unwrap()
            .to_vec1()
            .unwrap();
        for (a, b) in g.iter().zip([0.15f32, -0.2, 0.3]) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn clipping_returns_the_pre_clip_norm() {
        let d = Device::Cpu;
        let mut g = Gradients::new(vec![
            Some(Tensor::new(&[3f32, 0.0], &d).unwrap()),
            None,
            Some(Tensor::new(&[[4f32]], &d).unwrap()),
        ]);
        let norm = g.clip_global_norm(1.0).unwrap();
        assert!((norm - 5.0).abs() < 1e-12);
        let after = g.global_norm().unwrap();
        assert!((after - 5.0 / (5.0 + 1e-6)).abs() < 1e-6);
        // Below the threshold: untouched.
        let n2 = g.clip_global_norm(10.0).unwrap();
        assert!((g.global_norm().unwrap() - n2).abs() < 1e-12);
    }

    #[test]
    fn accumulator_sums_and_means() {
        let d = Device::Cpu;
        let mk = |v: f32| Gradients::new(vec![Some(Tensor::new(&[v], &d).unwrap()), None]);
        let mut acc = GradAccumulator::new();
        acc.add(mk(1.0)).unwrap();
        acc.add(mk(3.0)).unwrap();
        assert_eq!(acc.count(), 2);
        let mean = acc.take_mean().unwrap().unwrap();
        assert_eq!(mean.get(0).unwrap().to_vec1::<f32>().unwrap(), [2.0]);
        assert!(mean.get(1).is_none());
        assert_eq!(acc.count(), 0);
        assert!(acc.take_sum().is_none());
        let mut nan = mk(f32::NAN);
        nan.add(&mk(1.0)).unwrap();
        assert!(!nan.global_norm().unwrap().is_finite());
    }
}
