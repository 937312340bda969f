//! [`ParamSet`]: the named trainable variables of a run, which the gradients and the
//! optimiser both index.

use std::collections::{HashMap, HashSet};

use candle_core::{Tensor, Var};

use crate::error::{Result, TrainError};

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
                return Err(TrainError::Config(format!(
                    "duplicate parameter name {name:?}"
                )));
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
