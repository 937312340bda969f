//! Atomic, verified training checkpoints.
//!
//! Layout under the checkpoint root:
//! ```text
//! <root>/
//!   latest                      # the name of the newest complete checkpoint, e.g. "step-300"
//!   step-300/
//!     weights.safetensors       # trainable tensors by name
//!     optimizer.safetensors     # AdamW: m.<name>, v.<name>, step.<name>
//!     state.json                # TrainState: counters, data position, RNG, metrics, extra
//!     manifest.json             # format tag + byte size and FNV-1a-64 of each file above
//! ```
//! A save writes everything into `step-N.tmp/`, fsyncs each file and the directory, renames
//! it to `step-N/` (an existing one is replaced whole: [`visualglm_files::publish_dir`]), then
//! replaces `latest` atomically ([`visualglm_files::write_atomic_bytes`]). The manifest is
//! written last, and a load checks every size and hash, so a half-written or truncated
//! checkpoint is refused with a clear error. Only the newest `keep_last` checkpoints are kept.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::DataPosition;
use crate::error::{Result, TrainError};
use crate::optim::AdamW;
use crate::rng::RngState;
use crate::step::StepCounters;

/// The manifest's format tag.
pub const FORMAT: &str = "visualglm-train-checkpoint/1";
/// File names inside a checkpoint directory.
pub const WEIGHTS_FILE: &str = "weights.safetensors";
/// The optimiser state file.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The training state file.
pub const STATE_FILE: &str = "state.json";
/// The manifest, written last.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The pointer file in the root.
pub const LATEST_FILE: &str = "latest";

/// Everything but tensors that a resume needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Updates applied / skipped; `step` is also the schedule's step.
    pub counters: StepCounters,
    /// Where the data stream continues.
    pub data_position: DataPosition,
    /// The run's RNG (dropout etc.).
    pub rng: RngState,
    /// Free-form scalar metrics (e.g. `loss`, `lr`); non-finite values are not saved.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Free-form extra data (e.g. the run's configuration), kept as is.
    #[serde(default)]
    pub extra: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: String,
    step: u64,
    files: Vec<ManifestEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ManifestEntry {
    name: String,
    bytes: u64,
    fnv1a64: String,
}

/// FNV-1a, 64-bit.
fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A loaded, verified checkpoint.
#[derive(Debug)]
pub struct Checkpoint {
    /// Its directory.
    pub dir: PathBuf,
    /// The training state.
    pub state: TrainState,
    /// Trainable tensors by name.
    pub weights: HashMap<String, Tensor>,
    /// Optimiser state tensors.
    pub optimizer: HashMap<String, Tensor>,
}

impl Checkpoint {
    /// Loads and verifies the checkpoint in `dir`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        if dir.extension().is_some_and(|e| e == "tmp") {
            return Err(TrainError::checkpoint(
                dir,
                "incomplete: a `.tmp` directory is a save that never finished",
            ));
        }
        if !dir.is_dir() {
            return Err(TrainError::checkpoint(dir, "no such checkpoint directory"));
        }
        let manifest_path = dir.join(MANIFEST_FILE);
        if !manifest_path.exists() {
            return Err(TrainError::checkpoint(
                dir,
                "incomplete: no manifest.json (the save did not finish)",
            ));
        }
        let manifest: Manifest = serde_json::from_slice(&read_limited(&manifest_path, 1 << 20)?)
            .map_err(|e| {
                TrainError::checkpoint(&manifest_path, format!("unreadable manifest: {e}"))
            })?;
        if manifest.format != FORMAT {
            return Err(TrainError::checkpoint(
                &manifest_path,
                format!("unknown format {:?} (expected {FORMAT:?})", manifest.format),
            ));
        }
        let mut contents = HashMap::new();
        for entry in &manifest.files {
            if entry.name.contains(['/', '\\']) || entry.name.starts_with('.') {
                return Err(TrainError::checkpoint(
                    &manifest_path,
                    format!("bad file name {:?}", entry.name),
                ));
            }
            let path = dir.join(&entry.name);
            let data = read_limited(&path, entry.bytes.saturating_add(1))?;
            if data.len() as u64 != entry.bytes {
                return Err(TrainError::checkpoint(
                    &path,
                    format!(
                        "corrupt: {} bytes, the manifest says {} (truncated?)",
                        data.len(),
                        entry.bytes
                    ),
                ));
            }
            let hash = format!("{:016x}", fnv1a64(&data));
            if hash != entry.fnv1a64 {
                return Err(TrainError::checkpoint(
                    &path,
                    format!(
                        "corrupt: FNV-1a-64 {hash}, the manifest says {}",
                        entry.fnv1a64
                    ),
                ));
            }
            contents.insert(entry.name.clone(), data);
        }
        let mut take = |name: &str| {
            contents
                .remove(name)
                .ok_or_else(|| TrainError::checkpoint(&manifest_path, format!("lists no {name}")))
        };
        let state_bytes = take(STATE_FILE)?;
        let weights_bytes = take(WEIGHTS_FILE)?;
        let optimizer_bytes = take(OPTIMIZER_FILE)?;
        let state: TrainState = serde_json::from_slice(&state_bytes).map_err(|e| {
            TrainError::checkpoint(dir.join(STATE_FILE), format!("unreadable state: {e}"))
        })?;
        if state.counters.step != manifest.step {
            return Err(TrainError::checkpoint(
                dir,
                format!(
                    "state.json is at step {}, the manifest at {}",
                    state.counters.step, manifest.step
                ),
            ));
        }
        let st = |name: &str, bytes: &[u8]| {
            candle_core::safetensors::load_buffer(bytes, device)
                .map_err(|e| TrainError::checkpoint(dir.join(name), format!("unreadable: {e}")))
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            state,
            weights: st(WEIGHTS_FILE, &weights_bytes)?,
            optimizer: st(OPTIMIZER_FILE, &optimizer_bytes)?,
        })
    }

    /// Puts the saved weights into the optimiser's variables and restores its moments.
    pub fn restore(&self, opt: &mut AdamW) -> Result<()> {
        let at = |e: TrainError| TrainError::checkpoint(&self.dir, e.to_string());
        opt.params().load(&self.weights).map_err(at)?;
        opt.load_state(&self.optimizer).map_err(at)
    }
}

