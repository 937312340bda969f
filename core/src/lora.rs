//! LoRA fine-tunes of VisualGLM-6B: the released SAT recipe's adapters, loading a SAT LoRA
//! fine-tune, saving/loading adapter files, and running a model with adapters merged into
//! the weights or applied on top of them.
//!
//! Adapters are keyed by canonical module name (`transformer.layers.0.attention.query_key_value`)
//! and always refer to the canonical `[Q|K|V]` block layout of the GLM QKV rows, whatever
//! the layout of the base checkpoint (bases are canonicalised on load), so SAT adapters apply
//! to HF bases too. The tensor math lives in the `visualglm-nn` crate and is re-exported here.

mod apply;
pub(crate) mod error;
mod files;
pub mod recipe;
mod sat;

pub use apply::{merge_checkpoint, read_any_adapters, LoraLoadOptions};
pub use error::LoraError;
pub use files::{
    load_adapters, save_adapters, AdapterFileConfig, ADAPTER_CONFIG, ADAPTER_FORMAT,
    ADAPTER_WEIGHTS,
};
pub use recipe::{
    glm_config, release_config, DENSE, GLM_LAYERS, QFORMER_LAYERS, QKV, RELEASE_ALPHA,
    RELEASE_LAYERS, RELEASE_RANK, SAT_NAMING, VIT_LAYERS,
};
pub use sat::{load_sat_lora, SatLoraFinetune};
pub use visualglm_nn::lora::{
    AdapterError, LoraAdapter, LoraAdapters, LoraConfig, SplitMix64, TargetRule, TensorNaming,
};
