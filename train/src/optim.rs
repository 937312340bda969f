//! AdamW with explicit, saveable state, over a named set of trainable variables.
//!
//! Update (torch `AdamW`, which DeepSpeed's Adam with `adam_w_mode` matches), per
//! parameter with its own step count `t`:
//! `p ← p·(1 − lr·wd)` (if decayed); `m ← β₁m + (1−β₁)g`; `v ← β₂v + (1−β₂)g²`;
//! `p ← p − (lr/(1−β₁ᵗ))·m / (√v/√(1−β₂ᵗ) + eps)`. Math and state are f32; a parameter of
//! another dtype is updated in f32 and cast back.

use std::collections::HashMap;

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::grads::Gradients;
pub use crate::params::{Param, ParamSet};

/// AdamW hyper-parameters (the learning rate comes from the schedule at each step).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// β₁ (release 0.9).
    pub beta1: f64,
    /// β₂ (release 0.95).
    pub beta2: f64,
    /// ε (release 1e-8).
    pub eps: f64,
    /// Decoupled weight decay (release 0.01).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// AdamW whose moments and step counts can be saved and restored exactly.
#[derive(Debug)]
pub struct AdamW {
    cfg: AdamWConfig,
    params: ParamSet,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    steps: Vec<u64>,
}

impl AdamW {
    /// A fresh optimiser (zero moments).
    pub fn new(params: ParamSet, cfg: AdamWConfig) -> Result<Self> {
        let zeros = |p: &Param| Tensor::zeros(p.var.shape(), DType::F32, p.var.device());
        let m = params
            .params()
            .iter()
            .map(zeros)
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = params
            .params()
            .iter()
            .map(zeros)
            .collect::<candle_core::Result<Vec<_>>>()?;
        let steps = vec![0; params.len()];
        Ok(Self {
            cfg,
            params,
            m,
            v,
            steps,
        })
    }

    /// The parameters it updates.
    pub fn params(&self) -> &ParamSet {
        &self.params
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.cfg
    }

