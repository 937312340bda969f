//! The building blocks every VisualGLM model crate uses: the [`Linear`] layer (a dense base,
//! ready for low-rank adapters), LayerNorm computed in f32, and attention in f32.

pub mod attention;
pub mod linear;
pub mod norm;

pub use attention::{scaled_dot_product_attention, split_heads, merge_heads};
pub use linear::Linear;
pub use norm::LayerNorm;
