//! The crate's single error type.

use std::path::PathBuf;

/// Everything that can go wrong while reading evaluation files or scoring.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A whole-file JSON document is not valid JSON or has the wrong shape.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file at fault.
        path: PathBuf,
        /// The parser's error (it names the line and column).
        source: serde_json::Error,
    },
    /// One line of a JSONL file is not valid JSON or has the wrong shape.
    #[error("{path}:{line}: {message}")]
    Line {
        /// The file at fault.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with that line.
        message: String,
    },
    /// A file is well-formed JSON but its content is unusable.
    #[error("{path}: {message}")]
    Content {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The inputs handed to a scorer are inconsistent (not tied to a file).
    #[error("invalid input: {0}")]
    Input(String),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, EvalError>;
