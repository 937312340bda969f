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
        return model_of_run(path);
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
        return Err(HubError::RunWithoutModel {
            dir: path.to_path_buf(),
        });
    }
    Ok(path.to_path_buf())
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
