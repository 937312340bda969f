//! Writing the trained model as a model directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use visualglm_nn::lora::LoraAdapters;

use super::trainable::TrainableModel;
use crate::checkpoint::{self, CanonicalTensors, CheckpointError, LazyCheckpoint};
use crate::config::{CheckpointFamily, VisualGlmConfig};
use crate::defaults::ModelDefaults;
use crate::error::{Result, VisualGlmError};
use crate::itc::{ItcHeads, ITC_FILE};

/// What besides the model weights goes into an exported model directory.
pub(super) struct ExportParts<'a> {
    /// The tokenizer file to copy.
    pub(super) tokenizer: &'a Path,
    /// The base checkpoint the run loaded (read again for a quantized base's merge).
    pub(super) base: &'a Path,
    /// Trained LoRA adapters, merged into the exported weights.
    pub(super) lora: Option<&'a LoraAdapters>,
    /// Trained ITC heads, saved as `itc.safetensors`; `None` keeps the base's file, if any.
    pub(super) heads: Option<&'a ItcHeads>,
    /// The run's prompt template: the exported model's default language.
    pub(super) english: bool,
}

/// Writes the results of a run into `out`: trained LoRA adapters alone in `out/adapter`
/// (loadable with `--lora`), and the trained model as the directory `out/model` (frozen and
/// trained weights, LoRA merged, the tokenizer, and the ITC heads as `itc.safetensors`). Over
/// a quantized base the adapters are merged into the base's weights as stored in its
/// checkpoint (read again one tensor at a time, written in their stored dtype), not into the
/// rounded GGML blocks, so nothing is rounded twice.
pub(super) fn export_model(tm: &TrainableModel, parts: &ExportParts<'_>, out: &Path) -> Result<()> {
    if let Some(set) = parts.lora {
        let dir = out.join("adapter");
        crate::lora::save_adapters(set, &dir, Some(tm.family))?;
        tracing::info!("wrote the trained adapter to {}", dir.display());
    }
    let dir = out.join("model");
    let dir = dir.as_path();
    if tm.quantized.is_empty() {
        let mut tensors = tm.frozen.clone();
        for (name, var) in &tm.vars {
            tensors.insert(name.clone(), var.as_tensor().detach());
        }
        let mut ck = checkpoint::Checkpoint {
            config: tm.model.config().clone(),
            family: tm.family,
            tensors,
            source_of: HashMap::new(),
        };
        if let Some(set) = parts.lora {
            crate::lora::merge_checkpoint(&mut ck, set)?;
        }
        crate::model_dir::write_model_dir(&ck, parts.tokenizer, dir)?;
    } else {
        let merged = MergedOverStoredBase::new(tm, parts)?;
        crate::model_dir::write_model_dir(&merged, parts.tokenizer, dir)?;
    }
    let base_dir = crate::model_dir::folder_of(parts.base);
    match parts.heads {
        Some(h) => h.save(&dir.join(ITC_FILE))?,
        None if base_dir.join(ITC_FILE).is_file() => {
            copy_atomic(&base_dir.join(ITC_FILE), &dir.join(ITC_FILE))?
        }
        None => {}
    }
    // The base's decoding defaults, in the language the run trained.
    let mut defaults = ModelDefaults::for_model(parts.base)?;
    if defaults.english != parts.english {
        defaults.question = None;
    }
    defaults.english = parts.english;
    defaults.write(dir)?;
    tracing::info!("exported the trained model to {}", dir.display());
    Ok(())
}

/// Copies `from` to `to` atomically.
fn copy_atomic(from: &Path, to: &Path) -> Result<()> {
    let mut src = std::fs::File::open(from).map_err(VisualGlmError::io("cannot read", from))?;
    visualglm_files::write_atomic(to, |w| std::io::copy(&mut src, w).map(drop))
        .map_err(|e| VisualGlmError::io("cannot write", to)(e.into()))
}

/// The trained model over a quantized base, as canonical tensors made when read: trained
/// weights from their variables, the quantized linears from the base checkpoint as stored
/// (with their adapter merged), every other frozen tensor as held.
struct MergedOverStoredBase<'a> {
    config: VisualGlmConfig,
    family: CheckpointFamily,
    tm: &'a TrainableModel,
    base: LazyCheckpoint,
    base_path: PathBuf,
    lora: Option<&'a LoraAdapters>,
    /// Name → dims and the dtype written.
    index: HashMap<String, (Vec<usize>, DType)>,
    no_sources: HashMap<String, PathBuf>,
}

impl<'a> MergedOverStoredBase<'a> {
    fn new(tm: &'a TrainableModel, parts: &ExportParts<'a>) -> Result<Self> {
        let base = checkpoint::open(parts.base, &Default::default())?;
        let mut index = HashMap::new();
        for (name, t) in &tm.frozen {
            let dtype = match (tm.quantized.contains_key(name), base.get(name)) {
                (true, Some(stored)) => stored.dtype(),
                (true, None) => {
                    return Err(CheckpointError::Write {
                        path: parts.base.to_path_buf(),
                        message: format!("the base has no `{name}` to merge into"),
                    }
                    .into())
                }
                (false, _) => t.dtype(),
            };
            index.insert(name.clone(), (t.dims().to_vec(), dtype));
        }
        for (name, var) in &tm.vars {
            let t = var.as_tensor();
            index.insert(name.clone(), (t.dims().to_vec(), t.dtype()));
        }
        Ok(Self {
            config: tm.model.config().clone(),
            family: tm.family,
            tm,
            base,
            base_path: parts.base.to_path_buf(),
            lora: parts.lora,
            index,
            no_sources: HashMap::new(),
        })
    }
}

impl CanonicalTensors for MergedOverStoredBase<'_> {
    fn config(&self) -> &VisualGlmConfig {
        &self.config
    }
    fn family(&self) -> CheckpointFamily {
        self.family
    }
    fn sorted_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.index.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
    fn shape_of(&self, name: &str) -> Option<&[usize]> {
        self.index.get(name).map(|(d, _)| d.as_slice())
    }
    fn dtype_of(&self, name: &str) -> Option<DType> {
        self.index.get(name).map(|(_, d)| *d)
    }
    fn sources(&self) -> &HashMap<String, PathBuf> {
        &self.no_sources
    }
    fn read(&self, name: &str) -> std::result::Result<Option<Tensor>, CheckpointError> {
        if let Some((_, var)) = self.tm.vars.iter().find(|(n, _)| n == name) {
            return Ok(Some(var.as_tensor().detach()));
        }
        let Some(held) = self.tm.frozen.get(name) else {
            return Ok(None);
        };
        let weight = match (self.tm.quantized.contains_key(name), self.base.get(name)) {
            (true, Some(stored)) => stored.read()?,
            _ => held.clone(),
        };
        let target = name.strip_suffix(".weight").unwrap_or(name);
        match self.lora.and_then(|set| set.get(target)) {
            Some(adapter) => {
                adapter
                    .merge_into(target, &weight)
                    .map(Some)
                    .map_err(|e| CheckpointError::Write {
                        path: self.base_path.clone(),
                        message: format!("merging the adapter into `{name}`: {e}"),
                    })
            }
            None => Ok(Some(weight)),
        }
    }
    fn same_data(&self, _: &str, _: &str) -> bool {
        false
    }
}
