//! BLIP-2 Q-Former of VisualGLM and the `glm_proj` projection into the language model.

pub mod config;

pub use config::QFormerConfig;
