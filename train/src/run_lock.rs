//! One training run per output directory: an advisory lock on `<out>/.lock`, held for the
//! run's life.
//!
//! The lock is the operating system's (`flock` on Unix, `LockFileEx` on Windows, through
//! [`std::fs::File::try_lock`]), tied to the open file: it goes away with the process however
//! that ends (a crash, SIGKILL, a node reboot), so a killed run never leaves a stale lock
//! behind, and the file itself may stay. It is advisory: it keeps out other `visualglm train`
//! runs, not other programs. On NFS, Linux emulates `flock` with byte-range locks, which the
//! server arbitrates between machines.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{Result, TrainError};

/// The lock file's name inside the output directory.
pub const LOCK_FILE: &str = ".lock";

/// The exclusive lock of one output directory; released when dropped (or the process ends).
#[derive(Debug)]
pub struct RunLock {
    dir: PathBuf,
    // Held open: closing it releases the lock.
    _file: File,
}

impl RunLock {
    /// Takes the lock of `dir` (which must exist) without waiting: [`TrainError::Busy`]
    /// names the directory when another run holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| TrainError::io(&path, "open the lock file", e))?;
        match file.try_lock() {
            Ok(()) => Ok(Self {
                dir: dir.to_path_buf(),
                _file: file,
            }),
            Err(TryLockError::WouldBlock) => Err(TrainError::Busy {
                dir: dir.to_path_buf(),
            }),
            Err(TryLockError::Error(e)) => Err(TrainError::io(&path, "lock", e)),
        }
    }

    /// The directory it locks.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        assert_eq!(first.dir(), dir.path());
        // A second open of the file is a second holder, even in the same process.
        let err = RunLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(err, TrainError::Busy { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(&dir.path().display().to_string()) && msg.contains("another training run"),
            "{msg}"
        );
        drop(first);
        let again = RunLock::acquire(dir.path()).unwrap();
        drop(again);
        // The file stays; it is the lock on it that counts.
        assert!(dir.path().join(LOCK_FILE).is_file());
        RunLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("missing");
        let err = RunLock::acquire(&gone).unwrap_err().to_string();
        assert!(err.contains(".lock"), "{err}");
    }
}
