//! VisualGLM's LoRA files: adapter directories (`adapter_config.json` +
//! `adapter_model.safetensors`), SAT LoRA fine-tunes (`lora2` state dicts with their
//! `model_config.json`), the release's targets and recipe, and their errors. The adapter maths
//! is `visualglm_nn::lora`.

mod error;
mod files;
pub mod recipe;
mod sat;

pub use error::LoraError;
pub use files::{
    load_adapters, save_adapters, AdapterFileConfig, ADAPTER_CONFIG, ADAPTER_FORMAT,
    ADAPTER_WEIGHTS,
};
pub use recipe::{
    glm_config, release_config, DENSE, GLM_LAYERS, QFORMER_LAYERS, QKV, RELEASE_ALPHA,
    RELEASE_LAYERS, RELEASE_RANK, SAT_NAMING, VIT_LAYERS,
};
pub use sat::{is_sat_lora, read_sat_lora, SatLoraFinetune};
