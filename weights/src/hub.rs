//! Resolving `--model`: a local path, or a Hugging Face hub id (`THUDM/visualglm-6b`) found in
//! (or downloaded into) the hub cache with the `hf-hub` crate.

use std::path::{Path, PathBuf};

/// Why a `--model` value could not be resolved to a local directory.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Neither an existing path nor a hub id.
    #[error(
        "model `{spec}` not found: pass a local directory or file, or a hub id like \
         THUDM/visualglm-6b"
    )]
    NotFound {
        /// What was asked for.
        spec: String,
    },
    /// A training run directory without an exported model.
    #[error(transparent)]
    ModelDir(Box<crate::model_dir::ModelDirError>),
    /// Offline, and the model is not (fully) in the hub cache.
    #[error(
        "`{spec}` is not in the hub cache ({}) and --offline forbids downloading: run \
         once without --offline, or pass a local directory",
        cache.display()
    )]
    NotCached {
        /// The hub id.
        spec: String,
        /// The hub cache directory.
        cache: PathBuf,
    },
    /// A download failed.
    #[error(
        "cannot download `{id}` from the hub ({source}); use --offline with a cached model or \
         pass a local directory"
    )]
    Download {
        /// The hub id.
        id: String,
        /// The hub client's error.
        #[source]
        source: Box<hf_hub::api::sync::ApiError>,
    },
    /// The cache returned a file without a parent directory.
    #[error("bad cache path for `{id}`")]
    BadCachePath {
        /// The hub id.
        id: String,
    },
    /// The repository has none of the weight files this project reads.
    #[error("`{id}` has no weights this tool knows ({known})")]
    NoWeights {
        /// The hub id.
        id: String,
        /// The file names looked for.
        known: String,
    },
    /// A weight index could not be read.
    #[error("{}: {message}", path.display())]
    Index {
        /// The index file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
}

/// Result with [`HubError`].
type Result<T> = std::result::Result<T, HubError>;

/// Files of a model repository besides the weight shards.
const SIDE_FILES: [&str; 4] = [
    "config.json",
    "ice_text.model",
    "tokenizer.json",
    "tokenizer_config.json",
];
/// Weight indexes and single-file weights, in order of preference.
const WEIGHT_FILES: [&str; 4] = [
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
];

/// Parses an environment flag as Hugging Face does: `1`, `true`, `yes`, `on` (any case) are
/// true; `0`, `false`, `no`, `off` and the empty string are false.
pub fn parse_flag(s: &str) -> std::result::Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" | "t" => Ok(true),
        "" | "0" | "false" | "no" | "off" | "n" | "f" => Ok(false),
        other => Err(format!(
            "`{other}` is not 1/0, true/false, yes/no or on/off"
        )),
    }
}

/// Whether `HF_HUB_OFFLINE` asks never to touch the network (unset or unparsable: no).
pub fn offline_from_env() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .ok()
        .and_then(|v| parse_flag(&v).ok())
        .unwrap_or(false)
}

/// Whether `spec` looks like a hub id (`owner/name`) rather than a path.
pub fn is_hub_id(spec: &str) -> bool {
    let mut parts = spec.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(owner), Some(name), None) => {
            let ok = |s: &str| {
                !s.is_empty()
                    && !s.starts_with('.')
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            };
            ok(owner) && ok(name)
        }
        _ => false,
    }
}

/// The local directory for `spec`: the path itself when it exists; else, for a hub id, the
/// cached snapshot (downloading the missing files first unless `offline`).
pub fn resolve_model(spec: &str, offline: bool) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.exists() {
        return crate::model_dir::model_of_run(path).map_err(|e| HubError::ModelDir(Box::new(e)));
    }
    if !is_hub_id(spec) {
        return Err(HubError::NotFound {
            spec: spec.to_string(),
        });
    }
    let cache = hf_hub::Cache::from_env();
    if offline {
        return cached_snapshot(&cache, spec).ok_or_else(|| HubError::NotCached {
            spec: spec.to_string(),
            cache: cache.path().clone(),
        });
    }
    download(spec)
}

/// The snapshot directory of a fully cached model, if every weight file is there.
fn cached_snapshot(cache: &hf_hub::Cache, id: &str) -> Option<PathBuf> {
    let repo = cache.model(id.to_string());
    let config = repo.get("config.json")?;
    for name in WEIGHT_FILES {
        if let Some(file) = repo.get(name) {
            if !name.ends_with(".index.json") {
                return config.parent().map(Path::to_path_buf);
            }
            let shards = shards_of(&file).ok()?;
            if shards.iter().all(|s| repo.get(s).is_some()) {
                return config.parent().map(Path::to_path_buf);
            }
            return None;
        }
    }
    None
}

/// Downloads the config, tokenizer and weights of `id` into the hub cache.
fn download(id: &str) -> Result<PathBuf> {
    let net = |e: hf_hub::api::sync::ApiError| HubError::Download {
        id: id.to_string(),
        source: Box::new(e),
    };
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(true)
        .build()
        .map_err(net)?;
    let repo = api.model(id.to_string());
    let config = repo.get("config.json").map_err(net)?;
    for name in SIDE_FILES.iter().skip(1) {
        // Optional files: a repository may have either tokenizer file.
        let _ = repo.get(name);
    }
    for name in WEIGHT_FILES {
        let Ok(file) = repo.get(name) else { continue };
        if name.ends_with(".index.json") {
            for shard in shards_of(&file)? {
                repo.get(&shard).map_err(net)?;
            }
        }
        return config
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| HubError::BadCachePath { id: id.to_string() });
    }
    Err(HubError::NoWeights {
        id: id.to_string(),
        known: WEIGHT_FILES.join(", "),
    })
}

/// The shard file names listed by a weight index.
fn shards_of(index: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(index).map_err(|e| index_err(index, e))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| index_err(index, e))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| index_err(index, "no weight_map"))?;
    let mut shards: Vec<String> = map
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    shards.sort();
    shards.dedup();
    Ok(shards)
}

/// A [`HubError::Index`] for `path`.
fn index_err(path: &Path, message: impl std::fmt::Display) -> HubError {
    HubError::Index {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_are_told_from_paths() {
        assert!(is_hub_id("THUDM/visualglm-6b"));
        assert!(!is_hub_id("./models/x"));
        assert!(!is_hub_id("/abs/path"));
        assert!(!is_hub_id("a/b/c"));
        assert!(!is_hub_id("visualglm-6b"));
        assert!(!is_hub_id("../x"));
    }
}
