//! ChatGLM-6B language model of VisualGLM: config, GLM blocks, 2D RoPE, KV cache,
//! tokenizer, prompt and sampling.

pub mod config;
pub mod positions;
pub mod prompt;
pub mod tokenizer;

pub use config::GlmConfig;
