//! EVA-CLIP vision encoder of VisualGLM: image decoding ([`decode`]), preprocessing
//! ([`preprocess`]), the ViT and `ln_vision`.

pub mod config;
pub mod decode;
pub mod preprocess;
pub mod resize;
pub mod vit;

pub use config::EvaConfig;
pub use vit::EvaVit;
