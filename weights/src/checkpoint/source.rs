//! Finding the files of a checkpoint path and reading their raw (stored-name) tensors.
//!
//! Handles: SAT directories (`latest` → `<iter>/mp_rank_00_model_states.pt`), HF shard
//! indexes (`*.index.json` over `.bin` or `.safetensors` shards), and single files.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::error::CheckpointError;
use super::stored::StoredTensor;
use super::{pth, st};

/// Largest shard index or `latest` file accepted.
const MAX_INDEX_BYTES: u64 = 64 << 20;
const MAX_LATEST_BYTES: u64 = 256;

/// Tensors as stored, before any renaming.
pub struct RawTensors {
    /// `(stored name, tensor (read when asked), file it came from)`, in reading order.
    pub tensors: Vec<(String, StoredTensor, PathBuf)>,
    /// `__metadata__` of the first safetensors file read (empty otherwise).
    pub metadata: HashMap<String, String>,
    /// Config files to try, most specific first.
    pub config_candidates: Vec<PathBuf>,
}

/// Lists all tensors the checkpoint at `path` consists of (their data is read when asked).
pub fn read_raw(path: &Path) -> Result<RawTensors, CheckpointError> {
    let meta = std::fs::metadata(path).map_err(|e| CheckpointError::io(path, e))?;
    if meta.is_dir() {
        read_dir(path)
    } else {
        read_path_file(path)
    }
}

fn read_dir(dir: &Path) -> Result<RawTensors, CheckpointError> {
    let beside = vec![dir.join("config.json"), dir.join("model_config.json")];
    if dir.join("latest").is_file() {
        let file = sat_model_file(dir)?;
        return with_candidates(
            read_file(&file)?,
            vec![dir.join("model_config.json"), dir.join("config.json")],
        );
    }
    for index in [
        "model.safetensors.index.json",
        "pytorch_model.bin.index.json",
    ] {
        let p = dir.join(index);
        if p.is_file() {
            return with_candidates(read_index(&p)?, beside);
        }
    }
    for single in ["model.safetensors", "pytorch_model.bin"] {
        let p = dir.join(single);
        if p.is_file() {
            return with_candidates(read_file(&p)?, beside);
        }
    }
    Err(CheckpointError::NotACheckpoint {
        path: dir.to_path_buf(),
        hint:
            "expected a SAT `latest` file, a *.index.json, model.safetensors or pytorch_model.bin"
                .into(),
    })
}

fn read_path_file(path: &Path) -> Result<RawTensors, CheckpointError> {
    let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name == "latest" {
        return read_dir(&parent);
    }
    let mut candidates = vec![parent.join("config.json"), parent.join("model_config.json")];
    if name.ends_with(".pt") {
        // SAT layout: <dir>/<iter>/mp_rank_00_model_states.pt with <dir>/model_config.json.
        if let Some(grand) = parent.parent() {
            candidates.push(grand.join("model_config.json"));
        }
    }
    let raw = if name.ends_with(".index.json") {
        read_index(path)?
    } else {
        read_file(path)?
    };
    with_candidates(raw, candidates)
}

fn with_candidates(mut raw: RawTensors, c: Vec<PathBuf>) -> Result<RawTensors, CheckpointError> {
    raw.config_candidates = c;
    Ok(raw)
}

/// Opens one tensor file, choosing the reader by extension.
fn read_file(path: &Path) -> Result<RawTensors, CheckpointError> {
    let is_st = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    if is_st {
        let (tensors, metadata) = st::open_safetensors(path)?;
        Ok(RawTensors {
            tensors: tag(tensors, path),
            metadata,
            config_candidates: Vec::new(),
        })
    } else {
        Ok(RawTensors {
            tensors: tag(pth::open_state_dict(path)?, path),
            metadata: HashMap::new(),
            config_candidates: Vec::new(),
        })
    }
}

fn tag(ts: Vec<(String, StoredTensor)>, path: &Path) -> Vec<(String, StoredTensor, PathBuf)> {
    ts.into_iter()
        .map(|(n, t)| (n, t, path.to_path_buf()))
        .collect()
}

