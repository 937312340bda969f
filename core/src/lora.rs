//! LoRA fine-tunes of VisualGLM-6B: the released SAT recipe's adapters, loading a SAT LoRA
//! fine-tune, saving/loading adapter files, and running a model with adapters merged into
//! the weights or applied on top of them.
//!
//! Adapters are keyed by canonical module name (`transformer.layers.0.attention.query_key_value`)
//! and always refer to the canonical `[Q|K|V]` block layout of the GLM QKV rows, whatever
//! the layout of the base checkpoint (bases are canonicalised on load), so SAT adapters apply
//! to HF bases too. The tensor math lives in the `visualglm-nn` crate and is re-exported here.

mod apply;

pub use apply::{load_sat_lora, merge_checkpoint, read_any_adapters, LoraLoadOptions};
pub use visualglm_nn::lora::{
    AdapterError, LoraAdapter, LoraAdapters, LoraConfig, SplitMix64, TargetRule, TensorNaming,
};
pub use visualglm_weights::lora::*;
