//! [`load`]: any supported path → [`Checkpoint`] in canonical form.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::canonical::{canonical_name, family_from_names, is_glm_qkv, LM_HEAD, WORD_EMBEDDINGS};
use super::error::CheckpointError;
use super::qkv::QkvLayout;
use super::source::{read_raw, RawTensors};
use super::stored::StoredTensor;
use super::tensors::{Checkpoint, LazyCheckpoint, FORMAT_NAME};
use crate::config::{CheckpointFamily, VisualGlmConfig};

/// Options of [`load`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// GLM QKV layout of a SAT checkpoint. `None` means [`QkvLayout::Blocks`] (the current
    /// `r2` release); pass [`QkvLayout::Interleaved`] for SAT files from before July 2023,
    /// which cannot be told apart by their names (spec §4.3).
    pub sat_qkv_layout: Option<QkvLayout>,
    /// Configuration file to use instead of the one beside the checkpoint or in its metadata.
    pub config_path: Option<PathBuf>,
    /// Dtype of the image encoder (ViT, Q-Former, `glm_proj`) when building a model; `None`:
    /// the run dtype. E.g. f16 vision with an f32 (or quantized) language model, as the
    /// release runs the ViT in fp16. Ignored by [`load`] itself (tensors keep their stored
    /// dtypes there).
    pub vision_dtype: Option<candle_core::DType>,
}

/// Loads a checkpoint: a SAT directory (`latest`, `model_config.json`,
/// `<iter>/mp_rank_00_model_states.pt`), an HF directory or `*.index.json` (`.bin` or
/// `.safetensors` shards), or a single `.bin`/`.pt`/`.safetensors` file. The config comes from
/// `opts.config_path`, else the safetensors metadata, else a `config.json` /
/// `model_config.json` beside the files.
///
/// The family is taken from a converted file's metadata, else from the tensor names
/// (`mixins.eva.` ⇒ SAT, `image_encoder.` ⇒ HF), else from the config's key set.
///
/// Every tensor is read into memory; [`open`] reads them one at a time when asked.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Checkpoint, CheckpointError> {
    open(path, opts)?.read_all()
}

/// [`load`] without reading the tensors: the files are mapped and indexed, names, dtypes and
/// shapes are known, and each tensor is read (and moved to the canonical layout) when asked,
/// so a model can be converted or quantized one tensor at a time.
pub fn open(path: &Path, opts: &LoadOptions) -> Result<LazyCheckpoint, CheckpointError> {
    let raw = read_raw(path)?;
    let ours = raw.metadata.get("format").map(String::as_str) == Some(FORMAT_NAME);

    let (mut config, config_family) = read_config(path, &raw, opts)?;
    let meta_family =
        if ours {
            match raw.metadata.get("family") {
                Some(f) => Some(CheckpointFamily::parse(f).ok_or_else(|| {
                    CheckpointError::Safetensors {
                        path: path.to_path_buf(),
                        message: format!("unknown `family` {f:?} in metadata"),
                    }
                })?),
                None => None,
            }
        } else {
            None
        };
    let name_family = family_from_names(raw.tensors.iter().map(|(n, _, _)| n.as_str()), path)?;
    if let (Some(n), None) = (name_family, meta_family) {
        if n != config_family {
            tracing::info!(
                "{}: tensor names are {} but the config is {}-style; using {}",
                path.display(),
                n.as_str(),
                config_family.as_str(),
                n.as_str()
            );
        }
    }
    let family = meta_family.or(name_family).unwrap_or(config_family);
    config.apply_family_conventions(family);

    let stored_layout = if ours {
        let l = raw.metadata.get("qkv_layout").map(String::as_str);
        l.and_then(QkvLayout::parse)
            .ok_or_else(|| CheckpointError::Safetensors {
                path: path.to_path_buf(),
                message: format!(
                    "metadata `qkv_layout` is {l:?}, expected \"blocks\" or \"interleaved\""
                ),
            })?
    } else {
        match family {
            CheckpointFamily::Hf => QkvLayout::Interleaved,
            CheckpointFamily::Sat => opts.sat_qkv_layout.unwrap_or(QkvLayout::Blocks),
        }
    };

    let (tensors, source_of) = canonicalize(raw, stored_layout, config.glm.num_attention_heads)?;
    Ok(LazyCheckpoint {
        config,
        family,
        tensors,
        source_of,
    })
}

/// Finds and parses the configuration (see [`load`] for the order).
fn read_config(
    path: &Path,
    raw: &RawTensors,
    opts: &LoadOptions,
) -> Result<(VisualGlmConfig, CheckpointFamily), CheckpointError> {
    if let Some(p) = &opts.config_path {
        return Ok(VisualGlmConfig::from_file(p)?);
    }
    if let Some(text) = raw.metadata.get("config") {
        let label = PathBuf::from(format!("{} (metadata `config`)", path.display()));
        return Ok(VisualGlmConfig::from_json_str(text, &label)?);
    }
    for c in &raw.config_candidates {
        if c.is_file() {
            return Ok(VisualGlmConfig::from_file(c)?);
        }
    }
    let tried: Vec<String> = raw
        .config_candidates
        .iter()
        .map(|p| p.display().to_string())
        .chain(std::iter::once("safetensors metadata".to_string()))
        .collect();
    Err(CheckpointError::MissingConfig {
        path: path.to_path_buf(),
        tried: tried.join(", "),
    })
}

type Canonical = (HashMap<String, StoredTensor>, HashMap<String, PathBuf>);

/// Renames, drops buffers, converts the GLM QKV rows to blocks and ties `lm_head`.
fn canonicalize(
    raw: RawTensors,
    stored_layout: QkvLayout,
    num_heads: usize,
) -> Result<Canonical, CheckpointError> {
    let mut tensors = HashMap::new();
    let mut source_of: HashMap<String, PathBuf> = HashMap::new();
    for (stored, t, file) in raw.tensors {
        let Some(name) = canonical_name(&stored) else {
            continue;
        };
        if let Some(first) = source_of.get(&name) {
            return Err(CheckpointError::Duplicate {
                name,
                first: first.clone(),
                second: file,
            });
        }
        let t = if stored_layout == QkvLayout::Interleaved && is_glm_qkv(&name) {
            let rows = t.dims().first().copied().unwrap_or(0);
            if num_heads == 0 || !rows.is_multiple_of(3 * num_heads) {
                return Err(CheckpointError::Qkv {
                    path: file.clone(),
                    name: stored.clone(),
                    message: format!(
                        "QKV tensor has {rows} rows, not a multiple of 3 × {num_heads} heads"
                    ),
                });
            }
            t.with_qkv_to_blocks(num_heads)
        } else {
            t
        };
        tensors.insert(name.clone(), t);
        source_of.insert(name, file);
    }
    if !tensors.contains_key(LM_HEAD) {
        if let Some(w) = tensors.get(WORD_EMBEDDINGS).cloned() {
            tensors.insert(LM_HEAD.to_string(), w);
            if let Some(src) = source_of.get(WORD_EMBEDDINGS).cloned() {
                source_of.insert(LM_HEAD.to_string(), src);
            }
        }
    }
    Ok((tensors, source_of))
}