fn read_small(path: &Path, limit: u64) -> Result<String, CheckpointError> {
    let f = std::fs::File::open(path).map_err(|e| CheckpointError::io(path, e))?;
    let mut s = String::new();
    f.take(limit + 1)
        .read_to_string(&mut s)
        .map_err(|e| CheckpointError::io(path, e))?;
    if s.len() as u64 > limit {
        return Err(CheckpointError::Index {
            path: path.to_path_buf(),
            message: format!("file is larger than {limit} bytes"),
        });
    }
    Ok(s)
}

/// Resolves `<dir>/latest` to `<dir>/<iter>/mp_rank_00_model_states.pt`.
fn sat_model_file(dir: &Path) -> Result<PathBuf, CheckpointError> {
    let latest = dir.join("latest");
    let bad = |message: String| CheckpointError::Latest {
        path: latest.clone(),
        message,
    };
    let text = match read_small(&latest, MAX_LATEST_BYTES) {
        Ok(t) => t,
        Err(CheckpointError::Index { .. }) => {
            return Err(bad(format!("longer than {MAX_LATEST_BYTES} bytes")))
        }
        Err(e) => return Err(e),
    };
    let iter = text.trim();
    let plain = iter
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if iter.is_empty() || !plain || iter == "." || iter == ".." {
        return Err(bad(format!(
            "expected an iteration directory name, found {:?}",
            text.chars().take(40).collect::<String>()
        )));
    }
    let iter_dir = dir.join(iter);
    if !iter_dir.is_dir() {
        return Err(bad(format!(
            "names iteration `{iter}` but {} is not a directory",
            iter_dir.display()
        )));
    }
    if iter_dir.join("mp_rank_01_model_states.pt").exists() {
        return Err(CheckpointError::NotACheckpoint {
            path: iter_dir,
            hint:
                "model-parallel SAT checkpoints (mp_rank_01…) are not supported; merge them first"
                    .into(),
        });
    }
    let file = iter_dir.join("mp_rank_00_model_states.pt");
    if !file.is_file() {
        return Err(CheckpointError::NotACheckpoint {
            path: iter_dir,
            hint: "the iteration directory has no mp_rank_00_model_states.pt".into(),
        });
    }
    Ok(file)
}

/// Reads every shard named in an HF `*.index.json` and checks the index against them.
fn read_index(index: &Path) -> Result<RawTensors, CheckpointError> {
    let bad = |message: String| CheckpointError::Index {
        path: index.to_path_buf(),
        message,
    };
    let text = read_small(index, MAX_INDEX_BYTES)?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no `weight_map` object".into()))?;
    let mut by_shard: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, shard) in map {
        let shard = shard
            .as_str()
            .ok_or_else(|| bad(format!("shard of `{name}` is not a string")))?;
        let plain =
            !shard.is_empty() && !shard.contains(['/', '\\']) && shard != "." && shard != "..";
        if !plain {
            return Err(bad(format!(
                "shard `{shard}` of `{name}` is not a plain file name"
            )));
        }
        by_shard
            .entry(shard.to_string())
            .or_default()
            .push(name.clone());
    }
    if by_shard.is_empty() {
        return Err(bad("`weight_map` is empty".into()));
    }
    let dir = index.parent().map(Path::to_path_buf).unwrap_or_default();
    // Check every shard exists before opening any.
    for shard in by_shard.keys() {
        let p = dir.join(shard);
        if !p.is_file() {
            return Err(CheckpointError::MissingShard {
                index: index.to_path_buf(),
                shard: shard.clone(),
                path: p,
            });
        }
    }
    let mut out = RawTensors {
        tensors: Vec::new(),
        metadata: HashMap::new(),
        config_candidates: Vec::new(),
    };
    for (shard, names) in by_shard {
        let p = dir.join(&shard);
        let raw = read_file(&p)?;
        if out.metadata.is_empty() {
            out.metadata = raw.metadata;
        }
        let present: std::collections::HashSet<&str> =
            raw.tensors.iter().map(|(n, _, _)| n.as_str()).collect();
        if let Some(absent) = names.iter().find(|n| !present.contains(n.as_str())) {
            return Err(bad(format!(
                "tensor `{absent}` is mapped to shard {shard} but that shard does not contain it"
            )));
        }
        let listed: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
        for (n, _, _) in &raw.tensors {
            if !listed.contains(n.as_str()) {
                tracing::warn!(
                    "{}: `{n}` is in {shard} but not in the index",
                    index.display()
                );
            }
        }
        out.tensors.extend(raw.tensors);
    }
    Ok(out)
}
