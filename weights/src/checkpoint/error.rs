//! The error type of checkpoint reading, validation and writing.

use std::path::PathBuf;

use crate::config::ConfigError;

/// How many names a validation error lists per category before summarising.
pub const MAX_LISTED: usize = 5;

/// Everything that can go wrong while reading, checking or writing a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The path holds nothing that looks like a VisualGLM checkpoint.
    #[error("{path}: no checkpoint found ({hint})")]
    NotACheckpoint {
        /// The path given.
        path: PathBuf,
        /// What was looked for.
        hint: String,
    },
    /// The zip container of a torch `.bin`/`.pt` file is damaged.
    #[error("{path}: not a readable torch zip archive: {message}")]
    Zip {
        /// The file.
        path: PathBuf,
        /// What the zip reader said.
        message: String,
    },
    /// The pickle inside a torch file could not be understood.
    #[error("{path}: bad pickle: {message}")]
    Pickle {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A safetensors file is damaged.
    #[error("{path}: bad safetensors file: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// One tensor's record or data is unusable.
    #[error("{path}: tensor `{name}`: {message}")]
    BadTensor {
        /// The file.
        path: PathBuf,
        /// The tensor (as stored).
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A shard index (`*.index.json`) is malformed or disagrees with its shards.
    #[error("{path}: {message}")]
    Index {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A shard named in an index does not exist.
    #[error("{index}: shard `{shard}` is named in the index but {path} does not exist")]
    MissingShard {
        /// The index file.
        index: PathBuf,
        /// The shard as named in the index.
        shard: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The SAT `latest` file does not name a usable iteration directory.
    #[error("{path}: bad SAT `latest` file: {message}")]
    Latest {
        /// The `latest` file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// No configuration was found for the checkpoint.
    #[error("{path}: no configuration found; tried {tried} (pass a config path explicitly)")]
    MissingConfig {
        /// The checkpoint path.
        path: PathBuf,
        /// The places looked at, comma separated.
        tried: String,
    },
    /// The configuration is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The tensor names mix the HF and SAT conventions.
    #[error("{path}: tensor names mix HF (`{hf_name}`) and SAT (`{sat_name}`) conventions")]
    MixedNaming {
        /// The checkpoint path.
        path: PathBuf,
        /// An HF-style name found.
        hf_name: String,
        /// A SAT-style name found.
        sat_name: String,
    },
    /// Two stored tensors map to the same canonical name.
    #[error("tensor `{name}` appears twice: in {first} and in {second}")]
    Duplicate {
        /// The canonical name.
        name: String,
        /// Where it was first seen.
        first: PathBuf,
        /// Where it was seen again.
        second: PathBuf,
    },
    /// A QKV tensor cannot be re-laid out.
    #[error("{path}: tensor `{name}`: cannot convert QKV layout: {message}")]
    Qkv {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The checkpoint does not match the tensors the model expects.
    #[error("checkpoint does not match the model:{report}")]
    Validation {
        /// A multi-line description of what is missing, unexpected or mis-shaped.
        report: String,
        /// Number of expected tensors that are absent.
        missing: usize,
        /// Number of tensors the model does not use.
        unexpected: usize,
        /// Number of tensors with the wrong shape.
        mis_shaped: usize,
    },
    /// A tensor operation failed.
    #[error("{context}: {source}")]
    Candle {
        /// What was being done (names the file and tensor).
        context: String,
        /// The candle error.
        #[source]
        source: candle_core::Error,
    },
    /// Writing a converted checkpoint failed.
    #[error("{path}: cannot write checkpoint: {message}")]
    Write {
        /// The output file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl From<visualglm_files::Error> for CheckpointError {
    /// An atomic write failed: the file and the I/O error.
    fn from(e: visualglm_files::Error) -> Self {
        CheckpointError::io(e.path, e.source)
    }
}

impl CheckpointError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CheckpointError::Io {
            path: path.into(),
            source,
        }
    }

    /// Wraps a candle error with a description of what was being done.
    pub(crate) fn candle(context: impl Into<String>, source: candle_core::Error) -> Self {
        CheckpointError::Candle {
            context: context.into(),
            source,
        }
    }

    /// A bad-tensor error.
    pub(crate) fn tensor(
        path: impl Into<PathBuf>,
        name: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        CheckpointError::BadTensor {
            path: path.into(),
            name: name.into(),
            message: message.into(),
        }
    }
}
