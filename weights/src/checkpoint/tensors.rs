//! [`Checkpoint`]: a checkpoint in canonical form in memory; [`LazyCheckpoint`]: the same with
//! each tensor read from its file when asked (both a [`CanonicalCheckpoint`]); the format name
//! of the files it is saved as.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Tensor};

use super::canonical::{LM_HEAD, WORD_EMBEDDINGS};
use super::error::CheckpointError;
use super::stored::StoredTensor;

use crate::config::{CheckpointFamily, VisualGlmConfig};

/// Value of the `format` metadata key of files written by
/// [`save_canonical`](super::save_canonical) (and of GGUF files written by this crate).
pub const FORMAT_NAME: &str = "visualglm-rs";

/// A checkpoint in canonical form (see the module documentation), holding its tensors as `T`.
#[derive(Debug, Clone)]
pub struct CanonicalCheckpoint<T> {
    /// The model configuration, with the family's α and rotary conventions applied.
    pub config: VisualGlmConfig,
    /// The release the weights come from.
    pub family: CheckpointFamily,
    /// Canonical name → tensor (CPU, stored dtype).
    pub tensors: HashMap<String, T>,
    /// Canonical name → file the tensor was read from.
    pub source_of: HashMap<String, PathBuf>,
}

/// A checkpoint in canonical form with every tensor in memory: what [`load`](super::load)
/// returns.
pub type Checkpoint = CanonicalCheckpoint<Tensor>;

/// A checkpoint in canonical form whose tensors are read from their (memory-mapped) files
/// when asked: what [`open`](super::open) returns.
pub type LazyCheckpoint = CanonicalCheckpoint<StoredTensor>;

impl<T> CanonicalCheckpoint<T> {
    /// The tensor with this canonical name, if present.
    pub fn get(&self, name: &str) -> Option<&T> {
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
}

impl<T: TensorHandle> CanonicalCheckpoint<T> {
    /// Names whose stored data another name reads too (a tied `lm_head`), each mapped to the
    /// id of its group; names with data of their own are absent.
    pub fn shared_data(&self) -> HashMap<String, usize> {
        let mut names: Vec<&String> = self.tensors.keys().collect();
        names.sort();
        let mut groups: HashMap<String, usize> = HashMap::new();
        let mut next = 0;
        for (i, a) in names.iter().enumerate() {
            if groups.contains_key(*a) {
                continue;
            }
            for b in &names[i + 1..] {
                if self.tensors[*a].same_data(&self.tensors[*b]) {
                    let id = *groups.entry((*a).clone()).or_insert_with(|| {
                        next += 1;
                        next - 1
                    });
                    groups.insert((*b).clone(), id);
                }
            }
        }
        groups
    }
}

impl Checkpoint {
    /// A `VarBuilder` over the tensors, converting them to `dtype` on `device` when fetched.
    pub fn var_builder(
        &self,
        dtype: candle_core::DType,
        device: &candle_core::Device,
    ) -> candle_nn::VarBuilder<'static> {
        candle_nn::VarBuilder::from_tensors(self.tensors.clone(), dtype, device)
    }
}

impl LazyCheckpoint {
    /// Bytes of all tensors as stored.
    pub fn stored_bytes(&self) -> usize {
        self.tensors
            .values()
            .map(|t| t.elem_count() * t.dtype().size_in_bytes())
            .sum()
    }

    /// Reads every tensor (names reading the same stored data share one tensor).
    pub fn read_all(self) -> Result<Checkpoint, CheckpointError> {
        let groups = self.shared_data();
        let mut tensors: HashMap<String, Tensor> = HashMap::with_capacity(self.tensors.len());
        let mut read: HashMap<usize, Tensor> = HashMap::new();
        for (name, stored) in self.tensors {
            let t = match groups.get(&name) {
                Some(g) => match read.get(g) {
                    Some(t) => t.clone(),
                    None => read.entry(*g).or_insert(stored.read()?).clone(),
                },
                None => stored.read()?,
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

/// How a checkpoint holds one tensor: in memory ([`Tensor`]) or in its file
/// ([`StoredTensor`]).
pub trait TensorHandle {
    /// Shape.
    fn dims(&self) -> &[usize];
    /// Stored dtype.
    fn dtype(&self) -> DType;
    /// The tensor, on the CPU in its stored dtype.
    fn read(&self) -> Result<Tensor, CheckpointError>;
    /// Whether `other` is the same stored data.
    fn same_data(&self, other: &Self) -> bool;
}

impl TensorHandle for Tensor {
    fn dims(&self) -> &[usize] {
        Tensor::dims(self)
    }
    fn dtype(&self) -> DType {
        Tensor::dtype(self)
    }
    fn read(&self) -> Result<Tensor, CheckpointError> {
        Ok(self.clone())
    }
    fn same_data(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl TensorHandle for StoredTensor {
    fn dims(&self) -> &[usize] {
        StoredTensor::dims(self)
    }
    fn dtype(&self) -> DType {
        StoredTensor::dtype(self)
    }
    fn read(&self) -> Result<Tensor, CheckpointError> {
        StoredTensor::read(self)
    }
    fn same_data(&self, other: &Self) -> bool {
        StoredTensor::same_data(self, other)
    }
}

/// A checkpoint in canonical form whose tensors can be listed and read: any
/// [`CanonicalCheckpoint`] (in memory or read when asked). Validation and the writers take
/// one, so converting a checkpoint never needs all of it in memory.
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
    fn dtype_of(&self, name: &str) -> Option<DType>;
    /// Canonical name → the file it comes from.
    fn sources(&self) -> &HashMap<String, PathBuf>;
    /// Reads `name` (CPU, stored dtype), `None` when absent.
    fn read(&self, name: &str) -> Result<Option<Tensor>, CheckpointError>;
    /// Whether `a` and `b` are known to be the same stored data (tied weights) without
    /// reading them.
    fn same_data(&self, a: &str, b: &str) -> bool;

    /// Whether `lm_head` is the word-embedding table: the same stored data, or (both read and
    /// compared) the same values.
    fn lm_head_is_tied(&self) -> Result<bool, CheckpointError> {
        if self.same_data(LM_HEAD, WORD_EMBEDDINGS) {
            return Ok(true);
        }
        match (self.shape_of(LM_HEAD), self.shape_of(WORD_EMBEDDINGS)) {
            (Some(l), Some(e)) if l == e => {}
            _ => return Ok(false),
        }
        let (Some(l), Some(e)) = (self.read(LM_HEAD)?, self.read(WORD_EMBEDDINGS)?) else {
            return Ok(false);
        };
        visualglm_language::embedding::same_values(&l, &e)
            .map_err(|e| CheckpointError::candle(format!("comparing {LM_HEAD} with the table"), e))
    }
}

impl<T: TensorHandle> CanonicalTensors for CanonicalCheckpoint<T> {
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
        self.tensors.get(name).map(TensorHandle::dims)
    }
    fn dtype_of(&self, name: &str) -> Option<DType> {
        self.tensors.get(name).map(TensorHandle::dtype)
    }
    fn sources(&self) -> &HashMap<String, PathBuf> {
        &self.source_of
    }
    fn read(&self, name: &str) -> Result<Option<Tensor>, CheckpointError> {
        self.tensors.get(name).map(TensorHandle::read).transpose()
    }
    fn same_data(&self, a: &str, b: &str) -> bool {
        match (self.tensors.get(a), self.tensors.get(b)) {
            (Some(a), Some(b)) => a.same_data(b),
            _ => false,
        }
    }
}