/// Saves, lists, loads and prunes checkpoints under one root directory.
#[derive(Debug, Clone)]
pub struct CheckpointManager {
    root: PathBuf,
    keep_last: usize,
}

impl CheckpointManager {
    /// Uses (and creates) `root`; keeps the newest `keep_last` (≥ 1) checkpoints.
    pub fn new(root: impl Into<PathBuf>, keep_last: usize) -> Result<Self> {
        let root = root.into();
        if keep_last == 0 {
            return Err(TrainError::Config("keep_last must be at least 1".into()));
        }
        fs::create_dir_all(&root).map_err(|e| TrainError::io(&root, "create directory", e))?;
        Ok(Self { root, keep_last })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Saves the optimiser's parameters and state with `state`; returns the directory.
    pub fn save_training(&self, state: &TrainState, opt: &AdamW) -> Result<PathBuf> {
        self.save(state, &opt.params().tensors(), &opt.state_tensors()?)
    }

    /// Saves arbitrary weight and optimiser tensors with `state` as `step-<state.counters.step>`.
    pub fn save(
        &self,
        state: &TrainState,
        weights: &HashMap<String, Tensor>,
        optimizer: &HashMap<String, Tensor>,
    ) -> Result<PathBuf> {
        let step = state.counters.step;
        let name = format!("step-{step}");
        let tmp = self.root.join(format!("{name}.tmp"));
        let dir = self.root.join(&name);
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, "remove stale", e))?;
        }
        fs::create_dir(&tmp).map_err(|e| TrainError::io(&tmp, "create directory", e))?;

        let mut state = state.clone();
        state.metrics.retain(|k, v| {
            let keep = v.is_finite();
            if !keep {
                tracing::warn!("metric {k} = {v} is not finite and is not saved");
            }
            keep
        });
        let files: Vec<(&str, Vec<u8>)> = vec![
            (WEIGHTS_FILE, serialize_tensors(weights, &tmp)?),
            (OPTIMIZER_FILE, serialize_tensors(optimizer, &tmp)?),
            (
                STATE_FILE,
                serde_json::to_vec_pretty(&state)
                    .map_err(|e| TrainError::checkpoint(&tmp, format!("serialise state: {e}")))?,
            ),
        ];
        let mut entries = Vec::new();
        for (file, bytes) in &files {
            write_synced(&tmp.join(file), bytes)?;
            entries.push(ManifestEntry {
                name: (*file).to_owned(),
                bytes: bytes.len() as u64,
                fnv1a64: format!("{:016x}", fnv1a64(bytes)),
            });
        }
        let manifest = Manifest {
            format: FORMAT.into(),
            step,
            files: entries,
        };
        let manifest = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| TrainError::checkpoint(&tmp, format!("serialise manifest: {e}")))?;
        write_synced(&tmp.join(MANIFEST_FILE), &manifest)?;
        visualglm_files::publish_dir(&tmp, &dir)?;
        visualglm_files::write_atomic_bytes(self.root.join(LATEST_FILE), name.as_bytes())?;

        self.prune(step)?;
        Ok(dir)
    }

    /// Complete checkpoints (directories `step-N` with a manifest), oldest first.
    pub fn list(&self) -> Result<Vec<(u64, PathBuf)>> {
        let mut out = Vec::new();
        let rd = fs::read_dir(&self.root).map_err(|e| TrainError::io(&self.root, "list", e))?;
        for entry in rd {
            let entry = entry.map_err(|e| TrainError::io(&self.root, "list", e))?;
            let name = entry.file_name();
            let Some(step) = name.to_str().and_then(parse_step_name) else {
                continue;
            };
            let path = entry.path();
            if path.join(MANIFEST_FILE).is_file() {
                out.push((step, path));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The directory `latest` names; if there is no `latest` file, the newest complete
    /// checkpoint; `None` when there is none.
    pub fn latest(&self) -> Result<Option<PathBuf>> {
        let latest = self.root.join(LATEST_FILE);
        if latest.exists() {
            let bytes = read_limited(&latest, 256)?;
            let name = String::from_utf8_lossy(&bytes).trim().to_owned();
            if parse_step_name(&name).is_none() {
                return Err(TrainError::checkpoint(
                    &latest,
                    format!("names {name:?}, not a `step-N` checkpoint"),
                ));
            }
            return Ok(Some(self.root.join(name)));
        }
        Ok(self.list()?.pop().map(|(_, p)| p))
    }

    /// The training state of the checkpoint [`CheckpointManager::latest`] names, read without
    /// its tensors (`None`: a fresh run). Its step must match the directory's name.
    pub fn latest_state(&self) -> Result<Option<TrainState>> {
        let Some(dir) = self.latest()? else {
            return Ok(None);
        };
        let path = dir.join(STATE_FILE);
        let state: TrainState = serde_json::from_slice(&read_limited(&path, 16 << 20)?)
            .map_err(|e| TrainError::checkpoint(&path, format!("unreadable state: {e}")))?;
        let named = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_step_name);
        if named != Some(state.counters.step) {
            return Err(TrainError::checkpoint(
                &path,
                format!("holds step {}, its directory another", state.counters.step),
            ));
        }
        Ok(Some(state))
    }

    /// Loads the checkpoint [`CheckpointManager::latest`] names (`None`: a fresh run). A
    /// corrupt or incomplete one is an error, not silently skipped.
    pub fn load_latest(&self, device: &Device) -> Result<Option<Checkpoint>> {
        match self.latest()? {
            Some(dir) => Checkpoint::load(&dir, device).map(Some),
            None => Ok(None),
        }
    }

    /// Removes all but the newest `keep_last` checkpoints (never `keep_step`), and stale
    /// `.tmp` directories.
    fn prune(&self, keep_step: u64) -> Result<()> {
        let all = self.list()?;
        let excess = all.len().saturating_sub(self.keep_last);
        for (step, path) in all.into_iter().take(excess) {
            if step != keep_step {
                fs::remove_dir_all(&path).map_err(|e| TrainError::io(&path, "remove old", e))?;
            }
        }
        let rd = fs::read_dir(&self.root).map_err(|e| TrainError::io(&self.root, "list", e))?;
        for entry in rd.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(base) = name.strip_suffix(".tmp") {
                if parse_step_name(base).is_some() && entry.path().is_dir() {
                    let p = entry.path();
                    fs::remove_dir_all(&p).map_err(|e| TrainError::io(&p, "remove stale", e))?;
                }
            }
        }
        Ok(())
    }
}

/// `step-N` → `N`.
fn parse_step_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("step-")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn serialize_tensors(tensors: &HashMap<String, Tensor>, dir: &Path) -> Result<Vec<u8>> {
    let sorted: BTreeMap<&String, Tensor> = tensors
        .iter()
        .map(|(k, v)| Ok((k, v.contiguous()?)))
        .collect::<candle_core::Result<_>>()?;
    safetensors::serialize(sorted.iter().map(|(k, v)| (k.as_str(), v)), None)
        .map_err(|e| TrainError::checkpoint(dir, format!("serialise tensors: {e}")))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| TrainError::io(path, "create", e))?;
    f.write_all(bytes)
        .map_err(|e| TrainError::io(path, "write", e))?;
    f.sync_all().map_err(|e| TrainError::io(path, "fsync", e))
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let f = File::open(path).map_err(|e| TrainError::io(path, "open", e))?;
    let mut out = Vec::new();
    f.take(limit)
        .read_to_end(&mut out)
        .map_err(|e| TrainError::io(path, "read", e))?;
    Ok(out)
}
