//! The building blocks the model crates share: the [`Linear`] layer (a dense or
//! GGML-quantized base, ready for low-rank adapters), LayerNorm computed in f32, and
//! attention in f32.
//!
//! # CPU instruction sets
//!
//! The hand-written CPU kernels ([`kernels`]) pick one instruction-set path at run time: the
//! best the CPU has of `avx512` (AVX-512F; the Q4_0 GEMV's VNNI form also needs AVX-512 VNNI
//! and VL), `avx2` (AVX2, FMA and F16C) and `scalar` (the build's baseline). The environment
//! variable `VISUALGLM_CPU=scalar|avx2|avx512` overrides the choice, e.g. to time the AVX2
//! path on an AVX-512 machine: a path above the CPU's is clamped down to the CPU's best and an
//! unknown value is ignored, each with a warning. On `scalar` the fused element-wise ops and
//! decode attention run their baseline build and the f16 and Q4_0 GEMVs leave the product to
//! candle. [`kernels::isa::active`] names the path that runs; products of the `gemm` crate
//! (inside candle's matmul and the f32 GEMM split) keep that crate's own choice. Details:
//! [`kernels::isa`].

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
