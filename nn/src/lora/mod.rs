//! Low-rank adapters (LoRA) in the partitioned form of SwissArmyTransformer's `lora2.LoraMixin`: per adapted
//! linear, `P` independent pairs `(A_k [r, in], B_k [out/P, r])` whose products are stacked as
//! row blocks of the weight update,
//!
//! `ΔW = scaling · [B_0 A_0; B_1 A_1; …]`, `scaling = alpha / r`,
//!
//! and the unmerged forward `y = W x + b + scaling · concat_k((x A_kᵀ) B_kᵀ)`. For a fused
//! QKV projection (P = 3) the row blocks are Q, K and V of the `[Q|K|V]` layout. Which
//! linears a model adapts (module names, the released recipe) is the model's business.
//!
//! * [`LoraAdapter`]: one adapted linear (delta, merge/unmerge, forward contribution).
//! * [`LoraConfig`] / [`TargetRule`]: rank, alpha, dropout and which linears are adapted.
//! * [`LoraAdapters`]: the adapters of a whole model, keyed by module name.

mod adapter;
mod config;
mod error;
mod rng;
mod set;

pub use adapter::LoraAdapter;
pub use config::{LoraConfig, TargetRule};
pub use error::AdapterError;
pub use rng::SplitMix64;
pub use set::{LoraAdapters, TensorNaming};
