//! [`Checkpoint`]: a checkpoint in canonical form in memory, and the format name of the files
//! it is saved as.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::Tensor;

use crate::config::{CheckpointFamily, VisualGlmConfig};

/// Value of the `format` metadata key of files written by
/// [`save_canonical`](super::save_canonical) (and of GGUF files written by this crate).
pub const FORMAT_NAME: &str = "visualglm-rs";

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
