//! VisualGLM-6B in Rust: load the released checkpoints, encode images, run the language model.

pub mod error;
#[cfg(feature = "hub")]
pub use visualglm_weights::hub;
pub use visualglm_weights::{checkpoint, config, model_dir};
pub mod finetune;
pub mod generate;
pub mod gguf;
pub mod init;
pub mod itc;
mod loader;
pub mod lora;
pub mod model;
pub mod param_shapes;
mod parts;
pub mod pipeline;
pub mod quantize;
pub mod runtime;
pub mod synth;

pub use checkpoint::{load, Checkpoint, CheckpointError, CheckpointFamily, LoadOptions, QkvLayout};
pub use config::{ConfigError, VisualGlmConfig};
pub use error::{Result, VisualGlmError};
pub use model::{ImageEncoding, VisualGlm};
pub use param_shapes::expected_parameters;
