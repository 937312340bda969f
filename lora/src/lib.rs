//! The building blocks every VisualGLM model crate uses: the [`Linear`] layer (a dense or
//! GGML-quantized base, ready for low-rank adapters), LayerNorm computed in f32, and
//! attention in f32.

pub mod activation;
pub mod adapters;
pub mod attention;
pub mod decode_attention;
pub(crate) mod fast_math;
pub mod gemm_f32;
pub mod gemm_q4_0;
pub mod gemv_f16;
pub mod gemv_q4_0;
pub mod linear;
pub mod mlp;
pub mod norm;
pub mod projection_attention;
pub mod quant;
pub mod softmax;

pub use attention::{
    merge_heads, scaled_dot_product_attention, split_heads, split_qkv, FusedSelfAttention,
};
pub use linear::{Linear, LinearBase, QuantizedWeight};
pub use mlp::{Activation, Mlp};
pub use norm::LayerNorm;
