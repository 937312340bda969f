//! Collectives for running one job as several processes: data-parallel training (every rank
//! computes the gradient of its share of the global batch, the gradients are summed) and
//! sharded inference.
//!
//! [`Collective`] is the small interface the training loop uses: all-reduce (sum), all-gather,
//! broadcast and barrier. Its backends are existing engines, never a protocol of our own:
//!
//! * [`Solo`]: a world of one process, what every command does when not launched as a group;
//! * [`ThreadGroup`]: ranks as threads of one process, for tests (with fault injection);
//! * `Mpi` (cargo feature `mpi`): processes started by `mpirun` / `srun` on Open MPI.
//!
//! [`Launch::from_env`] reads rank and world size from the launcher's conventions (Open MPI,
//! MPICH/PMI, Slurm steps, torchrun).

mod error;
mod launch;
#[cfg(feature = "mpi")]
mod mpi_backend;
mod threads;
// Used by the MPI backend; compiled (and tested) in every build.
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
mod watchdog;

pub use error::{DistError, Result};
pub use launch::{Launch, Launcher};
#[cfg(feature = "mpi")]
pub use mpi_backend::Mpi;
pub use threads::ThreadGroup;

/// The collectives of a group of ranks `0..world_size()`. Every rank must call the same
/// collectives in the same order with the same lengths; each call returns the same result on
/// every rank (reductions are done in rank order, so the sums are bitwise equal everywhere).
pub trait Collective: Send + Sync {
    /// This process's rank.
    fn rank(&self) -> usize;

    /// The number of ranks.
    fn world_size(&self) -> usize;

    /// The backend's name, for logs (`solo`, `threads`, `mpi`).
    fn backend(&self) -> &'static str;

    /// Element-wise sum over ranks of `values`, in place.
    fn all_reduce_sum_f32(&self, values: &mut [f32]) -> Result<()>;

    /// Element-wise sum over ranks of `values`, in place (counts and loss sums).
    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()>;

    /// Every rank's `bytes` (the lengths may differ), in rank order.
    fn all_gather_bytes(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>>;

    /// Every rank's `values` (the lengths may differ), in rank order.
    fn all_gather_f32(&self, values: &[f32]) -> Result<Vec<Vec<f32>>> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok(self
            .all_gather_bytes(&bytes)?
            .iter()
            .map(|b| {
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            })
            .collect())
    }

    /// Replaces `bytes` on every rank with those of rank `root` (any length).
    fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize) -> Result<()>;

    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<()>;

    /// Ends the job on every rank because this one cannot go on (`why` is printed): what
    /// `MPI_Abort` does; the in-process backend fails every collective in progress or to come.
    /// A world of one has nothing to end.
    fn fail(&self, why: &str);

    /// Whether this rank writes the job's shared outputs (checkpoints, metrics, reports).
    fn is_main(&self) -> bool {
        self.rank() == 0
    }
}

/// A world of one: every collective is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct Solo;

impl Collective for Solo {
    fn rank(&self) -> usize {
        0
    }

    fn world_size(&self) -> usize {
        1
    }

    fn backend(&self) -> &'static str {
        "solo"
    }

    fn all_reduce_sum_f32(&self, _: &mut [f32]) -> Result<()> {
        Ok(())
    }

    fn all_reduce_sum_f64(&self, _: &mut [f64]) -> Result<()> {
        Ok(())
    }

    fn all_gather_bytes(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        Ok(vec![bytes.to_vec()])
    }

    fn broadcast_bytes(&self, _: &mut Vec<u8>, root: usize) -> Result<()> {
        check_root(root, 1)
    }

    fn barrier(&self) -> Result<()> {
        Ok(())
    }

    fn fail(&self, _: &str) {}
}

/// An error unless `root` is a rank of a world of `world` ranks.
pub(crate) fn check_root(root: usize, world: usize) -> Result<()> {
    if root < world {
        Ok(())
    } else {
        Err(DistError::Usage(format!(
            "broadcast from rank {root} in a world of {world}"
        )))
    }
}

/// The contiguous share of `items` that rank `rank` of `world` takes when every rank takes at
/// most `per_rank`: `items[rank·per_rank ..]`, shorter (or empty) at the end of a short batch.
pub fn shard<T>(items: &[T], rank: usize, per_rank: usize) -> &[T] {
    let start = rank.saturating_mul(per_rank).min(items.len());
    let end = start.saturating_add(per_rank).min(items.len());
    &items[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_and_cover_the_batch() {
        let items: Vec<usize> = (0..7).collect();
        let parts: Vec<&[usize]> = (0..4).map(|r| shard(&items, r, 2)).collect();
        assert_eq!(parts, [&[0, 1][..], &[2, 3], &[4, 5], &[6]]);
        assert!(shard(&items, 4, 2).is_empty());
        assert!(shard(&items, usize::MAX, 2).is_empty());
    }

    #[test]
    fn solo_is_the_identity() -> Result<()> {
        let mut v = vec![1.5f32, 2.0];
        Solo.all_reduce_sum_f32(&mut v)?;
        assert_eq!(v, [1.5, 2.0]);
        assert_eq!(Solo.all_gather_f32(&v)?, [v.clone()]);
        let mut b = b"x".to_vec();
        Solo.broadcast_bytes(&mut b, 0)?;
        assert_eq!(b, b"x");
        assert!(Solo.broadcast_bytes(&mut b, 1).is_err());
        assert!(Solo.is_main());
        Ok(())
    }
}
