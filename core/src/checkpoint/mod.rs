//! Reading every published form of VisualGLM-6B into one canonical in-memory form.
//!
//! Canonical form: HF tensor names (`transformer.*`, `lm_head.weight`,
//! `image_encoder.{vit,qformer,glm_proj}.*`), no rotary `inv_freq` buffers, every GLM
//! `query_key_value` in the `[Q|K|V]` [`QkvLayout::Blocks`] row layout, `lm_head.weight`
//! present (tied to the word embeddings when not stored). Tensors stay on the CPU in their
//! stored dtypes.

mod canonical;
mod error;
mod load;
mod pickle_guard;
pub mod pth;
mod qkv;
mod source;
pub mod st;
mod validate;
mod write;

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::Tensor;

pub use crate::config::CheckpointFamily;
use crate::config::VisualGlmConfig;
pub use canonical::{
    canonical_name, is_glm_qkv, sat_name, HF_IMAGE_PREFIX, LM_HEAD, SAT_IMAGE_PREFIX, SAT_LM_HEAD,
    WORD_EMBEDDINGS,
};
pub use error::CheckpointError;
pub use load::load;
pub use qkv::{blocks_to_interleaved, interleaved_to_blocks, QkvLayout};
pub use validate::validate;
pub use write::{save_canonical, SaveOptions, FORMAT_NAME};

/// Options of [`load`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// GLM QKV layout of a SAT checkpoint. `None` means [`QkvLayout::Blocks`] (the current
    /// `r2` release); pass [`QkvLayout::Interleaved`] for SAT files from before July 2023,
    /// which cannot be told apart by their names (spec §4.3).
    pub sat_qkv_layout: Option<QkvLayout>,
    /// Configuration file to use instead of the one beside the checkpoint or in its metadata.
    pub config_path: Option<PathBuf>,
    /// Dtype of the image encoder (ViT, Q-Former, `glm_proj`) when building a model; `None`:
    /// the run dtype. E.g. f16 vision with an f32 (or quantized) language model, as the
    /// release runs the ViT in fp16. Ignored by [`load`] itself (tensors keep their stored
    /// dtypes there).
    pub vision_dtype: Option<candle_core::DType>,
}

/// A checkpoint in canonical form (see the module documentation).
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The model configuration, with the family's α and rotary conventions applied.
    pub config: VisualGlmConfig,
    /// The release the weights come from.
    pub family: CheckpointFamily,
    /// Canonical name → tensor (CPU, stored dtype).
    pub tensors: HashMap<String, Tensor>,
    /// Canonical name → file the tensor was read from.
    pub source_of: HashMap<String, PathBuf>,
}

impl Checkpoint {
    /// The tensor with this canonical name, if present.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    /// The canonical names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// The file a tensor was read from (empty for unknown names).
    pub fn source(&self, name: &str) -> PathBuf {
        self.source_of.get(name).cloned().unwrap_or_default()
    }

    /// A `VarBuilder` over the tensors, converting them to `dtype` on `device` when fetched.
    pub fn var_builder(
        &self,
        dtype: candle_core::DType,
        device: &candle_core::Device,
    ) -> candle_nn::VarBuilder<'static> {
        candle_nn::VarBuilder::from_tensors(self.tensors.clone(), dtype, device)
    }
}
