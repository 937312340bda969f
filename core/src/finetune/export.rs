//! Writing the trained model as a model directory.

use std::collections::HashMap;
use std::path::Path;

use visualglm_nn::lora::LoraAdapters;

use super::trainable::TrainableModel;
use crate::checkpoint;
use crate::error::Result;
use crate::itc::{ItcHeads, ITC_FILE};

/// What besides the model weights goes into an exported model directory.
pub(super) struct ExportParts<'a> {
    /// The tokenizer file to copy.
    pub(super) tokenizer: &'a Path,
    /// Trained LoRA adapters, merged into the exported weights.
    pub(super) lora: Option<&'a LoraAdapters>,
    /// Trained ITC heads, saved as `itc.safetensors`.
    pub(super) heads: Option<&'a ItcHeads>,
}

/// Writes the trained model as a model directory: frozen and trained weights, LoRA merged,
/// the tokenizer, and the ITC heads (`itc.safetensors`) when trained.
pub(super) fn export_model(tm: &TrainableModel, parts: &ExportParts<'_>, dir: &Path) -> Result<()> {
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
    if let Some(h) = parts.heads {
        h.save(&dir.join(ITC_FILE))?;
    }
    tracing::info!("exported the trained model to {}", dir.display());
    Ok(())
}
