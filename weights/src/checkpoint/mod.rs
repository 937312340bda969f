//! Reading every published form of VisualGLM-6B into one canonical in-memory form.
//!
//! Canonical form: HF tensor names (`transformer.*`, `lm_head.weight`,
//! `image_encoder.{vit,qformer,glm_proj}.*`), no rotary `inv_freq` buffers, every GLM
//! `query_key_value` in the `[Q|K|V]` [`QkvLayout::Blocks`] row layout, `lm_head.weight`
//! present (tied to the word embeddings when not stored). Tensors stay on the CPU in their
//! stored dtypes. [`load`] reads them all; [`open`] maps the files and reads each tensor when
//! asked (so a model is converted or quantized one tensor at a time).

mod canonical;
mod error;
mod load;
mod pickle_guard;
pub mod pth;
mod qkv;
mod source;
pub mod st;
mod stored;
mod tensors;
mod validate;
mod write;

pub use crate::config::CheckpointFamily;
pub use canonical::{
    canonical_name, is_glm_qkv, sat_name, HF_IMAGE_PREFIX, LM_HEAD, SAT_IMAGE_PREFIX, SAT_LM_HEAD,
    WORD_EMBEDDINGS,
};
pub use error::CheckpointError;
pub use load::{load, open, LoadOptions};
pub use qkv::{blocks_to_interleaved, interleaved_to_blocks, QkvLayout};
pub use stored::StoredTensor;
pub use tensors::{
    CanonicalCheckpoint, CanonicalTensors, Checkpoint, LazyCheckpoint, TensorHandle, FORMAT_NAME,
};
pub use validate::validate;
pub use write::{save_canonical, SaveOptions};
