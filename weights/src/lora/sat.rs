//! Loading a LoRA fine-tune saved by the original SAT code (`finetune_visualglm.py
//! --use_lora`): a SAT directory whose `model_config.json` has `use_lora`, `lora_rank` and
//! `layer_range`, and whose state dict holds the full model with each adapted linear split
//! into `<module>.original.{weight,bias}`, `<module>.matrix_A.<k>` and `<module>.matrix_B.<k>`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde_json::Value;

use visualglm_nn::lora::{AdapterError, LoraAdapters};

use super::error::LoraError;
use super::recipe::{glm_config, RELEASE_ALPHA, SAT_NAMING};
use crate::checkpoint::{self, Checkpoint, LoadOptions, QkvLayout};
use crate::config::VisualGlmConfig;

/// Name of SAT's model configuration file.
const MODEL_CONFIG: &str = "model_config.json";
/// Largest model config accepted.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// A SAT LoRA fine-tune split into its base model and its adapters.
#[derive(Debug, Clone)]
pub struct SatLoraFinetune {
    /// The base model in canonical form: every `*.original.*` renamed to the plain name,
    /// no adapter tensors. Its config has the SAT conventions (α = √(2·layers)).
    pub base: Checkpoint,
    /// The adapters (SAT's `matrix_A.k` / `matrix_B.k`), f32 on the CPU; QKV partitions are
    /// the `[Q|K|V]` row blocks.
    pub adapters: LoraAdapters,
    /// The `model_config.json` the LoRA settings were read from.
    pub model_config: PathBuf,
}

/// The LoRA settings of a SAT `model_config.json`.
#[derive(Debug, Clone)]
struct SatLoraArgs {
    rank: usize,
    alpha: f64,
    layers: Vec<usize>,
}

/// Whether `path` looks like a SAT LoRA fine-tune (its `model_config.json` has
/// `"use_lora": true`).
pub fn is_sat_lora(path: &Path) -> bool {
    find_model_config(path)
        .and_then(|p| read_json(&p).ok())
        .is_some_and(|v| v.get("use_lora").and_then(Value::as_bool) == Some(true))
}

/// Reads a SAT LoRA fine-tune directory (or its `.pt`) and checks its adapters against its
/// `layer_range` and its base tensors; `expected` gives the model's parameter names and shapes
/// for the base's configuration, which validate the base. `opts` is passed to [`checkpoint::load`]; the pre-July-2023 interleaved
/// layout is refused, because its LoRA interleaved the partitions per head.
pub fn read_sat_lora(
    path: &Path,
    opts: &LoadOptions,
    expected: impl FnOnce(&VisualGlmConfig) -> Result<Vec<(String, Vec<usize>)>, LoraError>,
) -> Result<SatLoraFinetune, LoraError> {
    if opts.sat_qkv_layout == Some(QkvLayout::Interleaved) {
        return Err(LoraError::Unsupported(format!(
            "{}: LoRA fine-tunes in the pre-July-2023 interleaved QKV layout (head_first LoRA) \
             are not supported",
            path.display()
        )));
    }
    let model_config = find_model_config(path).ok_or_else(|| {
        LoraError::config(
            path,
            format!("no {MODEL_CONFIG} found beside the checkpoint"),
        )
    })?;
    let args = read_lora_args(&model_config)?;
    let ck = checkpoint::load(path, opts)?;
    let num_layers = ck.config.glm.num_layers;
    if let Some(&bad) = args.layers.iter().find(|&&l| l >= num_layers) {
        return Err(LoraError::config(
            &model_config,
            format!("`layer_range` names layer {bad}, the model has {num_layers} layers"),
        ));
    }

    let file = ck.source(crate::checkpoint::WORD_EMBEDDINGS);
    let context = format!(" in {}", file.display());
    let (base_tensors, adapter_tensors) = split(ck.tensors, &context)?;
    let config = glm_config(args.rank, args.alpha, Some(args.layers.clone()));
    let adapters =
        LoraAdapters::from_tensors(config.clone(), &adapter_tensors, SAT_NAMING, &context)?;
    for rule in &config.targets {
        for &l in &args.layers {
            let target = rule.target(l);
            if adapters.get(&target).is_none() {
                return Err(AdapterError::Missing {
                    name: SAT_NAMING.name(&target, true, 0),
                    context: format!(
                        "{context} (layer {l} is in `layer_range` of {})",
                        model_config.display()
                    ),
                }
                .into());
            }
        }
    }
    let source_of = ck
        .source_of
        .into_iter()
        .filter_map(|(n, p)| {
            base_tensors
                .contains_key(&plain_name(&n))
                .then(|| (plain_name(&n), p))
        })
        .collect();
    let base = Checkpoint {
        config: ck.config,
        family: ck.family,
        tensors: base_tensors,
        source_of,
    };
    checkpoint::validate(&base, &expected(&base.config)?)?;
    adapters.check_base(&base.tensors, &context)?;
    Ok(SatLoraFinetune {
        base,
        adapters,
        model_config,
    })
}

