//! The crate's single error type.

use std::path::PathBuf;

/// Everything that can go wrong in `visualglm-train`.
///
/// Messages name the file (and, for data records, the line or record index) at fault.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// An I/O operation on `path` failed.
    #[error("{path}: {op}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What was being done ("open", "read", "rename", ...).
        op: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A data record is malformed (bad JSON, missing or mistyped field, ...).
    #[error("{path}:{location}: malformed record: {reason}")]
    MalformedRecord {
        /// The data file.
        path: PathBuf,
        /// Where in the file: `line N` and/or `record N`.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A data line / record / document is larger than the configured limit.
    #[error("{path}:{location}: larger than the limit of {limit} bytes; refused")]
    RecordTooLarge {
        /// The data file.
        path: PathBuf,
        /// Where in the file.
        location: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// The data file is not in the expected overall format (not a JSON list, truncated, ...).
    #[error("{path}: {reason}")]
    BadDataFile {
        /// The data file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An image could not be loaded by the user-supplied loader.
    #[error("{path} (from {record}): image load failed: {reason}")]
    ImageLoad {
        /// The image file.
        path: PathBuf,
        /// The data record it came from (`file:line`).
        record: String,
        /// The loader's message.
        reason: String,
    },
    /// Invalid configuration or arguments.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A checkpoint is missing, incomplete or corrupt.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint directory or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file the run needs does not exist.
    #[error("{what} file {path} does not exist")]
    MissingFile {
        /// What the file is for (`training data`, `validation data`, `run configuration`).
        what: &'static str,
        /// The path as given (resolved).
        path: PathBuf,
    },
    /// Another training run holds the lock on this output directory.
    #[error(
        "{dir} is in use by another training run (it holds {dir}/.lock): wait for it to \
         end, stop it, or give another `out`"
    )]
    Busy {
        /// The output directory.
        dir: PathBuf,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl From<visualglm_files::Error> for TrainError {
    /// A file write, rename or fsync failed: the path, the operation and the I/O error.
    fn from(e: visualglm_files::Error) -> Self {
        Self::io(e.path, e.op, e.source)
    }
}

impl TrainError {
    /// Builds an [`TrainError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, op: &'static str, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            op,
            source,
        }
    }

    /// Builds a [`TrainError::Checkpoint`] for `path`.
    pub fn checkpoint(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Checkpoint {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// `Result` with [`TrainError`].
pub type Result<T> = std::result::Result<T, TrainError>;
