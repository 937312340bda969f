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
    /// A model directory could not be written.
    #[error(transparent)]
    ModelDir(Box<crate::model_dir::ModelDirError>),
    /// A hub id could not be resolved to a local directory.
    #[cfg(feature = "hub")]
    #[error(transparent)]
    Hub(Box<crate::hub::HubError>),
    /// A training building block (data, labels, optimiser, training checkpoint) failed.
    #[error(transparent)]
    Train(Box<visualglm_train::TrainError>),
    /// LoRA adapters could not be read, made or applied.
    #[error(transparent)]
    Lora(Box<visualglm_weights::lora::LoraError>),
    /// A GGUF file could not be read, written or matched to the model.
    #[error(transparent)]
    Gguf(Box<visualglm_weights::gguf::GgufError>),
    /// A file or directory could not be read, created or written.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `cannot write`.
        action: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A model's `generation_config.json` could not be read or makes no sense.
    #[error(transparent)]
    Defaults(#[from] crate::defaults::DefaultsError),
    /// The caller passed inputs the model cannot run.
    #[error("invalid input: {0}")]
    Input(String),
}

impl From<visualglm_vision::decode::DecodeError> for VisualGlmError {
    fn from(e: visualglm_vision::decode::DecodeError) -> Self {
        Self::Image(e.into())
    }
}

impl VisualGlmError {
    /// An [`VisualGlmError::Io`] error maker for `path`, for `map_err`.
    pub fn io(
        action: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> VisualGlmError {
        let path = path.to_path_buf();
        move |source| VisualGlmError::Io {
            action,
            path,
            source,
        }
    }
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

impl From<visualglm_weights::gguf::GgufError> for VisualGlmError {
    /// Checkpoint, configuration and model errors keep their own variant.
    fn from(e: visualglm_weights::gguf::GgufError) -> Self {
        use visualglm_weights::gguf::GgufError;
        match e {
            GgufError::Checkpoint(c) => VisualGlmError::Checkpoint(c),
            GgufError::Config(c) => VisualGlmError::Config(c),
            GgufError::Model { path, source } => match source.downcast::<VisualGlmError>() {
                Ok(model) => *model,
                Err(source) => VisualGlmError::Gguf(Box::new(GgufError::Model { path, source })),
            },
            other => VisualGlmError::Gguf(Box::new(other)),
        }
    }
}

impl From<crate::model_dir::ModelDirError> for VisualGlmError {
    fn from(e: crate::model_dir::ModelDirError) -> Self {
        VisualGlmError::ModelDir(Box::new(e))
    }
}

#[cfg(feature = "hub")]
impl From<crate::hub::HubError> for VisualGlmError {
    fn from(e: crate::hub::HubError) -> Self {
        VisualGlmError::Hub(Box::new(e))
    }
}

impl From<visualglm_train::TrainError> for VisualGlmError {
    fn from(e: visualglm_train::TrainError) -> Self {
        VisualGlmError::Train(Box::new(e))
    }
}

impl From<visualglm_weights::lora::LoraError> for VisualGlmError {
    /// A model error inside keeps its own variant.
    fn from(e: visualglm_weights::lora::LoraError) -> Self {
        match e {
            visualglm_weights::lora::LoraError::Model(m) => match m.downcast::<VisualGlmError>() {
                Ok(model) => *model,
                Err(m) => {
                    VisualGlmError::Lora(Box::new(visualglm_weights::lora::LoraError::Model(m)))
                }
            },
            other => VisualGlmError::Lora(Box::new(other)),
        }
    }
}

impl From<VisualGlmError> for visualglm_weights::lora::LoraError {
    fn from(e: VisualGlmError) -> Self {
        visualglm_weights::lora::LoraError::Model(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn io_errors_name_the_action_and_path_and_keep_their_source() {
        let missing = std::path::Path::new("/nonexistent/itc.safetensors");
        let err = crate::itc::ItcHeads::from_file(missing, &candle_core::Device::Cpu)
            .expect_err("a missing file is an error");
        assert!(matches!(&err, VisualGlmError::Io { path, .. } if path == missing));
        assert_eq!(
            err.to_string(),
            format!(
                "cannot read the ITC heads {}: {}",
                missing.display(),
                err.source().expect("the I/O error is kept")
            )
        );
        let io = err
            .source()
            .unwrap()
            .downcast_ref::<std::io::Error>()
            .unwrap();
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    }
}
