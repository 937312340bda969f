//! Reading `.safetensors` files: tensors (memory-mapped, each copied to the CPU when read) and
//! metadata.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use candle_core::{DType, Tensor};
use safetensors::SafeTensors;

use super::error::CheckpointError;
use super::stored::{MappedFile, StoredTensor};

/// Tensors (read when asked) and metadata of one file.
pub type StoredFile = (Vec<(String, StoredTensor)>, HashMap<String, String>);

/// The safetensors crate refuses larger headers; so do we, before allocating.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Tensors and `__metadata__` of one safetensors file.
pub struct SafetensorsFile {
    /// The tensors, in the file's stored dtypes, on the CPU.
    pub tensors: Vec<(String, Tensor)>,
    /// The string metadata (empty when the file has none).
    pub metadata: HashMap<String, String>,
}

/// Reads every tensor of a safetensors file.
pub fn read_safetensors(path: &Path) -> Result<SafetensorsFile, CheckpointError> {
    let (stored, metadata) = open_safetensors(path)?;
    let tensors = stored
        .into_iter()
        .map(|(name, t)| Ok((name, t.read()?)))
        .collect::<Result<_, CheckpointError>>()?;
    Ok(SafetensorsFile { tensors, metadata })
}

/// Maps a safetensors file and lists its tensors (read when asked) and its metadata.
pub fn open_safetensors(path: &Path) -> Result<StoredFile, CheckpointError> {
    let metadata = read_metadata(path)?;
    let file = MappedFile::open(path)?;
    let bad = |message: String| CheckpointError::Safetensors {
        path: path.to_path_buf(),
        message,
    };
    let st = SafeTensors::deserialize(file.bytes()).map_err(|e| bad(e.to_string()))?;
    let base = file.bytes().as_ptr() as usize;
    let mut tensors = Vec::new();
    for (name, view) in st.tensors() {
        let dtype = DType::try_from(view.dtype())
            .map_err(|e| CheckpointError::tensor(path, &name, e.to_string()))?;
        let start = view.data().as_ptr() as usize - base;
        let range = start..start + view.data().len();
        let t = StoredTensor::mapped(&file, &name, dtype, view.shape().to_vec(), range)?;
        tensors.push((name, t));
    }
    Ok((tensors, metadata))
}

/// Reads only the `__metadata__` map of a safetensors header.
pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>, CheckpointError> {
    let bad = |message: String| CheckpointError::Safetensors {
        path: path.to_path_buf(),
        message,
    };
    let mut f = std::fs::File::open(path).map_err(|e| CheckpointError::io(path, e))?;
    let file_len = f
        .metadata()
        .map_err(|e| CheckpointError::io(path, e))?
        .len();
    let mut len_bytes = [0u8; 8];
    f.read_exact(&mut len_bytes).map_err(|_| {
        bad(format!(
            "file is only {file_len} bytes, too short for a header"
        ))
    })?;
    let n = u64::from_le_bytes(len_bytes);
    if n > MAX_HEADER_BYTES || n > file_len.saturating_sub(8) {
        return Err(bad(format!(
            "header claims {n} bytes but the file has {file_len} (truncated?)"
        )));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)
        .map_err(|e| bad(format!("cannot read the header: {e}")))?;
    let json: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header is not JSON: {e}")))?;
    let mut out = HashMap::new();
    if let Some(meta) = json.get("__metadata__").and_then(|m| m.as_object()) {
        for (k, v) in meta {
            if let Some(s) = v.as_str() {
                out.insert(k.clone(), s.to_string());
            }
        }
    }
    Ok(out)
}
