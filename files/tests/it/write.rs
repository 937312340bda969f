//! `write_atomic`, `write_atomic_bytes`, `write_atomic_with`.

use std::fs;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use visualglm_files::{write_atomic, write_atomic_bytes, write_atomic_with, Error};

use crate::names;

#[test]
fn writes_and_replaces_leaving_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.json");
    write_atomic_bytes(&path, b"one").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"one");
    write_atomic(&path, |w| {
        w.write_all(b"tw")?;
        w.write_all(b"o")
    })
    .unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"two");
    write_atomic_bytes(&path, b"").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"");
    assert_eq!(names(dir.path()), ["out.json"]);
}

#[test]
fn the_temporary_file_is_hidden_beside_the_destination() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    write_atomic(&path, |w| {
        let seen = names(dir.path());
        assert_eq!(seen.len(), 1, "{seen:?}");
        let pid = std::process::id();
        assert!(
            seen[0].starts_with(&format!(".model.gguf.{pid}.")),
            "{seen:?}"
        );
        assert!(seen[0].ends_with(".tmp"), "{seen:?}");
        w.write_all(b"x")
    })
    .unwrap();
    assert_eq!(names(dir.path()), ["model.gguf"]);
}

#[test]
fn a_failing_writer_leaves_the_old_file_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.txt");
    write_atomic_bytes(&path, b"old").unwrap();
    let err = write_atomic(&path, |w| {
        w.write_all(&[7u8; 3 << 20])?;
        Err(io::Error::other("boom"))
    })
    .unwrap_err();
    assert_eq!(err.path, path);
    assert_eq!(err.op, "write");
    assert_eq!(err.source.to_string(), "boom");
    assert_eq!(fs::read(&path).unwrap(), b"old");
    assert_eq!(names(dir.path()), ["out.txt"]);
}

#[derive(Debug)]
enum MyError {
    Files(Error),
    Refused(&'static str),
}

impl From<Error> for MyError {
    fn from(e: Error) -> Self {
        MyError::Files(e)
    }
}

#[test]
fn write_atomic_with_returns_the_value_or_the_callers_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.bin");
    let n = write_atomic_with(&path, |w| -> Result<usize, MyError> {
        w.write_all(b"abc").map_err(|e| {
            MyError::Files(Error {
                path: "w.bin".into(),
                op: "write",
                source: e,
            })
        })?;
        Ok(3)
    })
    .unwrap();
    assert_eq!(n, 3);
    let err = write_atomic_with(&path, |w| -> Result<(), MyError> {
        w.write_all(b"new").unwrap();
        Err(MyError::Refused("no"))
    })
    .unwrap_err();
    assert!(matches!(err, MyError::Refused("no")));
    assert_eq!(fs::read(&path).unwrap(), b"abc");
    let missing = dir.path().join("no/such/dir/w.bin");
    let err = write_atomic_with(&missing, |_| -> Result<(), MyError> { Ok(()) }).unwrap_err();
    assert!(
        matches!(err, MyError::Files(Error { op: "create", .. })),
        "{err:?}"
    );
    assert_eq!(names(dir.path()), ["w.bin"]);
}

#[test]
fn a_panicking_writer_leaves_the_old_file_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.txt");
    write_atomic_bytes(&path, b"old").unwrap();
    let result = std::panic::catch_unwind(|| {
        let _ = write_atomic(&path, |w| {
            w.write_all(b"half")?;
            panic!("writer panicked");
        });
    });
    assert!(result.is_err());
    assert_eq!(fs::read(&path).unwrap(), b"old");
    assert_eq!(names(dir.path()), ["out.txt"]);
}

#[test]
fn errors_name_the_destination_and_keep_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/out.json");
    let err = write_atomic_bytes(&missing, b"x").unwrap_err();
    assert_eq!((err.path.as_path(), err.op), (missing.as_path(), "create"));
    assert_eq!(err.source.kind(), io::ErrorKind::NotFound);
    let text = err.to_string();
    assert!(
        text.contains("no/such/dir/out.json") && text.contains("create"),
        "{text}"
    );
    assert!(std::error::Error::source(&err).is_some());
    let io: io::Error = err.into();
    assert_eq!(io.kind(), io::ErrorKind::NotFound);
    assert!(io.to_string().contains("no/such/dir"), "{io}");
    assert!(names(dir.path()).is_empty());

    // The rename fails (a non-empty directory is in the way): it is untouched, and the
    // temporary file is gone.
    let blocked = dir.path().join("blocked");
    fs::create_dir(&blocked).unwrap();
    fs::write(blocked.join("keep"), b"k").unwrap();
    let err = write_atomic_bytes(&blocked, b"x").unwrap_err();
    assert_eq!((err.path.as_path(), err.op), (blocked.as_path(), "rename"));
    assert_eq!(names(&blocked), ["keep"]);
    assert_eq!(names(dir.path()), ["blocked"]);

    let err = write_atomic_bytes(dir.path().join(".."), b"x").unwrap_err();
    assert_eq!(err.source.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn concurrent_writers_never_produce_a_torn_file() {
    const LEN: usize = 256 << 10;
    let dir = tempfile::tempdir().unwrap();
    let path = Arc::new(dir.path().join("shared.bin"));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (path, done) = (Arc::clone(&path), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut reads = 0;
            while !done.load(Ordering::Acquire) {
                let Ok(bytes) = fs::read(&*path) else {
                    continue;
                };
                assert_eq!(bytes.len(), LEN, "a torn file");
                assert!(bytes.iter().all(|&b| b == bytes[0]), "a mixed file");
                reads += 1;
            }
            reads
        })
    };
    let writers: Vec<_> = (0..8u8)
        .map(|t| {
            let path = Arc::clone(&path);
            std::thread::spawn(move || {
                for _ in 0..20 {
                    write_atomic(&*path, |w| {
                        // Several writes, so a shared temporary file would interleave.
                        for _ in 0..4 {
                            w.write_all(&[t + 1; LEN / 4])?;
                        }
                        Ok(())
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Release);
    reader.join().unwrap();
    let bytes = fs::read(&*path).unwrap();
    assert_eq!(bytes.len(), LEN);
    assert!((1..=8).contains(&bytes[0]));
    assert_eq!(names(dir.path()), ["shared.bin"]);
}
