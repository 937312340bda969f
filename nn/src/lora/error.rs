//! Errors of the adapter math.

/// Something is wrong with an adapter or its configuration. Every variant names the
/// adapted module (e.g. `blocks.0.attn.out`) or tensor.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The adapter tensors do not fit each other or the base weight.
    #[error("LoRA adapter `{target}`: {message}")]
    Shape {
        /// The adapted module or tensor.
        target: String,
        /// What does not fit.
        message: String,
    },
    /// The configuration is unusable (zero rank, non-finite alpha, …).
    #[error("LoRA configuration: {0}")]
    Config(String),
    /// A tensor the adapter set needs is absent.
    #[error("LoRA: tensor `{name}` is missing{context}")]
    Missing {
        /// The absent tensor.
        name: String,
        /// Extra context (for example the file it was looked for in), starting with a space.
        context: String,
    },
    /// A tensor name is not understood.
    #[error("LoRA: unexpected tensor `{name}`: {message}")]
    Unexpected {
        /// The tensor name.
        name: String,
        /// Why it is refused.
        message: String,
    },
    /// A tensor operation failed.
    #[error("LoRA adapter `{target}`: tensor error: {source}")]
    Candle {
        /// The adapted module.
        target: String,
        /// The underlying error.
        source: candle_core::Error,
    },
}

impl AdapterError {
    /// Wraps a candle error with the module it happened in.
    pub fn candle(target: &str) -> impl FnOnce(candle_core::Error) -> AdapterError + '_ {
        move |source| AdapterError::Candle {
            target: target.to_string(),
            source,
        }
    }
}
