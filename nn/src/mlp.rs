//! The two-layer transformer MLP: `down(act(up(x)))`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::linear::Linear;

/// The MLP's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU (`erf`).
    GeluErf,
    /// tanh-approximated GELU.
    GeluTanh,
}

/// `down(act(up(x)))`.
#[derive(Debug, Clone)]
pub struct Mlp {
    /// The up projection `[inner, width]`.
    pub up: Linear,
    /// The down projection `[width, inner]`.
    pub down: Linear,
    activation: Activation,
}

impl Mlp {
    /// Loads the up and down projections (with biases) from `up` and `down`, which name them
    /// as the checkpoint does.
    pub fn load(
        width: usize,
        inner: usize,
        activation: Activation,
        up: VarBuilder,
        down: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            up: Linear::load(width, inner, up)?,
            down: Linear::load(inner, width, down)?,
            activation,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.up.forward(x)?;
        let h = match self.activation {
            Activation::GeluErf => crate::activation::gelu_erf(&h)?,
            Activation::GeluTanh => crate::activation::gelu_tanh(&h)?,
        };
        self.down.forward(&h)
    }
}
