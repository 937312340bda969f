//! Sharded `visualglm batch`: each process of a job captions every N-th image into its own
//! output file, which resumes on its own; when the last shard finishes, the shards are merged
//! into the one output file a single process would have written (one line per image, in the
//! input's order).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use visualglm_dist::Launch;

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
}

/// Writes `out` from the `world` shard files of `out` once they hold a line for every image
/// of `images` (the last line of an image wins, as a retried error is followed by its
/// caption), in the order of `images`, atomically. Returns how many images the shards hold
/// (all: merged).
pub(super) fn merge_when_complete(
    images: &[PathBuf],
    out: &Path,
    world: usize,
) -> anyhow::Result<usize> {
    let mut lines: HashMap<String, String> = HashMap::new();
    for rank in 0..world {
        let path = Shard { rank, world }.output(out);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        // Complete lines only: a shard still running may be mid-write.
        let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
        for (n, line) in complete.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not a JSON line", path.display(), n + 1))?;
            if let Some(image) = v.get("image").and_then(|i| i.as_str()) {
                lines.insert(image.to_string(), line.to_string());
            }
        }
    }
    let held = images
        .iter()
        .filter(|p| lines.contains_key(&p.display().to_string()))
        .count();
    if held < images.len() {
        return Ok(held);
    }
    let mut merged = String::new();
    for p in images {
        if let Some(line) = lines.get(&p.display().to_string()) {
            merged.push_str(line);
            merged.push('\n');
        }
    }
    visualglm_files::write_atomic_bytes(out, merged.as_bytes())
        .map_err(|e| e.source)
        .with_context(|| format!("cannot write {}", out.display()))?;
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
