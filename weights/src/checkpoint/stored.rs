//! [`StoredTensor`]: a tensor of a checkpoint file that is read when asked, so a model can be
//! built (converted, quantized) one tensor at a time without holding the stored checkpoint.
//!
//! Files are memory-mapped once and shared by their tensors. Reading a tensor copies its bytes
//! out of the map and then tells the kernel the pages are no longer needed, so the resident
//! size grows by the converted model only, not by the file as well.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;

use super::error::CheckpointError;
use super::qkv::interleaved_to_blocks;

/// A read-only memory map of one checkpoint file.
pub struct MappedFile {
    path: PathBuf,
    map: Mmap,
}

impl MappedFile {
    /// Maps `path` read-only.
    pub fn open(path: &Path) -> Result<Arc<Self>, CheckpointError> {
        let file = std::fs::File::open(path).map_err(|e| CheckpointError::io(path, e))?;
        // SAFETY: the map is read-only; like every mmap reader (candle, safetensors) we rely on
        // the file not being truncated or rewritten by another process while it is mapped.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| CheckpointError::io(path, e))?;
        Ok(Arc::new(Self {
            path: path.to_path_buf(),
            map,
        }))
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Drops the resident pages of `range` (they are read from the file again if touched).
    fn release(&self, range: std::ops::Range<usize>) {
        #[cfg(unix)]
        {
            // SAFETY: the map is a read-only shared file mapping, so MADV_DONTNEED only drops
            // clean pages that the kernel re-reads from the file on the next access; no slice
            // of the range is borrowed any more when this is called (the bytes were copied).
            let r = unsafe {
                self.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    range.start,
                    range.len(),
                )
            };
            if let Err(e) = r {
                tracing::debug!("{}: madvise: {e}", self.path.display());
            }
        }
        #[cfg(not(unix))]
        let _ = range;
    }
}

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFile")
            .field("path", &self.path)
            .field("len", &self.map.len())
            .finish()
    }
}

/// Where the bytes of a stored tensor are.
#[derive(Debug, Clone)]
enum Bytes {
    /// A byte range of a mapped file; `crc` is the CRC-32 a zip entry spanning `checked`
    /// must have (torch files), checked when the tensor is read.
    Mapped {
        file: Arc<MappedFile>,
        range: std::ops::Range<usize>,
        crc: Option<(std::ops::Range<usize>, u32)>,
    },
    /// Already in memory (a compressed zip entry, or a tensor made in memory).
    Loaded(Tensor),
}

/// One tensor of a checkpoint, read from its file when [`StoredTensor::read`] is called.
#[derive(Debug, Clone)]
pub struct StoredTensor {
    /// Name as stored (for error messages).
    stored_name: String,
    /// File it is stored in.
    path: PathBuf,
    dtype: DType,
    shape: Vec<usize>,
    bytes: Bytes,
    /// GLM QKV rows stored per-head interleaved: moved to blocks of this many heads on read.
    qkv_heads: Option<usize>,
}

impl StoredTensor {
    /// A tensor at `range` of a mapped file, after checking the range holds `shape` × `dtype`.
    pub(crate) fn mapped(
        file: &Arc<MappedFile>,
        stored_name: &str,
        dtype: DType,
        shape: Vec<usize>,
        range: std::ops::Range<usize>,
    ) -> Result<Self, CheckpointError> {
        let need = shape
            .iter()
            .try_fold(dtype.size_in_bytes(), |acc, &d| acc.checked_mul(d));
        if need != Some(range.len()) || range.end > file.bytes().len() {
            return Err(CheckpointError::tensor(
                file.path(),
                stored_name,
                format!(
                    "shape {shape:?} of {dtype:?} does not fit bytes {}..{} of a {}-byte file",
                    range.start,
                    range.end,
                    file.bytes().len()
                ),
            ));
        }
        Ok(Self {
            stored_name: stored_name.to_string(),
            path: file.path().to_path_buf(),
            dtype,
            shape,
            bytes: Bytes::Mapped {
                file: file.clone(),
                range,
                crc: None,
            },
            qkv_heads: None,
        })
    }

    /// A tensor already in memory.
    pub fn in_memory(stored_name: &str, path: &Path, t: Tensor) -> Self {
        Self {
            stored_name: stored_name.to_string(),
            path: path.to_path_buf(),
            dtype: t.dtype(),
            shape: t.dims().to_vec(),
            bytes: Bytes::Loaded(t),
            qkv_heads: None,
        }
    }

    /// Checks the CRC-32 of the zip entry at `entry` (which contains this tensor) on read.
    pub(crate) fn with_crc(mut self, entry: std::ops::Range<usize>, crc: u32) -> Self {
        if let Bytes::Mapped { crc: c, .. } = &mut self.bytes {
            *c = Some((entry, crc));
        }
        self
    }

    /// Reorders the GLM QKV rows from per-head interleaved to blocks when read.
    pub(crate) fn with_qkv_to_blocks(mut self, num_heads: usize) -> Self {
        self.qkv_heads = Some(num_heads);
        self
    }

    /// Stored dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Shape.
    pub fn dims(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn elem_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// The file the tensor is stored in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `other` reads the same stored bytes the same way (tied weights).
    pub fn same_data(&self, other: &StoredTensor) -> bool {
        let same_bytes = match (&self.bytes, &other.bytes) {
            (
                Bytes::Mapped {
                    file: a, range: ra, ..
                },
                Bytes::Mapped {
                    file: b, range: rb, ..
                },
            ) => Arc::ptr_eq(a, b) && ra == rb,
            (Bytes::Loaded(a), Bytes::Loaded(b)) => a.id() == b.id(),
            _ => false,
        };
        same_bytes && self.qkv_heads == other.qkv_heads && self.shape == other.shape
    }

    /// Reads the tensor onto the CPU in its stored dtype (canonical row layout).
    pub fn read(&self) -> Result<Tensor, CheckpointError> {
        let t = match &self.bytes {
            Bytes::Loaded(t) => t.clone(),
            Bytes::Mapped { file, range, crc } => {
                let bytes = file.bytes();
                if let Some((entry, want)) = crc {
                    let got = crc32fast::hash(&bytes[entry.clone()]);
                    if got != *want {
                        file.release(entry.clone());
                        return Err(self.bad(format!(
                            "zip entry CRC-32 is {got:08x}, the archive says {want:08x} \
                             (the file is damaged)"
                        )));
                    }
                }
                let t = Tensor::from_raw_buffer(
                    &bytes[range.clone()],
                    self.dtype,
                    &self.shape,
                    &Device::Cpu,
                );
                match crc {
                    Some((entry, _)) => file.release(entry.clone()),
                    None => file.release(range.clone()),
                }
                t.map_err(|e| {
                    CheckpointError::candle(
                        format!("{}: tensor `{}`", self.path.display(), self.stored_name),
                        e,
                    )
                })?
            }
        };
        match self.qkv_heads {
            Some(heads) => interleaved_to_blocks(&t, heads).map_err(|e| CheckpointError::Qkv {
                path: self.path.clone(),
                name: self.stored_name.clone(),
                message: e.to_string(),
            }),
            None => Ok(t),
        }
    }

    fn bad(&self, message: String) -> CheckpointError {
        CheckpointError::tensor(&self.path, &self.stored_name, message)
    }
}
