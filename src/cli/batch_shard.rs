//! Sharded `visualglm batch`: each process of a job captions every N-th image into its own
//! output file, which resumes on its own; when the last shard finishes, the shards are merged
//! into the one output file a single process would have written (one line per image, in the
//! input's order). Every shard file has its settings sidecar (`batch::settings`); the merge
//! refuses shards made with other settings than its own run's and writes the sidecar of the
//! merged file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::batch::inputs::image_key;
use super::batch::output::write_atomic;
use super::batch::settings::Settings;
/// The shard choice `batch` shares with `eval captions`.
pub(super) use super::shard::Shard;

/// Writes `out` from the `world` shard files of `out` once they hold a line for every image
/// of `images` (the last line of an image wins, as a retried error is followed by its
/// caption), in the order of `images`, atomically. The shards' sidecars must record
/// `settings` (else an error, or with `force` a warning); the merged file gets its own.
/// Returns how many images the shards hold (all: merged).
pub(super) fn merge_when_complete(
    images: &[PathBuf],
    out: &Path,
    world: usize,
    settings: &Settings,
    force: bool,
) -> anyhow::Result<usize> {
    let mut lines: HashMap<String, String> = HashMap::new();
    let mut shard_files = Vec::new();
    for rank in 0..world {
        let path = Shard { rank, world }.output(out);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        shard_files.push(path.clone());
        // Complete lines only: a shard still running may be mid-write.
        let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
        for (n, line) in complete.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not a JSON line", path.display(), n + 1))?;
            if let Some(image) = v.get("image").and_then(|i| i.as_str()) {
                lines.insert(image_key(Path::new(image)), line.to_string());
            }
        }
    }
    let keys: Vec<String> = images.iter().map(|p| image_key(p)).collect();
    let held = keys.iter().filter(|k| lines.contains_key(*k)).count();
    if held < images.len() {
        return Ok(held);
    }
    settings
        .check(&shard_files, force)
        .context("the shards are not merged")?;
    let mut merged = String::new();
    for key in &keys {
        if let Some(line) = lines.get(key) {
            merged.push_str(line);
            merged.push('\n');
        }
    }
    // The sidecar first: the merged file never stands beside another run's settings.
    settings.write(out)?;
    write_atomic(out, &merged)?;
    Ok(held)
}
