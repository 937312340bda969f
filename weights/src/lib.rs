//! One home for every on-disk form of VisualGLM-6B weights, so the model never picks a
//! format:
//!
//! * [`config`]: the released `config.json` / SAT `model_config.json` and their family;
//! * [`checkpoint`]: HF shards and SAT `.pt` pickles (read safely), safetensors, the
//!   canonical in-memory form, validation against the expected parameters, and writing;
//! * [`gguf`]: this project's GGUF files, read one tensor at a time in the dtype (or GGML
//!   quantization) the consumer asks for, and written from a checkpoint;
//! * [`lora`]: LoRA adapter directories, SAT LoRA fine-tunes and the release's recipe;
//! * [`model_dir`]: the self-contained model directory `visualglm init` / `train` write;
//! * `hub` (feature `hub`): Hugging Face hub ids resolved to the local cache.

pub mod checkpoint;
pub mod config;
pub mod gguf;
#[cfg(feature = "hub")]
pub mod hub;
pub mod lora;
pub mod model_dir;

pub use checkpoint::{load, Checkpoint, CheckpointError, CheckpointFamily, LoadOptions, QkvLayout};
pub use config::{ConfigError, VisualGlmConfig};
