//! The building blocks the model crates share: the [`Linear`] layer (a dense or
//! GGML-quantized base, ready for low-rank adapters), LayerNorm computed in f32, and
//! attention in f32.

pub mod activation;
pub mod attention;
pub mod checkpoint;
pub mod graph;
pub mod kernels;
pub mod linear;
pub mod lora;
pub mod mlp;
pub mod norm;
pub mod quant;
pub mod softmax;

pub use attention::{
    merge_heads, scaled_dot_product_attention, split_heads, split_qkv, FusedSelfAttention,
};
pub use linear::{Linear, LinearBase, QuantizedWeight};
pub use mlp::{Activation, Mlp};
pub use norm::LayerNorm;