    /// One update with learning rate `lr`. Parameters without a gradient are left alone
    /// (no decay, no moment update), as torch does.
    pub fn step(&mut self, grads: &Gradients, lr: f64) -> Result<()> {
        if grads.len() != self.params.len() {
            return Err(TrainError::Config(format!(
                "{} gradients for {} parameters",
                grads.len(),
                self.params.len()
            )));
        }
        let AdamWConfig {
            beta1,
            beta2,
            eps,
            weight_decay,
        } = self.cfg;
        for (i, p) in self.params.params().iter().enumerate() {
            let Some(g) = grads.get(i) else { continue };
            if g.dims() != p.var.dims() {
                return Err(TrainError::Config(format!(
                    "gradient of {:?} has shape {:?}, the parameter {:?}",
                    p.name,
                    g.dims(),
                    p.var.dims()
                )));
            }
            self.steps[i] += 1;
            let t = self.steps[i] as i32;
            let g = g.to_dtype(DType::F32)?;
            let m = ((&self.m[i] * beta1)? + (&g * (1.0 - beta1))?)?;
            let v = ((&self.v[i] * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let bc1 = 1.0 - beta1.powi(t);
            let bc2 = 1.0 - beta2.powi(t);
            let mut w = p.var.as_tensor().detach().to_dtype(DType::F32)?;
            if p.weight_decay && weight_decay != 0.0 {
                w = (w * (1.0 - lr * weight_decay))?;
            }
            let denom = ((v.sqrt()? / bc2.sqrt())? + eps)?;
            let w = (w - ((&m / denom)? * (lr / bc1))?)?;
            p.var.set(&w.to_dtype(p.var.dtype())?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// The state as named tensors: `m.<name>`, `v.<name>` (f32) and `step.<name>` (i64 scalar).
    pub fn state_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, p) in self.params.params().iter().enumerate() {
            out.insert(format!("m.{}", p.name), self.m[i].clone());
            out.insert(format!("v.{}", p.name), self.v[i].clone());
            let step = Tensor::new(self.steps[i] as i64, p.var.device())?;
            out.insert(format!("step.{}", p.name), step);
        }
        Ok(out)
    }

    /// Restores [`AdamW::state_tensors`] output (names and shapes must match).
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let get = |key: String| {
            state
                .get(&key)
                .ok_or_else(|| TrainError::Config(format!("optimiser state lacks {key:?}")))
        };
        for (i, p) in self.params.params().iter().enumerate() {
            let m = get(format!("m.{}", p.name))?;
            let v = get(format!("v.{}", p.name))?;
            if m.dims() != p.var.dims() || v.dims() != p.var.dims() {
                return Err(TrainError::Config(format!(
                    "optimiser state of {:?} has shape {:?}, the parameter {:?}",
                    p.name,
                    m.dims(),
                    p.var.dims()
                )));
            }
            let step = get(format!("step.{}", p.name))?
                .to_dtype(DType::I64)?
                .to_scalar::<i64>()?;
            if step < 0 {
                return Err(TrainError::Config(format!(
                    "negative step for {:?}",
                    p.name
                )));
            }
            self.m[i] = m.to_dtype(DType::F32)?.to_device(p.var.device())?;
            self.v[i] = v.to_dtype(DType::F32)?.to_device(p.var.device())?;
            self.steps[i] = step as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};
    use candle_nn::optim::{Optimizer, ParamsAdamW};

    fn var(v: &[f32]) -> Var {
        Var::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn first_step_moves_by_lr_times_sign() {
        let p = ParamSet::new([("p".to_string(), var(&[1.0, -2.0, 0.5]))]).unwrap();
        let cfg = AdamWConfig {
            weight_decay: 0.0,
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::new(p, cfg).unwrap();
        let g = Gradients::new(vec![Some(
            Tensor::new(&[0.3f32, -4.0, 1e-3], &Device::Cpu).unwrap(),
        )]);
        opt.step(&g, 0.1).unwrap();
        let got: Vec<f32> = opt.params().params()[0].var.as_tensor().to_vec1().unwrap();
        for (a, b) in got.iter().zip([0.9f32, -1.9, 0.4]) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn matches_candle_adamw_over_several_steps() {
        let init = [0.5f32, -1.5, 2.0, 0.25];
        let ours_var = var(&init);
        let theirs_var = var(&init);
        let mut ps = ParamSet::new([("p".to_string(), ours_var.clone())]).unwrap();
        ps.set_weight_decay("p", true).unwrap();
        let cfg = AdamWConfig::default();
        let mut ours = AdamW::new(ps, cfg).unwrap();
        let mut theirs = candle_nn::optim::AdamW::new(
            vec![theirs_var.clone()],
            ParamsAdamW {
                lr: 0.05,
                beta1: cfg.beta1,
                beta2: cfg.beta2,
                eps: cfg.eps,
                weight_decay: cfg.weight_decay,
            },
        )
        .unwrap();
        for k in 0..5 {
            // Same loss on both: sum(p^3) * (k+1).
            let l_ours = (ours_var.as_tensor().powf(3.0).unwrap().sum_all().unwrap()
                * (k + 1) as f64)
                .unwrap();
            let g = Gradients::from_store(&l_ours.backward().unwrap(), ours.params()).unwrap();
            ours.step(&g, 0.05).unwrap();
            let l_theirs = (theirs_var.as_tensor().powf(3.0).unwrap().sum_all().unwrap()
                * (k + 1) as f64)
                .unwrap();
            theirs.backward_step(&l_theirs).unwrap();
        }
        let a: Vec<f32> = ours_var.as_tensor().to_vec1().unwrap();
        let b: Vec<f32> = theirs_var.as_tensor().to_vec1().unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
        assert!(a.iter().zip(init).all(|(x, y)| x != &y));
    }

    #[test]
    fn decay_defaults_and_state_round_trip() {
        let d = Device::Cpu;
        let w = Var::zeros((2, 2), DType::F32, &d).unwrap();
        let b = Var::zeros(2, DType::F32, &d).unwrap();
        let ps = ParamSet::new([("w".to_string(), w.clone()), ("b".to_string(), b)]).unwrap();
        assert!(ps.params()[0].weight_decay && !ps.params()[1].weight_decay);
        assert!(ParamSet::new([("w".to_string(), w.clone()), ("w".to_string(), w)]).is_err());
        let mut opt = AdamW::new(ps, AdamWConfig::default()).unwrap();
        let g = Gradients::new(vec![
            Some(Tensor::ones((2, 2), DType::F32, &d).unwrap()),
            None,
        ]);
        opt.step(&g, 0.1).unwrap();
        let st = opt.state_tensors().unwrap();
        assert_eq!(st["step.w"].to_scalar::<i64>().unwrap(), 1);
        assert_eq!(st["step.b"].to_scalar::<i64>().unwrap(), 0);
        let mut other = AdamW::new(opt.params().clone(), AdamWConfig::default()).unwrap();
        other.load_state(&st).unwrap();
        assert_eq!(
            other.state_tensors().unwrap()["m.w"]
                .to_vec2::<f32>()
                .unwrap(),
            [[0.1f32, 0.1], [0.1, 0.1]]
        );
        let mut missing = st.clone();
        missing.remove("v.b");
        assert!(other.load_state(&missing).is_err());
    }
}
