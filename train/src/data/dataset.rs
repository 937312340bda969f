//! A dataset of examples and a resumable, deterministic batch sampler.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::example::Example;
use super::load::{load_data_file, DataFormat};
use super::record::{LoadOptions, LoadReport};
use crate::error::{Result, TrainError};
use crate::rng::permutation;

/// All examples of a run, in file order.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    examples: Vec<Example>,
}

impl Dataset {
    /// Wraps already loaded examples.
    pub fn new(examples: Vec<Example>) -> Self {
        Self { examples }
    }

    /// Loads and concatenates several data files (format guessed per file when `None`).
    pub fn load(
        files: &[(&Path, Option<DataFormat>)],
        opts: &LoadOptions,
    ) -> Result<(Self, LoadReport)> {
        let mut examples = Vec::new();
        let mut report = LoadReport::default();
        for (path, format) in files {
            let (ex, rep) = load_data_file(path, *format, opts)?;
            examples.extend(ex);
            report.loaded += rep.loaded;
            report.skipped += rep.skipped;
            let room = opts
                .max_reported_skips
                .saturating_sub(report.skip_messages.len());
            report
                .skip_messages
                .extend(rep.skip_messages.into_iter().take(room));
        }
        Ok((Self { examples }, report))
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// The example at `index`, if any.
    pub fn get(&self, index: usize) -> Option<&Example> {
        self.examples.get(index)
    }

    /// All examples.
    pub fn examples(&self) -> &[Example] {
        &self.examples
    }
}

/// A position in the data stream: `index` examples of epoch `epoch`'s order are consumed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPosition {
    /// 0-based epoch.
    pub epoch: u64,
    /// Examples of this epoch's order already consumed.
    pub index: u64,
}

/// How batches are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamplerConfig {
    /// Seed of the per-epoch shuffles.
    pub seed: u64,
    /// Examples per (micro-)batch.
    pub batch_size: usize,
    /// Shuffle each epoch (`false`: file order).
    pub shuffle: bool,
    /// Drop an epoch's last incomplete batch (`false`: yield it short).
    pub drop_last: bool,
}

/// Yields batches of dataset indices; its [`DataPosition`] resumes it exactly.
///
/// Epoch `e`'s order is [`permutation`]`(seed, e, len)`, a pure function, so nothing but
/// the position has to be saved.
#[derive(Debug, Clone)]
pub struct Sampler {
    len: usize,
    cfg: SamplerConfig,
    pos: DataPosition,
    order: Vec<usize>,
}

impl Sampler {
    /// A sampler at the start of epoch 0.
    pub fn new(len: usize, cfg: SamplerConfig) -> Result<Self> {
        Self::resume(len, cfg, DataPosition::default())
    }

    /// A sampler continuing from `pos` (e.g. from a checkpoint).
    pub fn resume(len: usize, cfg: SamplerConfig, pos: DataPosition) -> Result<Self> {
        if len == 0 {
            return Err(TrainError::Config("the dataset is empty".into()));
        }
        if cfg.batch_size == 0 {
            return Err(TrainError::Config("batch_size must be at least 1".into()));
        }
        if cfg.drop_last && cfg.batch_size > len {
            return Err(TrainError::Config(format!(
                "batch_size {} exceeds the dataset size {len} with drop_last",
                cfg.batch_size
            )));
        }
        if pos.index > len as u64 {
            return Err(TrainError::Config(format!(
                "data position {} of epoch {} is beyond the dataset size {len} \
                 (was the data changed since the checkpoint?)",
                pos.index, pos.epoch
            )));
        }
        let order = Self::order_for(len, &cfg, pos.epoch);
        Ok(Self {
            len,
            cfg,
            pos,
            order,
        })
    }

    fn order_for(len: usize, cfg: &SamplerConfig, epoch: u64) -> Vec<usize> {
        if cfg.shuffle {
            permutation(cfg.seed, epoch, len)
        } else {
            (0..len).collect()
        }
    }

    /// The position after the last batch returned.
    pub fn position(&self) -> DataPosition {
        self.pos
    }

    /// The configuration.
    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// The next batch of dataset indices (never empty), advancing the position.
    pub fn next_batch(&mut self) -> Vec<usize> {
        let remaining = self.len - self.pos.index as usize;
        if remaining == 0 || (self.cfg.drop_last && remaining < self.cfg.batch_size) {
            self.pos = DataPosition {
                epoch: self.pos.epoch + 1,
                index: 0,
            };
            self.order = Self::order_for(self.len, &self.cfg, self.pos.epoch);
        }
        let start = self.pos.index as usize;
        let end = (start + self.cfg.batch_size).min(self.len);
        self.pos.index = end as u64;
        self.order[start..end].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(batch_size: usize, drop_last: bool) -> SamplerConfig {
        SamplerConfig {
            seed: 9,
            batch_size,
            shuffle: true,
            drop_last,
        }
    }

    #[test]
    fn resumes_at_the_exact_position() {
        let mut a = Sampler::new(10, cfg(3, false)).unwrap();
        let mut seen = Vec::new();
        for _ in 0..5 {
            seen.push(a.next_batch());
        }
        let pos = a.position();
        let mut b = Sampler::resume(10, cfg(3, false), pos).unwrap();
        for _ in 0..7 {
            assert_eq!(a.next_batch(), b.next_batch());
        }
        // Epoch 0: 3,3,3,1; then epoch 1 starts.
        assert_eq!(
            seen.iter().map(Vec::len).collect::<Vec<_>>(),
            [3, 3, 3, 1, 3]
        );
        let mut epoch0: Vec<usize> = seen[..4].concat();
        epoch0.sort_unstable();
        assert_eq!(epoch0, (0..10).collect::<Vec<_>>());
        assert_eq!(pos, DataPosition { epoch: 1, index: 3 });
    }

    #[test]
    fn drop_last_skips_the_short_tail() {
        let mut s = Sampler::new(10, cfg(4, true)).unwrap();
        let lens: Vec<usize> = (0..4).map(|_| s.next_batch().len()).collect();
        assert_eq!(lens, [4, 4, 4, 4]);
        assert_eq!(s.position(), DataPosition { epoch: 1, index: 8 });
    }

    #[test]
    fn rejects_bad_configs() {
        assert!(Sampler::new(0, cfg(1, false)).is_err());
        assert!(Sampler::new(3, cfg(0, false)).is_err());
        assert!(Sampler::new(3, cfg(4, true)).is_err());
        assert!(Sampler::resume(3, cfg(1, false), DataPosition { epoch: 0, index: 4 }).is_err());
    }
}
