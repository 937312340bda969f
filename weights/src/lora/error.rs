//! Errors of loading, saving and applying LoRA adapters.

use std::path::PathBuf;

use visualglm_nn::lora::AdapterError;

use crate::checkpoint::CheckpointError;

/// Anything that can go wrong with LoRA files or adapted models. File problems name the file,
/// tensor problems the tensor.
#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    /// The adapters do not fit each other, their configuration or the base model.
    #[error(transparent)]
    Adapter(Box<AdapterError>),
    /// The base checkpoint could not be read.
    #[error(transparent)]
    Checkpoint(Box<CheckpointError>),
    /// The model could not be built or run (a `VisualGlmError`, boxed so that the two error
    /// types, which nest each other, stay in their own files).
    #[error(transparent)]
    Model(Box<dyn std::error::Error + Send + Sync>),
    /// A LoRA configuration file is missing, malformed or inconsistent.
    #[error("{}: {message}", path.display())]
    Config {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A safetensors file could not be read or written.
    #[error("{}: {source}", path.display())]
    Tensors {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error.
        source: Box<candle_core::Error>,
    },
    /// The request is valid but not supported.
    #[error("LoRA: {0}")]
    Unsupported(String),
}

impl LoraError {
    /// A [`LoraError::Config`] for `path`.
    pub fn config(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        LoraError::Config {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl From<CheckpointError> for LoraError {
    fn from(e: CheckpointError) -> Self {
        LoraError::Checkpoint(Box::new(e))
    }
}

impl From<AdapterError> for LoraError {
    fn from(e: AdapterError) -> Self {
        LoraError::Adapter(Box::new(e))
    }
}
