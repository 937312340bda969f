//! Reading `.safetensors` files: tensors (memory-mapped, copied to the CPU) and metadata.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{Device, Tensor};

use super::error::CheckpointError;

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
    let metadata = read_metadata(path)?;
    // SAFETY: the map is read-only and only lives during this call; like every mmap reader we
    // rely on the file not being truncated by another process meanwhile.
    let st = unsafe { MmapedSafetensors::new(path) }.map_err(|e| {
        // candle prefixes the path; ours already names the file.
        let message = match e {
            candle_core::Error::WithPath { inner, .. } => inner.to_string(),
            other => other.to_string(),
        };
        CheckpointError::Safetensors {
            path: path.to_path_buf(),
            message,
        }
    })?;
    let mut tensors = Vec::new();
    for (name, _) in st.tensors() {
        let t = st
            .load(&name, &Device::Cpu)
            .map_err(|e| CheckpointError::tensor(path, &name, format!("cannot load: {e}")))?;
        tensors.push((name, t));
    }
    Ok(SafetensorsFile { tensors, metadata })
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
