//! Atomic output files for the CLI.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use candle_core::Tensor;

/// Writes `tensors` to `path` as safetensors via a temporary file and a rename, so a
/// crash never leaves a half-written file under the final name.
pub fn write_safetensors_atomic(
    tensors: &HashMap<String, Tensor>,
    path: &Path,
) -> anyhow::Result<()> {
    let tmp = temp_path(path);
    candle_core::safetensors::save(tensors, &tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// A temporary name beside `path` (same directory, so the rename is atomic).
pub fn temp_path(path: &Path) -> std::path::PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}
