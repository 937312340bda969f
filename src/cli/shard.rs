//! Which share of a job's items this process takes, shared by the sharded commands (`batch`,
//! `eval captions`): `--shard K/N`, else the launcher's rank and world, else everything; and
//! the name of each shard's output file.

use std::path::{Path, PathBuf};

use anyhow::bail;
use visualglm_dist::Launch;

/// This process's share of a job's items: rank `rank` of `world`.
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

    /// The items of this shard: every `world`-th from the `rank`-th (balanced, in order).
    pub(super) fn take<T: Clone>(&self, items: &[T]) -> Vec<T> {
        items
            .iter()
            .skip(self.rank)
            .step_by(self.world.max(1))
            .cloned()
            .collect()
    }

    /// Whether item `index` (in the job's order) belongs to this shard.
    pub(super) fn owns(&self, index: usize) -> bool {
        index % self.world.max(1) == self.rank
    }

    /// Every shard of this shard's job, in rank order.
    pub(super) fn all(&self) -> impl Iterator<Item = Shard> {
        let world = self.world;
        (0..world).map(move |rank| Shard { rank, world })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_split_the_items_evenly_and_name_their_files() -> anyhow::Result<()> {
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
        assert!(s.owns(3) && !s.owns(4));
        assert_eq!(s.all().map(|s| s.rank).collect::<Vec<_>>(), [0, 1]);
        Ok(())
    }
}
