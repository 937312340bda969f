//! The library's error type.

use crate::checkpoint::CheckpointError;
use crate::config::ConfigError;

/// Anything that can go wrong loading or running VisualGLM.
#[derive(Debug, thiserror::Error)]
pub enum VisualGlmError {
    /// The checkpoint could not be read or does not match the model.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The configuration file is missing or malformed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The tokenizer could not be loaded or failed.
    #[error(transparent)]
    Tokenizer(#[from] visualglm_tokenizer::TokenizerError),
    /// The prompt could not be built (e.g. it is too long).
    #[error(transparent)]
    Prompt(#[from] visualglm_language::prompt::PromptError),
    /// An image could not be read or preprocessed.
    #[error(transparent)]
    Image(#[from] visualglm_vision::preprocess::PreprocessError),
    /// A tensor operation failed.
    #[error("tensor error: {}", first_line(.0))]
    Candle(#[from] candle_core::Error),
    /// The caller passed inputs the model cannot run.
    #[error("invalid input: {0}")]
    Input(String),
}

/// Result with [`VisualGlmError`].
pub type Result<T> = std::result::Result<T, VisualGlmError>;

/// The first line of an error's message (candle appends a backtrace when `RUST_BACKTRACE`
/// is set; a CLI error stays one line).
pub fn first_line(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    text.lines()
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_string()
}
