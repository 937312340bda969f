//! The two-layer transformer MLP shared by the ViT, the Q-Former and ChatGLM:
//! `dense_4h_to_h(act(dense_h_to_4h(x)))`.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::linear::Linear;

/// The MLP's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU (`erf`): EVA ViT and Q-Former.
    GeluErf,
    /// tanh-approximated GELU: ChatGLM.
    GeluTanh,
}

/// `dense_4h_to_h(act(dense_h_to_4h(x)))` with the checkpoint's names.
#[derive(Debug, Clone)]
pub struct Mlp {
    /// The up projection `[inner, width]`.
    pub dense_h_to_4h: Linear,
    /// The down projection `[width, inner]`.
    pub dense_4h_to_h: Linear,
    activation: Activation,
}

impl Mlp {
    /// Loads `dense_h_to_4h` and `dense_4h_to_h` (with biases) from `vb`.
    pub fn load(
        width: usize,
        inner: usize,
        activation: Activation,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            dense_h_to_4h: Linear::load(width, inner, vb.pp("dense_h_to_4h"))?,
            dense_4h_to_h: Linear::load(inner, width, vb.pp("dense_4h_to_h"))?,
            activation,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.dense_h_to_4h.forward(x)?;
        let h = match self.activation {
            Activation::GeluErf => crate::activation::gelu_erf(&h)?,
            Activation::GeluTanh => crate::activation::gelu_tanh(&h)?,
        };
        self.dense_4h_to_h.forward(&h)
    }
}
