//! Rank and world size from the launcher that started the process, by its own conventions.
//!
//! * Open MPI's `mpirun`: `OMPI_COMM_WORLD_RANK`, `OMPI_COMM_WORLD_SIZE`,
//!   `OMPI_COMM_WORLD_LOCAL_RANK`;
//! * MPICH / Intel MPI (PMI): `PMI_RANK`, `PMI_SIZE`;
//! * Slurm's `srun`: `SLURM_PROCID`, `SLURM_STEP_NUM_TASKS`, `SLURM_LOCALID`, trusted only inside
//!   a job step (`SLURM_STEP_ID` set): a bare `sbatch` script also has `SLURM_PROCID=0` and
//!   `SLURM_NTASKS`, and reading those there would wait forever for ranks that never start;
//! * torchrun: `RANK`, `WORLD_SIZE`, `LOCAL_RANK` (with `MASTER_ADDR`/`MASTER_PORT`, which
//!   torchrun's own store serves: never bound here).
//!
//! None of these set, the process is a world of one.

use crate::error::{DistError, Result};

/// The launcher whose variables gave the rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// Not launched as a group.
    None,
    /// Open MPI's `mpirun` / `mpiexec` (or `srun` with Open MPI's PMIx plugin).
    OpenMpi,
    /// An MPICH-family launcher (PMI).
    Pmi,
    /// A Slurm job step started by `srun`.
    Slurm,
    /// PyTorch's `torchrun`.
    Torchrun,
}

impl Launcher {
    /// Whether an MPI library can join this launch (`MPI_Init` finds its peers).
    pub fn is_mpi(self) -> bool {
        matches!(self, Launcher::OpenMpi | Launcher::Pmi | Launcher::Slurm)
    }
}

/// Where this process stands in the job, as the launcher says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    /// Who started the process.
    pub launcher: Launcher,
    /// This process's rank, `0..world_size`.
    pub rank: usize,
    /// The number of processes.
    pub world_size: usize,
    /// The rank among the processes on this machine (the GPU to use).
    pub local_rank: usize,
}

impl Launch {
    /// A world of one.
    pub fn solo() -> Self {
        Launch {
            launcher: Launcher::None,
            rank: 0,
            world_size: 1,
            local_rank: 0,
        }
    }

    /// Reads the process's environment.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// Reads the launchers' variables through `var` (tests pass a map). Checked in the order
    /// Open MPI, PMI, Slurm step, torchrun; the first launcher whose variables are set decides.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let candidates: [(Launcher, &str, &str, Option<&str>); 4] = [
            (
                Launcher::OpenMpi,
                "OMPI_COMM_WORLD_RANK",
                "OMPI_COMM_WORLD_SIZE",
                Some("OMPI_COMM_WORLD_LOCAL_RANK"),
            ),
            (Launcher::Pmi, "PMI_RANK", "PMI_SIZE", None),
            (
                Launcher::Slurm,
                "SLURM_PROCID",
                "SLURM_STEP_NUM_TASKS",
                Some("SLURM_LOCALID"),
            ),
            (Launcher::Torchrun, "RANK", "WORLD_SIZE", Some("LOCAL_RANK")),
        ];
        for (launcher, rank_key, size_key, local_key) in candidates {
            if launcher == Launcher::Slurm && var("SLURM_STEP_ID").is_none() {
                continue;
            }
            let (Some(rank), Some(size)) = (var(rank_key), var(size_key)) else {
                continue;
            };
            let number = |key: &str, value: &str| {
                value.trim().parse::<usize>().map_err(|_| {
                    DistError::Launch(format!("{key}={value:?} is not a non-negative integer"))
                })
            };
            let rank = number(rank_key, &rank)?;
            let world_size = number(size_key, &size)?;
            if world_size == 0 || rank >= world_size {
                return Err(DistError::Launch(format!(
                    "{rank_key}={rank} is not a rank of {size_key}={world_size}"
                )));
            }
            let local_rank = match local_key.and_then(|k| var(k).map(|v| (k, v))) {
                Some((k, v)) => number(k, &v)?,
                None => 0,
            };
            return Ok(Launch {
                launcher,
                rank,
                world_size,
                local_rank,
            });
        }
        Ok(Self::solo())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn launch(vars: &[(&str, &str)]) -> Result<Launch> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Launch::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn each_launcher_is_read_by_its_own_variables() -> Result<()> {
        assert_eq!(launch(&[])?, Launch::solo());
        let ompi = launch(&[
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
        ])?;
        assert_eq!(
            (ompi.launcher, ompi.rank, ompi.world_size),
            (Launcher::OpenMpi, 1, 2)
        );
        assert_eq!(ompi.local_rank, 1);
        let pmi = launch(&[("PMI_RANK", "2"), ("PMI_SIZE", "4")])?;
        assert_eq!(
            (pmi.launcher, pmi.rank, pmi.local_rank),
            (Launcher::Pmi, 2, 0)
        );
        let torch = launch(&[("RANK", "3"), ("WORLD_SIZE", "8"), ("LOCAL_RANK", "3")])?;
        assert_eq!((torch.launcher, torch.world_size), (Launcher::Torchrun, 8));
        assert!(!torch.launcher.is_mpi());
        Ok(())
    }

    #[test]
    fn slurm_is_trusted_only_inside_a_job_step() -> Result<()> {
        // A bare sbatch script: SLURM_PROCID and SLURM_NTASKS but no step.
        let batch = launch(&[("SLURM_PROCID", "0"), ("SLURM_NTASKS", "4")])?;
        assert_eq!(batch, Launch::solo());
        let step = launch(&[
            ("SLURM_STEP_ID", "0"),
            ("SLURM_PROCID", "3"),
            ("SLURM_STEP_NUM_TASKS", "4"),
            ("SLURM_LOCALID", "1"),
        ])?;
        assert_eq!(
            (step.launcher, step.rank, step.world_size),
            (Launcher::Slurm, 3, 4)
        );
        // mpirun inside an allocation: Open MPI's variables win.
        let both = launch(&[
            ("SLURM_STEP_ID", "0"),
            ("SLURM_PROCID", "0"),
            ("SLURM_STEP_NUM_TASKS", "1"),
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
        ])?;
        assert_eq!((both.launcher, both.rank), (Launcher::OpenMpi, 1));
        Ok(())
    }

    #[test]
    fn inconsistent_variables_are_errors_that_name_them() {
        for vars in [
            &[("RANK", "2"), ("WORLD_SIZE", "2")][..],
            &[("RANK", "x"), ("WORLD_SIZE", "2")],
            &[("PMI_RANK", "0"), ("PMI_SIZE", "0")],
        ] {
            let err = launch(vars).unwrap_err().to_string();
            assert!(err.contains(vars[0].0) || err.contains(vars[1].0), "{err}");
        }
    }
}
