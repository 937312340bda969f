//! A self-contained model directory, as `visualglm init` and `visualglm train` write it:
//! `model.safetensors` (canonical names, config in its metadata), `config.json` (the same
//! config, for people and other tools) and the tokenizer file, so `--model DIR` finds all.

use std::path::{Path, PathBuf};

use crate::checkpoint::{save_canonical, CanonicalTensors, CheckpointError, SaveOptions};

/// Why a model directory could not be found or written.
#[derive(Debug, thiserror::Error)]
pub enum ModelDirError {
    /// A training run directory that has not exported its model yet.
    #[error(
        "{} is a training run directory without an exported model: a run writes `model/` \
         there when it finishes (its checkpoints are training states, not models); pass a \
         model directory, or resume the run to finish it",
        dir.display()
    )]
    RunWithoutModel {
        /// The run directory.
        dir: PathBuf,
    },
    /// The weights could not be written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The directory could not be created.
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The configuration could not be serialised.
    #[error("cannot serialise the config: {0}")]
    Config(#[from] serde_json::Error),
    /// The tokenizer file is neither `.model` nor `.json`.
    #[error("{}: a tokenizer is a .model or .json file", path.display())]
    TokenizerKind {
        /// The tokenizer file.
        path: PathBuf,
    },
    /// The tokenizer file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file of the directory could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Result with [`ModelDirError`].
type Result<T> = std::result::Result<T, ModelDirError>;

/// File name of the weights in a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Writes `ck` and a copy of the tokenizer file `tokenizer` (`.model` or `.json`) into `dir`
/// (created if missing). Each file is written under a temporary name and renamed into place.
/// Returns the path of the weights file.
pub fn write_model_dir(
    ck: &impl CanonicalTensors,
    tokenizer: &Path,
    dir: &Path,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|source| ModelDirError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let weights = dir.join(WEIGHTS_FILE);
    save_canonical(ck, &weights, &SaveOptions::default(), &mut |_, _| {})?;
    let config = serde_json::to_string_pretty(&ck.config().to_hf_json())?;
    write_atomic(&dir.join("config.json"), config.as_bytes())?;
    let name = match tokenizer.extension().and_then(|e| e.to_str()) {
        Some("json") => "tokenizer.json",
        Some("model") => "tokenizer.model",
        _ => {
            return Err(ModelDirError::TokenizerKind {
                path: tokenizer.to_path_buf(),
            })
        }
    };
    let bytes = std::fs::read(tokenizer).map_err(|source| ModelDirError::Read {
        path: tokenizer.to_path_buf(),
        source,
    })?;
    write_atomic(&dir.join(name), &bytes)?;
    Ok(weights)
}

/// Writes one file of the directory atomically.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    visualglm_files::write_atomic_bytes(path, bytes).map_err(|e| ModelDirError::Write {
        path: path.to_path_buf(),
        source: e.source,
    })
}

/// The folder of a model: `path` itself when it is a directory, else the folder of the weights
/// file (where its config, tokenizer and other files sit).
pub fn folder_of(path: &Path) -> &Path {
    if path.is_dir() {
        path
    } else {
        path.parent().unwrap_or(Path::new("."))
    }
}

/// `path`, or for a training run directory (`visualglm train`'s `out`, which has no
/// `config.json` of its own) the model it exported, `out/model`; an error for a run that has
/// not exported one.
pub fn model_of_run(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() || path.join("config.json").exists() {
        return Ok(path.to_path_buf());
    }
    let exported = path.join("model");
    if exported.join("config.json").is_file() {
        tracing::info!(
            "{} is a training run: using its exported model {}",
            path.display(),
            exported.display()
        );
        return Ok(exported);
    }
    // `visualglm train`'s checkpoints: `latest` names a folder with a `manifest.json` (a
    // SAT directory also has `latest`, naming an iteration folder of `.pt` files).
    let latest_is_ours = std::fs::read_to_string(path.join("latest"))
        .is_ok_and(|name| path.join(name.trim()).join("manifest.json").is_file());
    if latest_is_ours || path.join("run.toml").is_file() {
        return Err(ModelDirError::RunWithoutModel {
            dir: path.to_path_buf(),
        });
    }
    Ok(path.to_path_buf())
}
