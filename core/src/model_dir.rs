//! A self-contained model directory, as `visualglm init` and `visualglm train` write it:
//! `model.safetensors` (canonical names, config in its metadata), `config.json` (the same
//! config, for people and other tools) and the tokenizer file, so `--model DIR` finds all.

use std::path::{Path, PathBuf};

use crate::checkpoint::{save_canonical, Checkpoint, SaveOptions};

use crate::error::{Result, VisualGlmError};

/// File name of the weights in a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Writes `ck` and a copy of the tokenizer file `tokenizer` (`.model` or `.json`) into `dir`
/// (created if missing). Each file is written under a temporary name and renamed into place.
/// Returns the path of the weights file.
pub fn write_model_dir(ck: &Checkpoint, tokenizer: &Path, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .map_err(|e| VisualGlmError::Input(format!("cannot create {}: {e}", dir.display())))?;
    let weights = dir.join(WEIGHTS_FILE);
    save_canonical(ck, &weights, &SaveOptions::default(), &mut |_, _| {})?;
    let config = serde_json::to_string_pretty(&ck.config.to_hf_json())
        .map_err(|e| VisualGlmError::Input(format!("cannot serialise the config: {e}")))?;
    write_atomic(&dir.join("config.json"), config.as_bytes())?;
    let name = match tokenizer.extension().and_then(|e| e.to_str()) {
        Some("json") => "tokenizer.json",
        Some("model") => "tokenizer.model",
        _ => {
            return Err(VisualGlmError::Input(format!(
                "{}: a tokenizer is a .model or .json file",
                tokenizer.display()
            )))
        }
    };
    let bytes = std::fs::read(tokenizer)
        .map_err(|e| VisualGlmError::Input(format!("cannot read {}: {e}", tokenizer.display())))?;
    write_atomic(&dir.join(name), &bytes)?;
    Ok(weights)
}

/// Writes one file of the directory atomically.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    visualglm_files::write_atomic_bytes(path, bytes).map_err(|e| {
        VisualGlmError::Input(format!("cannot write {}: {}", path.display(), e.source))
    })
}
