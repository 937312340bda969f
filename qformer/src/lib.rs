//! BLIP-2 Q-Former of VisualGLM and the `glm_proj` projection into the language model.

pub mod config;
pub mod qformer;

pub use config::QFormerConfig;
pub use qformer::{load_glm_proj, QFormer};
