//! [`GgufError`]: what can go wrong reading or writing a VisualGLM GGUF file.

use std::path::PathBuf;

use crate::checkpoint::{CheckpointError, FORMAT_NAME};
use crate::config::ConfigError;

/// Errors reading or writing a VisualGLM GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with the GGUF magic.
    #[error("{path}: not a GGUF file (starts with {found:?}, expected \"GGUF\")")]
    NotGguf {
        /// The file.
        path: PathBuf,
        /// Its first bytes.
        found: String,
    },
    /// The GGUF header or a tensor could not be parsed (truncated or corrupt file).
    #[error("{path}: corrupt or truncated GGUF: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// A valid GGUF file that this crate did not write (e.g. a llama.cpp model).
    #[error(
        "{path}: a GGUF file for `{architecture}`, not one written by `visualglm quantize` \
         (metadata `format` is {format:?}, expected \"{FORMAT_NAME}\")"
    )]
    Foreign {
        /// The file.
        path: PathBuf,
        /// Its `general.architecture`, or `unknown`.
        architecture: String,
        /// Its `format` value, if any.
        format: Option<String>,
    },
    /// A metadata entry is missing or has a bad value.
    #[error("{path}: metadata `{key}`: {message}")]
    Metadata {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What was wrong.
        message: String,
    },
    /// The embedded configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The tensors do not match the configuration.
    #[error("{path}: tensors do not match the model:{report}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// One line per problem.
        report: String,
    },
    /// A tensor could not be read, converted or quantized.
    #[error("{path}: tensor `{name}`: {source}")]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// The underlying error.
        #[source]
        source: Box<candle_core::Error>,
    },
    /// The input checkpoint of [`write_gguf`](super::write_gguf) could not be loaded.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Building the model from the file's tensors failed.
    #[error("{path}: {source}")]
    Model {
        /// The file.
        path: PathBuf,
        /// The underlying error (the model library's).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl From<visualglm_files::Error> for GgufError {
    /// An atomic write failed: the file and the I/O error.
    fn from(e: visualglm_files::Error) -> Self {
        GgufError::Io {
            path: e.path,
            source: e.source,
        }
    }
}
