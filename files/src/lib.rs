//! Atomic file writes and directory publishing: the workspace's one place that renames files
//! into place (outputs, checkpoints, adapters, GGUF, tokenizer files, plots, reports).
//!
//! A write goes to a hidden temporary file beside the destination
//! (`.<name>.<pid>.<counter>.tmp`, created exclusively, so concurrent writers never share one),
//! is flushed and fsynced, then renamed over the destination; on Unix the directory is fsynced
//! too. Readers see the old file or the complete new one, never a torn one. On any error
//! (including a panic in the writer) the temporary file is removed and the destination is left
//! as it was; the one exception is a failed fsync of the directory, reported after the new file
//! is already in place.

#![warn(missing_docs)]

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Buffer size of the writer handed to the closures (large writes bypass it).
const BUFFER: usize = 1 << 20;

/// Longest part of the destination's name kept in a temporary name (file names are limited to
/// 255 bytes on most file systems).
const MAX_NAME_CHARS: usize = 100;

/// A file operation that failed: on which path, what was being done, and the I/O error.
#[derive(Debug)]
pub struct Error {
    /// The file or directory concerned; for a write, the destination (not the temporary file).
    pub path: PathBuf,
    /// What was being done: `create`, `write`, `fsync`, `rename`, `fsync directory`, `remove`.
    pub op: &'static str,
    /// The underlying I/O error.
    pub source: io::Error,
}

impl Error {
    fn new(path: &Path, op: &'static str, source: io::Error) -> Self {
        Self {
            path: path.to_path_buf(),
            op,
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.path.display(), self.op, self.source)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl From<Error> for io::Error {
    /// Keeps the source's kind; the message names the path and the operation.
    fn from(e: Error) -> Self {
        io::Error::new(e.source.kind(), e)
    }
}

/// Writes `path` atomically with what `write` produces (see the crate docs).
pub fn write_atomic<F>(path: impl AsRef<Path>, write: F) -> Result<(), Error>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    let path = path.as_ref();
    write_atomic_with(path, |w| {
        write(w).map_err(|source| Error::new(path, "write", source))
    })
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic_bytes(path: impl AsRef<Path>, bytes: &[u8]) -> Result<(), Error> {
    write_atomic(path, |w| w.write_all(bytes))
}

/// [`write_atomic`] for a writer with its own error type and result (it maps its own I/O
/// errors): the destination is replaced only when `write` returns `Ok`, whose value is returned.
pub fn write_atomic_with<T, E, F>(path: impl AsRef<Path>, write: F) -> Result<T, E>
where
    F: FnOnce(&mut dyn Write) -> Result<T, E>,
    E: From<Error>,
{
    let path = path.as_ref();
    let (tmp, file) = create_temp(path)?;
    let tmp = TempFile(Some(tmp));
    let mut w = BufWriter::with_capacity(BUFFER, file);
    let value = write(&mut w)?;
    let file = w
        .into_inner()
        .map_err(|e| Error::new(path, "write", e.into_error()))?;
    file.sync_all()
        .map_err(|source| Error::new(path, "fsync", source))?;
    drop(file);
    fs::rename(tmp.path(), path).map_err(|source| Error::new(path, "rename", source))?;
    tmp.keep();
    sync_dir(parent(path))?;
    Ok(value)
}

/// Publishes the finished directory `staging` as `dest` (a sibling): fsyncs `staging`, renames
/// it to `dest` and fsyncs their parent. An existing `dest` is first renamed aside to
/// `<dest>.old` (a stale one is removed first) and removed once `staging` is in place, so
/// `dest` is only missing between two renames and is never a mix of old and new files.
pub fn publish_dir(staging: impl AsRef<Path>, dest: impl AsRef<Path>) -> Result<(), Error> {
    let (staging, dest) = (staging.as_ref(), dest.as_ref());
    sync_dir(staging)?;
    let rename = |from: &Path, to: &Path| {
        fs::rename(from, to).map_err(|source| Error::new(from, "rename", source))
    };
    if dest.exists() {
        let mut name = dest.file_name().unwrap_or_default().to_os_string();
        name.push(".old");
        let old = dest.with_file_name(name);
        if old.exists() {
            remove_dir(&old)?;
        }
        rename(dest, &old)?;
        rename(staging, dest)?;
        remove_dir(&old)?;
    } else {
        rename(staging, dest)?;
    }
    sync_dir(parent(dest))
}

fn remove_dir(dir: &Path) -> Result<(), Error> {
    fs::remove_dir_all(dir).map_err(|source| Error::new(dir, "remove", source))
}

/// The directory holding `path` (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes renames in `dir` durable: fsyncs the directory on Unix (elsewhere directories cannot
/// be opened for that, and it is skipped).
fn sync_dir(dir: &Path) -> Result<(), Error> {
    if cfg!(unix) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| Error::new(dir, "fsync directory", source))?;
    }
    Ok(())
}

/// Creates a new, empty, hidden temporary file beside `path`.
fn create_temp(path: &Path) -> Result<(PathBuf, File), Error> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        let source = io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name");
        Error::new(path, "create", source)
    })?;
    let name: String = name
        .to_string_lossy()
        .chars()
        .take(MAX_NAME_CHARS)
        .collect();
    let pid = std::process::id();
    let mut tries = 0;
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = parent(path).join(format!(".{name}.{pid}.{n}.tmp"));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            // A leftover of a crashed process that had the same id: take the next name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 100 => tries += 1,
            Err(source) => return Err(Error::new(path, "create", source)),
        }
    }
}

/// A temporary file that is removed when dropped, unless kept.
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn path(&self) -> &Path {
        self.0
            .as_deref()
            .expect("a temporary file that is not kept")
    }

    /// It was renamed into place: nothing to remove.
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}
