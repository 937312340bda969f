//! The crate's error type.

/// What can go wrong in a collective or while reading the launcher's environment.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// The launcher's variables are inconsistent, or name a backend this build lacks.
    #[error("launch: {0}")]
    Launch(String),
    /// A collective called wrongly (lengths differ across ranks, a root outside the world).
    #[error("collective: {0}")]
    Usage(String),
    /// A rank stopped: it left the group, failed, or did not arrive within the timeout.
    #[error("rank failure: {0}")]
    RankFailed(String),
    /// The backend (MPI, NCCL) reported an error.
    #[error("{backend}: {message}")]
    Backend {
        /// The backend's name.
        backend: &'static str,
        /// What it reported.
        message: String,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, DistError>;
