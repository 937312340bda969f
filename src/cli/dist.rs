//! The collective a command runs on: the launcher's variables decide (see
//! `visualglm_dist::Launch`); a process started alone is a world of one.

use std::sync::Arc;
use std::time::Duration;

use visualglm_dist::{Collective, Launch, Launcher, Solo};

/// The collective of this process, as its launcher started it; a collective that waits longer
/// than `timeout` for the other ranks ends the job.
pub(super) fn from_launcher(timeout: Duration) -> anyhow::Result<Arc<dyn Collective>> {
    let launch = Launch::from_env()?;
    if launch.world_size == 1 {
        return Ok(Arc::new(Solo));
    }
    let who = format!(
        "rank {} of {} (started by {:?})",
        launch.rank, launch.world_size, launch.launcher
    );
    match launch.launcher {
        l if l.is_mpi() => mpi(timeout, &who),
        Launcher::Torchrun => anyhow::bail!(
            "{who}: torchrun launches need the NCCL backend, which is not built yet; start the \
             ranks with mpirun or srun"
        ),
        _ => anyhow::bail!("{who}: no backend for this launcher"),
    }
}

#[cfg(feature = "mpi")]
fn mpi(timeout: Duration, who: &str) -> anyhow::Result<Arc<dyn Collective>> {
    let comm = visualglm_dist::Mpi::init(timeout)?;
    tracing::info!("{who}: MPI rank {} of {}", comm.rank(), comm.world_size());
    Ok(Arc::new(comm))
}

#[cfg(not(feature = "mpi"))]
fn mpi(_: Duration, who: &str) -> anyhow::Result<Arc<dyn Collective>> {
    anyhow::bail!(
        "{who}, but this visualglm was built without MPI: build it with `cargo build --release \
         --features mpi` (needs Open MPI's libopenmpi-dev and libclang-dev)"
    )
}
