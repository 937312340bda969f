//! VisualGLM-6B in Rust: load the released checkpoints, encode images, run the language model.
//!
//! # API convention (all crates of the workspace)
//!
//! One function per operation, never a `_with`/`_timed` twin. Its required inputs are
//! positional arguments: what it works on, then, for anything that builds a model, the
//! `&Device` and the `DType`. Everything optional goes in one options struct passed last by
//! reference (`#[derive(Debug, Clone, Default)]`, public fields, the default being the common
//! case), so a plain call reads `&Default::default()` and a variant
//! `&FooOptions { field, ..Default::default() }`. Extra results come back in the returned
//! value, e.g. [`pipeline::Captioner::describe_batch`] returns [`pipeline::Answers`] with the
//! answers and their [`pipeline::Timings`]. Examples: [`VisualGlm::load`] ([`LoadOptions`]),
//! [`VisualGlm::from_var_builder`] ([`BuildOptions`]), [`VisualGlm::load_adapted`]
//! ([`lora::LoraLoadOptions`]), [`VisualGlm::quantize_language`]
//! ([`quantize::QuantizeOptions`]), [`pipeline::Captioner::load`]
//! ([`pipeline::CaptionerOptions`]), [`pipeline::Captioner::prompt`]
//! ([`pipeline::PromptOptions`]), `visualglm_vision::decode::load_image` (`DecodeLimits`),
//! `ChatGlmTokenizer::decode` (`DecodeOptions`).

mod answer_text;
pub mod chat;
pub mod defaults;
pub mod error;
#[cfg(feature = "hub")]
pub use visualglm_weights::hub;
pub use visualglm_weights::{checkpoint, config, model_dir};
pub mod finetune;
pub mod generate;
pub mod gguf;
pub mod image_cache;
pub mod init;
pub mod itc;
mod loader;
pub mod lora;
pub mod model;
pub mod param_shapes;
mod parts;
pub mod pipeline;
pub mod quantize;
mod question;
pub mod retrieval;
pub mod runtime;
mod streamed;
pub mod synth;
mod timings;

/// Re-exported so a caller needs no direct dependency on these crates for the basics.
pub use candle_core::{DType, Device};
pub use checkpoint::{load, Checkpoint, CheckpointError, CheckpointFamily, LoadOptions, QkvLayout};
pub use config::{ConfigError, VisualGlmConfig};
pub use error::{Result, VisualGlmError};
pub use model::{BuildOptions, ImageEncoding, VisualGlm};
pub use param_shapes::expected_parameters;
pub use pipeline::{Captioner, CaptionerOptions, Question};
pub use visualglm_language::{EmbedSpan, GenerationConfig};
pub use visualglm_vision::decode::load_image;
