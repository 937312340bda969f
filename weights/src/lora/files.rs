//! The adapter file format: a directory with `adapter_model.safetensors` (f32 tensors
//! `<target>.lora_A.<k>` `[r, in]` and `<target>.lora_B.<k>` `[out/P, r]`, `<target>` a
//! canonical module name, rows of QKV partitions in `[Q|K|V]` block order) and
//! `adapter_config.json` ([`AdapterFileConfig`]). Both are written under temporary names and
//! renamed into place, the config last.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use visualglm_nn::lora::{LoraAdapters, LoraConfig, TensorNaming};

use super::error::LoraError;
use crate::config::CheckpointFamily;

/// File name of the adapter configuration inside an adapter directory.
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
/// File name of the adapter tensors inside an adapter directory.
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
/// Value of the `format` key of [`AdapterFileConfig`].
pub const ADAPTER_FORMAT: &str = "visualglm-lora";
/// Version written by this crate.
const VERSION: u32 = 1;
/// Largest adapter config accepted.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The contents of `adapter_config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterFileConfig {
    /// Always [`ADAPTER_FORMAT`].
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// Rank, alpha, dropout and targets.
    #[serde(flatten)]
    pub lora: LoraConfig,
    /// `alpha / rank`, for readers; ignored on load (recomputed).
    #[serde(default)]
    pub scaling: f64,
    /// Row layout the QKV partitions refer to; always `"blocks"` (`[Q|K|V]`).
    pub qkv_layout: String,
    /// Family (`"sat"` / `"hf"`) of the checkpoint the adapters were trained on, if known.
    /// Informative only: adapters apply to either family.
    #[serde(default)]
    pub base_family: Option<String>,
}

/// Writes `adapters` into the directory `dir` (created if needed).
pub fn save_adapters(
    adapters: &LoraAdapters,
    dir: &Path,
    base_family: Option<CheckpointFamily>,
) -> Result<(), LoraError> {
    std::fs::create_dir_all(dir).map_err(|source| LoraError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let weights = dir.join(ADAPTER_WEIGHTS);
    let mut tensors = HashMap::new();
    for (name, t) in adapters.to_tensors(TensorNaming::LORA) {
        let t = t
            .to_dtype(DType::F32)
            .and_then(|t| t.to_device(&Device::Cpu))
            .map_err(|source| LoraError::Tensors {
                path: weights.clone(),
                source: Box::new(source),
            })?;
        tensors.insert(name, t);
    }
    let bytes = safetensors::serialize(&tensors, None).map_err(|e| LoraError::Tensors {
        path: weights.clone(),
        source: Box::new(e.into()),
    })?;
    write_atomic(&weights, &bytes)?;

    let config = AdapterFileConfig {
        format: ADAPTER_FORMAT.to_string(),
        version: VERSION,
        lora: adapters.config().clone(),
        scaling: adapters.config().scaling(),
        qkv_layout: "blocks".to_string(),
        base_family: base_family.map(|f| f.as_str().to_string()),
    };
    let path = dir.join(ADAPTER_CONFIG);
    let text = serde_json::to_string_pretty(&config)
        .map_err(|e| LoraError::config(&path, format!("cannot serialise: {e}")))?;
    write_atomic(&path, text.as_bytes())
}

/// Reads an adapter directory (or its `adapter_model.safetensors`, with the config beside
/// it) written by [`save_adapters`]. Tensors are f32 on the CPU.
pub fn load_adapters(path: &Path) -> Result<(LoraAdapters, AdapterFileConfig), LoraError> {
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let weights = if path.is_dir() {
        dir.join(ADAPTER_WEIGHTS)
    } else {
        path.to_path_buf()
    };
    let config_path = dir.join(ADAPTER_CONFIG);
    let config = read_config(&config_path)?;
    if !weights.is_file() {
        return Err(LoraError::config(
            &weights,
            format!("adapter tensors not found (expected beside {ADAPTER_CONFIG})"),
        ));
    }
    let tensors = candle_core::safetensors::load(&weights, &Device::Cpu).map_err(|source| {
        LoraError::Tensors {
            path: weights.clone(),
            source: Box::new(source),
        }
    })?;
    if let Some(stray) = tensors
        .keys()
        .filter(|n| TensorNaming::LORA.parse(n).is_none())
        .min()
    {
        return Err(LoraError::config(
            &weights,
            format!(
                "tensor `{stray}` is not a LoRA tensor (`<module>.lora_A.<k>` / `.lora_B.<k>`)"
            ),
        ));
    }
    let context = format!(" in {}", weights.display());
    let adapters =
        LoraAdapters::from_tensors(config.lora.clone(), &tensors, TensorNaming::LORA, &context)?;
    if adapters.is_empty() {
        return Err(LoraError::config(&weights, "holds no LoRA tensors"));
    }
    Ok((adapters, config))
}

/// Reads and checks `adapter_config.json`.
fn read_config(path: &Path) -> Result<AdapterFileConfig, LoraError> {
    let meta = std::fs::metadata(path).map_err(|source| LoraError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(LoraError::config(path, "adapter config is too large"));
    }
    let text = std::fs::read_to_string(path).map_err(|source| LoraError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let config: AdapterFileConfig = serde_json::from_str(&text)
        .map_err(|e| LoraError::config(path, format!("not a LoRA adapter config: {e}")))?;
    if config.format != ADAPTER_FORMAT {
        return Err(LoraError::config(
            path,
            format!(
                "`format` is {:?}, expected {ADAPTER_FORMAT:?}",
                config.format
            ),
        ));
    }
    if config.version != VERSION {
        return Err(LoraError::config(
            path,
            format!(
                "unsupported version {} (this build reads {VERSION})",
                config.version
            ),
        ));
    }
    if config.qkv_layout != "blocks" {
        return Err(LoraError::config(
            path,
            format!(
                "`qkv_layout` is {:?}; only \"blocks\" is supported",
                config.qkv_layout
            ),
        ));
    }
    config
        .lora
        .validate()
        .map_err(|e| LoraError::config(path, e.to_string()))?;
    Ok(config)
}

/// Writes one file of the adapter directory atomically.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LoraError> {
    visualglm_files::write_atomic_bytes(path, bytes).map_err(|e| LoraError::Io {
        path: path.to_path_buf(),
        source: e.source,
    })
}
