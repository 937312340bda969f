//! The Open MPI backend (cargo feature `mpi`): CPU processes on one machine or a cluster,
//! started by `mpirun` or Slurm's `srun`.
//!
//! MPI is initialised with `MPI_THREAD_MULTIPLE` so that the watchdog thread may call
//! `MPI_Abort` while the main thread is blocked in a collective: a rank that died or hangs then
//! ends the job within the timeout, with a message naming the rank that waited and on what
//! (`mpirun` itself names a rank that exited).

use std::time::Duration;

use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Threading;

use crate::error::{DistError, Result};
use crate::watchdog::Watchdog;
use crate::{check_root, Collective};

/// This process's membership of `MPI_COMM_WORLD`.
pub struct Mpi {
    universe: Universe,
    rank: usize,
    world: usize,
    watchdog: Option<Watchdog>,
}

// SAFETY: MPI was initialised with `MPI_THREAD_MULTIPLE` (checked in `Mpi::init`, which refuses
// a lower level), under which the MPI standard allows any thread to call MPI at any time; the
// `Universe` handle holds no thread-bound state of ours.
unsafe impl Send for Mpi {}
// SAFETY: as for `Send`: concurrent calls are allowed at `MPI_THREAD_MULTIPLE`.
unsafe impl Sync for Mpi {}

impl Mpi {
    /// Initialises MPI (once per process) with `MPI_THREAD_MULTIPLE`; a collective that waits
    /// longer than `timeout` aborts the whole job.
    pub fn init(timeout: Duration) -> Result<Self> {
        let backend_err = |message: String| DistError::Backend {
            backend: "mpi",
            message,
        };
        let (universe, threading) = mpi::initialize_with_threading(Threading::Multiple)
            .ok_or_else(|| backend_err("MPI was initialised already in this process".into()))?;
        if threading < Threading::Multiple {
            return Err(backend_err(format!(
                "the MPI library offers {threading:?} threading, the watchdog needs Multiple \
                 (Open MPI 4 and later provide it)"
            )));
        }
        let world = universe.world();
        let rank = usize::try_from(world.rank()).unwrap_or(0);
        let size = usize::try_from(world.size()).unwrap_or(1);
        let watchdog = Watchdog::start(timeout, move |op, waited| {
            let msg = format!(
                "rank {rank}: {op} waited {:.0} s for the other ranks (a rank has stopped or \
                 hangs); aborting the job",
                waited.as_secs_f64()
            );
            tracing::error!("{msg}");
            eprintln!("{msg}");
            SimpleCommunicator::world().abort(3);
        });
        Ok(Mpi {
            universe,
            rank,
            world: size,
            watchdog: Some(watchdog),
        })
    }

    fn comm(&self) -> SimpleCommunicator {
        self.universe.world()
    }

    fn watch(&self, op: &'static str) -> Option<crate::watchdog::Watching<'_>> {
        self.watchdog.as_ref().map(|w| w.watch(op))
    }

    /// An error unless every rank passes the same `len`.
    fn check_same_len(&self, len: usize, what: &str) -> Result<()> {
        let mut lens = vec![0u64; self.world];
        self.comm().all_gather_into(&(len as u64), &mut lens[..]);
        match lens.iter().position(|&l| l != len as u64) {
            Some(r) => Err(DistError::Usage(format!(
                "{what}: rank {r} has {} values, rank {} has {len}",
                lens[r], self.rank
            ))),
            None => Ok(()),
        }
    }
}

impl Mpi {
    /// `MPI_Allreduce` with `MPI_SUM`, in place.
    fn all_reduce_sum<T: Equivalence + Copy>(&self, values: &mut [T]) -> Result<()> {
        let _w = self.watch("all_reduce");
        self.check_same_len(values.len(), "all_reduce")?;
        let send = values.to_vec();
        self.comm()
            .all_reduce_into(&send[..], values, SystemOperation::sum());
        Ok(())
    }
}

impl Drop for Mpi {
    fn drop(&mut self) {
        // Stop the watchdog before `Universe` finalises MPI.
        self.watchdog.take();
    }
}

impl Collective for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn backend(&self) -> &'static str {
        "mpi"
    }

    fn all_reduce_sum_f32(&self, values: &mut [f32]) -> Result<()> {
        self.all_reduce_sum(values)
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<()> {
        self.all_reduce_sum(values)
    }

    fn all_gather_bytes(&self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        let _w = self.watch("all_gather");
        let comm = self.comm();
        let mut lens = vec![0u64; self.world];
        comm.all_gather_into(&(bytes.len() as u64), &mut lens[..]);
        let too_long = || DistError::Usage("all_gather: more than 2 GiB from one rank".into());
        let counts = lens
            .iter()
            .map(|&l| i32::try_from(l).map_err(|_| too_long()))
            .collect::<Result<Vec<i32>>>()?;
        let mut displs = Vec::with_capacity(self.world);
        let mut total = 0i32;
        for &c in &counts {
            displs.push(total);
            total = total.checked_add(c).ok_or_else(too_long)?;
        }
        let mut recv = vec![0u8; total as usize];
        {
            let mut parts = PartitionMut::new(&mut recv[..], &counts[..], &displs[..]);
            comm.all_gather_varcount_into(bytes, &mut parts);
        }
        Ok(counts
            .iter()
            .zip(&displs)
            .map(|(&c, &d)| recv[d as usize..(d + c) as usize].to_vec())
            .collect())
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>, root: usize) -> Result<()> {
        check_root(root, self.world)?;
        let _w = self.watch("broadcast");
        let comm = self.comm();
        let root_process = comm.process_at_rank(root as i32);
        let mut len = bytes.len() as u64;
        root_process.broadcast_into(&mut len);
        bytes.resize(len as usize, 0);
        root_process.broadcast_into(&mut bytes[..]);
        Ok(())
    }

    fn barrier(&self) -> Result<()> {
        let _w = self.watch("barrier");
        self.comm().barrier();
        Ok(())
    }

    fn fail(&self, why: &str) {
        eprintln!("rank {}: {why}; aborting the job", self.rank);
        self.comm().abort(2);
    }
}
