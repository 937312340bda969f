//! Sharded `visualglm batch`: each process of a job captions every N-th image into its own
//! output file, which resumes on its own; when the last shard finishes, the shards are merged
//! into the one output file a single process would have written (one line per image, in the
//! input's order). Every shard file has its settings sidecar (`batch::settings`); the merge
//! refuses shards made with other settings than its own run's and writes the sidecar of the
//! merged file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use visualglm_dist::Launch;

use super::batch::inputs::image_key;
use super::batch::output::write_atomic;
use super::batch::settings::Settings;

/// This process's share of the images: rank `rank` of `world`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Shard {
    pub(super) rank: usize,
    pub(super) world: usize,
}

impl Shard {
    /// `--shard K/N` (K from 0), or else the launcher's rank and world (`mpirun`, `srun`,
    /// torchrun: no communication is needed), or else the whole input.
    pub(super) fn choose(arg: Option<&str>) -> anyhow::Result<Self> {
        if let Some(arg) = arg {
            return Self::parse(arg);
        }
        let launch = Launch::from_env()?;
        Ok(Shard {
            rank: launch.rank,
            world: launch.world_size,
        })
    }

    /// Parses `K/N` with `K < N`.
    pub(super) fn parse(arg: &str) -> anyhow::Result<Self> {
        let parsed = arg
            .split_once('/')
            .and_then(|(k, n)| Some((k.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((rank, world)) if rank < world => Ok(Shard { rank, world }),
            _ => bail!("--shard {arg:?}: give K/N with 0 <= K < N, e.g. 0/4"),
        }
    }

    /// The images of this shard: every `world`-th from the `rank`-th (balanced, in order).
    pub(super) fn take(&self, images: &[PathBuf]) -> Vec<PathBuf> {
        images
            .iter()
            .skip(self.rank)
            .step_by(self.world.max(1))
            .cloned()
            .collect()
    }

    /// This shard's output file: `out` itself for a single process, else `out` with
    /// `.shard-K-of-N` before its extension (`captions.shard-0-of-4.jsonl`).
    pub(super) fn output(&self, out: &Path) -> PathBuf {
        if self.world == 1 {
            return out.to_path_buf();
        }
        let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned());
        let name = format!(
            "{}.shard-{}-of-{}{}",
            stem.unwrap_or_default(),
            self.rank,
            self.world,
            out.extension()
                .map(|e| format!(".{}", e.to_string_lossy()))
                .unwrap_or_default()
        );
        out.with_file_name(name)
    }

    /// The other files of this shard's output: the merged `out` and the other shards' files
    /// (none for a single process).
    pub(super) fn related_outputs(&self, out: &Path) -> Vec<PathBuf> {
        if self.world == 1 {
            return Vec::new();
        }
        let others = (0..self.world)
            .filter(|&rank| rank != self.rank)
            .map(|rank| {
                Shard {
                    rank,
                    world: self.world,
                }
                .output(out)
            });
        std::iter::once(out.to_path_buf()).chain(others).collect()
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_images_evenly_and_name_their_files() -> anyhow::Result<()> {
        let images: Vec<PathBuf> = (0..5).map(|i| PathBuf::from(format!("{i}.png"))).collect();
        let s = Shard::parse("1/2")?;
        assert_eq!(
            s.take(&images),
            [PathBuf::from("1.png"), PathBuf::from("3.png")]
        );
        assert_eq!(
            s.output(Path::new("out/captions.jsonl")),
            Path::new("out/captions.shard-1-of-2.jsonl")
        );
        let solo = Shard { rank: 0, world: 1 };
        assert_eq!(solo.take(&images), images);
        assert_eq!(solo.output(Path::new("c.jsonl")), Path::new("c.jsonl"));
        for bad in ["2/2", "x/2", "1", "-1/2"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        Ok(())
    }
}
