//! AdamW with explicit, saveable state, over a named set of trainable variables.
//!
//! Update (torch `AdamW`, which DeepSpeed's Adam with `adam_w_mode` matches), per
//! parameter with its own step count `t`:
//! `p ← p·(1 − lr·wd)` (if decayed); `m ← β₁m + (1−β₁)g`; `v ← β₂v + (1−β₂)g²`;
//! `p ← p − (lr/(1−β₁ᵗ))·m / (√v/√(1−β₂ᵗ) + eps)`. Math and state are f32; a parameter of
//! another dtype is updated in f32 and cast back.

use std::collections::{HashMap, HashSet};

use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::grads::Gradients;

/// One trainable variable.
#[derive(Debug, Clone)]
pub struct Param {
    /// Unique name (the checkpoint key, e.g. `transformer.layers.0.attention.dense.matrix_A.0`).
    pub name: String,
    /// The variable.
    pub var: Var,
    /// Whether weight decay applies.
    pub weight_decay: bool,
}

/// The trainable variables of a run, in a fixed order.
#[derive(Debug, Clone, Default)]
pub struct ParamSet {
    params: Vec<Param>,
}

impl ParamSet {
    /// Builds a set; weight decay defaults to on for tensors of rank ≥ 2 and off for
    /// biases, norm gains and scalars (rank < 2), as Megatron/SAT do. Names must be unique.
    pub fn new(vars: impl IntoIterator<Item = (String, Var)>) -> Result<Self> {
        let mut seen = HashSet::new();
        let mut params = Vec::new();
        for (name, var) in vars {
            if !seen.insert(name.clone()) {
                return Err(TrainError::Config(format!("duplicate parameter name {name:?}")));
            }
            let weight_decay = var.rank() >= 2;
            params.push(Param {
                name,
                var,
                weight_decay,
            });
        }
        Ok(Self { params })
    }

    /// Turns weight decay on or off for `name`.
    pub fn set_weight_decay(&mut self, name: &str, on: bool) -> Result<()> {
        let p = self
            .params
            .iter_mut()
            .find(|p| p.name == name)
            .ok_or_else(|| TrainError::Config(format!("no parameter named {name:?}")))?;
        p.weight_decay = on;
        Ok(())
    }

    /// The parameters.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Number of parameters (tensors).
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Current values by name (for a checkpoint).
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.params
            .iter()
            .map(|p| (p.name.clone(), p.var.as_tensor().detach()))
            .collect()
    }

    /// Sets every variable from `tensors` (exact names, shapes; cast to each var's dtype).
    pub fn load(&self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        for p in &self.params {
            let t = tensors
                .get(&p.name)
                .ok_or_else(|| TrainError::Config(format!("no saved tensor for {:?}", p.name)))?;
            if t.dims() != p.var.dims() {
                return Err(TrainError::Config(format!(
                    "saved {:?} has shape {:?}, the model has {:?}",
                    p.name,
                    t.dims(),
                    p.var.dims()
                )));
            }
            p.var
                .set(&t.to_dtype(p.var.dtype())?.to_device(p.var.device())?)?;
        }
        Ok(())
    }
}

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
        let m = params.params.iter().map(zeros).collect::<candle_core::Result<Vec<_>>>()?;
        let v = params.params.iter().map(zeros).collect::<candle_core::Result<Vec<_>>>()?;
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
        for (i, p) in self.params.params.iter().enumerate() {
            let Some(g) = grads.get(i) else { continue };
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
        for (i, p) in self.params.params.iter().enumerate() {
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
        for (i, p) in self.params.params.iter().enumerate() {
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
                return Err(TrainError::Config(format!("negative step for {:?}", p.name)));
            }
            self.m[i] = m.to_dtype(DType::F32)?.to_device(p.var.device())?;
            self.v[i] = v.to_dtype(DType::F32)?.to_device(p.var.device())?;
            self.steps[i] = step as u64;
        }
        Ok(())
    }
}
