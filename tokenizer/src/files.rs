//! Writing the crate's output files (`tokenizer.json`, trained `.model`) atomically.

use std::path::Path;

use crate::error::{Result, TokenizerError};

/// Writes `bytes` to `path` atomically ([`visualglm_files::write_atomic_bytes`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    visualglm_files::write_atomic_bytes(path, bytes).map_err(|e| TokenizerError::Io {
        path: path.to_path_buf(),
        source: e.source,
    })
}
