//! ChatGLM-6B language model of VisualGLM: config, GLM blocks, 2D RoPE, KV cache, prompt and
//! sampling. The tokenizer is its own crate, `visualglm-tokenizer`, re-exported here as
//! [`tokenizer`].

pub mod config;
pub mod embedding;
pub mod kv_cache;
pub mod model;
pub mod positions;
pub mod prompt;
mod prompt_forward;
pub mod rotary;
pub mod sampling;
pub mod splice;

/// The ChatGLM tokenizer crate (`visualglm-tokenizer`), under its former path.
pub use visualglm_tokenizer as tokenizer;

pub use config::GlmConfig;
pub use embedding::WordEmbeddings;
pub use kv_cache::KvCache;
pub use model::ChatGlm;
pub use sampling::{GenerationConfig, Sampler};
pub use splice::EmbedSpan;
