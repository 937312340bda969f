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

/// Writes the results of a run into `out`: trained LoRA adapters alone in `out/adapter`
/// (loadable with `--lora`), and the trained model as the directory `out/model` (frozen and
/// trained weights, LoRA merged, the tokenizer, and the ITC heads as `itc.safetensors`) —
/// except over a quantized base, whose merged weights would be rounded twice: merge its
/// adapter into a full-precision base with `visualglm lora merge` instead.
pub(super) fn export_model(tm: &TrainableModel, parts: &ExportParts<'_>, out: &Path) -> Result<()> {
    if let Some(set) = parts.lora {
        let dir = out.join("adapter");
        crate::lora::save_adapters(set, &dir, Some(tm.family))?;
        tracing::info!("wrote the trained adapter to {}", dir.display());
    }
    if !tm.quantized.is_empty() {
        tracing::info!(
            "the base is quantized, so no merged model is written; merge the adapter into a \
             full-precision base with `visualglm lora merge --model <base> --lora {} --dtype f16 \
             --out <merged>` (trained weights other than adapters are in the last checkpoint)",
            out.join("adapter").display()
        );
        if let Some(h) = parts.heads {
            h.save(&out.join("adapter").join(ITC_FILE))?;
        }
        return Ok(());
    }
    let dir = out.join("model");
    let dir = dir.as_path();
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
