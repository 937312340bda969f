//! [`BaseWeights`]: how the frozen weights of a fine-tune are held (dtype, quantization), and
//! the form each frozen tensor takes.

use candle_core::quantized::GgmlDType;
use candle_core::DType;

/// How the frozen base weights are held while training: trainable tensors are always f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseWeights {
    /// Dtype of the frozen linear weights and embedding tables (f32, f16 or bf16); norms,
    /// biases and position tables stay f32.
    pub dtype: DType,
    /// GGML type of the frozen ChatGLM layer linears (QLoRA); `None`: dense in `dtype`.
    pub quantize: Option<GgmlDType>,
}

impl Default for BaseWeights {
    fn default() -> Self {
        Self {
            dtype: DType::F32,
            quantize: None,
        }
    }
}

impl BaseWeights {
    /// What `name` (of `shape`) becomes when frozen: a GGML type, or a dense dtype.
    pub fn frozen_form(&self, name: &str, shape: &[usize]) -> FrozenForm {
        let linear_or_table = name.ends_with(".weight")
            && shape.len() >= 2
            && !name.contains("position_embeddings")
            && !(name.contains("word_embeddings") && name.starts_with("image_encoder."));
        if !linear_or_table {
            return FrozenForm::Dense(DType::F32);
        }
        let glm_linear = crate::streamed::is_glm_layer_linear(name, shape);
        if let (Some(q), true) = (self.quantize, glm_linear) {
            if let Some(q) = visualglm_nn::quant::fit_dtype(q, shape[1]) {
                return FrozenForm::Quantized(q);
            }
        }
        FrozenForm::Dense(self.dtype)
    }
}

/// How one frozen tensor is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrozenForm {
    /// Dense in this dtype.
    Dense(DType),
    /// GGML blocks of this type.
    Quantized(GgmlDType),
}