/// `X.original.Y` → `X.Y`; other names unchanged.
fn plain_name(name: &str) -> String {
    name.replacen(".original.", ".", 1)
}

type Split = (HashMap<String, Tensor>, HashMap<String, Tensor>);

/// Separates adapter tensors from base tensors and renames the `original` ones.
fn split(tensors: HashMap<String, Tensor>, context: &str) -> Result<Split, LoraError> {
    let mut base = HashMap::new();
    let mut adapters = HashMap::new();
    for (name, t) in tensors {
        if SAT_NAMING.parse(&name).is_some() {
            adapters.insert(name, t);
            continue;
        }
        let plain = plain_name(&name);
        if base.insert(plain.clone(), t).is_some() {
            return Err(AdapterError::Unexpected {
                name,
                message: format!("both `{plain}` and its `.original.` form are stored{context}"),
            }
            .into());
        }
    }
    Ok((base, adapters))
}

/// Reads `use_lora`, `lora_rank`, `layer_range` and (optional) `lora_alpha`.
fn read_lora_args(path: &Path) -> Result<SatLoraArgs, LoraError> {
    let v = read_json(path)?;
    if v.get("use_lora").and_then(Value::as_bool) != Some(true) {
        return Err(LoraError::config(
            path,
            "not a LoRA fine-tune: `use_lora` is not true",
        ));
    }
    let rank = v
        .get("lora_rank")
        .and_then(Value::as_u64)
        .filter(|&r| r > 0)
        .ok_or_else(|| {
            LoraError::config(path, "`lora_rank` is missing or not a positive integer")
        })?;
    let layers = match v.get("layer_range") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|x| x.as_u64().map(|l| l as usize))
            .collect::<Option<Vec<_>>>(),
        Some(Value::Number(n)) => n.as_u64().map(|l| vec![l as usize]),
        _ => None,
    }
    .filter(|l| !l.is_empty())
    .ok_or_else(|| {
        LoraError::config(
            path,
            "`layer_range` is missing or not a list of layer indices",
        )
    })?;
    let alpha = match v.get("lora_alpha") {
        None | Some(Value::Null) => RELEASE_ALPHA,
        Some(a) => a
            .as_f64()
            .filter(|a| a.is_finite())
            .ok_or_else(|| LoraError::config(path, "`lora_alpha` is not a number"))?,
    };
    Ok(SatLoraArgs {
        rank: rank as usize,
        alpha,
        layers,
    })
}

/// `model_config.json` for a SAT directory, its `latest`, or its `<iter>/*.pt`.
fn find_model_config(path: &Path) -> Option<PathBuf> {
    let mut dir = if path.is_dir() {
        Some(path)
    } else {
        path.parent()
    };
    for _ in 0..2 {
        let d = dir?;
        let c = d.join(MODEL_CONFIG);
        if c.is_file() {
            return Some(c);
        }
        dir = d.parent();
    }
    None
}

fn read_json(path: &Path) -> Result<Value, LoraError> {
    let meta = std::fs::metadata(path).map_err(|source| LoraError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(LoraError::config(path, "config file is too large"));
    }
    let text = std::fs::read_to_string(path).map_err(|source| LoraError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| LoraError::config(path, format!("invalid JSON: {e}")))
}
