//! The one error type of the tokenizer crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading, converting or using the ChatGLM tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The `.model` file is not a SentencePiece model protobuf.
    #[error("{path}: not a SentencePiece model ({reason})")]
    CorruptModel {
        /// The file at fault.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// The SentencePiece model uses a feature this port does not implement.
    #[error("{path}: unsupported SentencePiece setting: {what}")]
    Unsupported {
        /// The file at fault.
        path: PathBuf,
        /// The setting, and why it is refused.
        what: String,
    },
    /// The vocabulary lacks a piece the ChatGLM tokenizer needs.
    #[error("{path}: not a ChatGLM vocabulary: piece {piece:?} is missing")]
    MissingPiece {
        /// The file at fault.
        path: PathBuf,
        /// The piece that is missing.
        piece: String,
    },
    /// `tokenizer.json` could not be parsed or built.
    #[error("{path}: bad tokenizer.json: {reason}")]
    BadJson {
        /// The file at fault.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// A model directory holds neither `tokenizer.json` nor a `*.model` file.
    #[error("{dir}: no tokenizer.json or *.model file in this directory")]
    NoTokenizerInDir {
        /// The directory searched.
        dir: PathBuf,
    },
    /// A tokenizer path is neither a `.model` nor a `.json` file.
    #[error("{path}: expected a SentencePiece .model or a tokenizer.json file")]
    UnknownFileKind {
        /// The file at fault.
        path: PathBuf,
    },
    /// The `tokenizers` pipeline failed while encoding.
    #[error("{path}: encoding failed: {reason}")]
    Encode {
        /// The tokenizer file in use.
        path: PathBuf,
        /// The pipeline's message.
        reason: String,
    },
    /// Training a tokenizer failed (bad settings, too little text, trainer error).
    #[error("tokenizer training: {reason}")]
    Train {
        /// What went wrong.
        reason: String,
    },
    /// An id to decode is outside the vocabulary.
    #[error("id {id} is outside the vocabulary of {path} ({size} pieces)")]
    IdOutOfRange {
        /// The bad id.
        id: u32,
        /// Number of pieces.
        size: usize,
        /// The tokenizer file in use.
        path: PathBuf,
    },
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, TokenizerError>;
