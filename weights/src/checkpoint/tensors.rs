//! [`Checkpoint`]: a checkpoint in canonical form in memory; [`LazyCheckpoint`]: the same with
//! each tensor read from its file when asked; the format name of the files it is saved as.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::Tensor;

use super::error::CheckpointError;
use super::stored::StoredTensor;

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

/// A checkpoint in canonical form whose tensors are read from their (memory-mapped) files
/// when asked: what [`open`](super::open) returns.
#[derive(Debug, Clone)]
pub struct LazyCheckpoint {
    /// The model configuration, with the family's α and rotary conventions applied.
    pub config: VisualGlmConfig,
    /// The release the weights come from.
    pub family: CheckpointFamily,
    /// Canonical name → stored tensor (read as its stored dtype, canonical row layout).
    pub tensors: HashMap<String, StoredTensor>,
    /// Canonical name → file the tensor is read from.
    pub source_of: HashMap<String, PathBuf>,
}

impl LazyCheckpoint {
    /// The stored tensor with this canonical name, if present.
    pub fn get(&self, name: &str) -> Option<&StoredTensor> {
        self.tensors.get(name)
    }

    /// The canonical names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }

    /// Bytes of all tensors as stored.
    pub fn stored_bytes(&self) -> usize {
        self.tensors
            .values()
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum()
    }

    /// Reads every tensor (names reading the same stored data share one tensor).
    pub fn read_all(self) -> Result<Checkpoint, CheckpointError> {
        let mut tensors: HashMap<String, Tensor> = HashMap::with_capacity(self.tensors.len());
        let mut read: Vec<(StoredTensor, Tensor)> = Vec::new();
        for (name, stored) in self.tensors {
            let t = match read.iter().find(|(s, _)| s.same_data(&stored)) {
                Some((_, t)) => t.clone(),
                None => {
                    let t = stored.read()?;
                    read.push((stored, t.clone()));
                    t
                }
            };
            tensors.insert(name, t);
        }
        Ok(Checkpoint {
            config: self.config,
            family: self.family,
            tensors,
            source_of: self.source_of,
        })
    }
}

/// A checkpoint in canonical form whose tensors can be listed and read: [`Checkpoint`] (in
/// memory) or [`LazyCheckpoint`] (read from the files when asked). Validation and the
/// writers take either, so converting a checkpoint never needs all of it in memory.
pub trait CanonicalTensors {
    /// The model configuration.
    fn config(&self) -> &VisualGlmConfig;
    /// The release the weights come from.
    fn family(&self) -> CheckpointFamily;
    /// The canonical names, sorted.
    fn sorted_names(&self) -> Vec<&str>;
    /// The shape of `name`, `None` when absent.
    fn shape_of(&self, name: &str) -> Option<&[usize]>;
    /// The stored dtype of `name`, `None` when absent.
    fn dtype_of(&self, name: &str) -> Option<candle_core::DType>;
    /// Canonical name → the file it comes from.
    fn sources(&self) -> &HashMap<String, PathBuf>;
    /// Reads `name` (CPU, stored dtype), `None` when absent.
    fn read(&self, name: &str) -> Result<Option<Tensor>, CheckpointError>;
    /// Whether `a` and `b` are known to be the same stored data (tied weights) without
    /// reading them.
    fn same_data(&self, a: &str, b: &str) -> bool;
}

impl CanonicalTensors for Checkpoint {
    fn config(&self) -> &VisualGlmConfig {
        &self.config
    }
    fn family(&self) -> CheckpointFamily {
        self.family
    }
    fn sorted_names(&self) -> Vec<&str> {
        self.names()
    }
    fn shape_of(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.dims())
    }
    fn dtype_of(&self, name: &str) -> Option<candle_core::DType> {
        self.tensors.get(name).map(|t| t.dtype())
    }
    fn sources(&self) -> &HashMap<String, PathBuf> {
        &self.source_of
    }
    fn read(&self, name: &str) -> Result<Option<Tensor>, CheckpointError> {
        Ok(self.tensors.get(name).cloned())
    }
    fn same_data(&self, a: &str, b: &str) -> bool {
        match (self.tensors.get(a), self.tensors.get(b)) {
            (Some(a), Some(b)) => a.id() == b.id(),
            _ => false,
        }
    }
}

impl CanonicalTensors for LazyCheckpoint {
    fn config(&self) -> &VisualGlmConfig {
        &self.config
    }
    fn family(&self) -> CheckpointFamily {
        self.family
    }
    fn sorted_names(&self) -> Vec<&str> {
        self.names()
    }
    fn shape_of(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.dims())
    }
    fn dtype_of(&self, name: &str) -> Option<candle_core::DType> {
        self.tensors.get(name).map(|t| t.dtype())
    }
    fn sources(&self) -> &HashMap<String, PathBuf> {
        &self.source_of
    }
    fn read(&self, name: &str) -> Result<Option<Tensor>, CheckpointError> {
        self.tensors.get(name).map(StoredTensor::read).transpose()
    }
    fn same_data(&self, a: &str, b: &str) -> bool {
        match (self.tensors.get(a), self.tensors.get(b)) {
            (Some(a), Some(b)) => a.same_data(b),
            _ => false,
        }
    }
}
