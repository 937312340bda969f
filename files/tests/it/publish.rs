//! `publish_dir`: a finished directory replaces its destination.

use std::fs;
use std::path::Path;

use visualglm_files::publish_dir;

use crate::names;

fn staged(root: &Path, name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = root.join(name);
    fs::create_dir(&dir).unwrap();
    for (f, text) in files {
        fs::write(dir.join(f), text).unwrap();
    }
    dir
}

#[test]
fn publishes_a_new_directory() {
    let root = tempfile::tempdir().unwrap();
    let tmp = staged(root.path(), "step-1.tmp", &[("a", "1"), ("b", "2")]);
    let dest = root.path().join("step-1");
    publish_dir(&tmp, &dest).unwrap();
    assert_eq!(names(root.path()), ["step-1"]);
    assert_eq!(names(&dest), ["a", "b"]);
    assert_eq!(fs::read_to_string(dest.join("a")).unwrap(), "1");
}

#[test]
fn replaces_an_existing_directory_whole() {
    let root = tempfile::tempdir().unwrap();
    let dest = staged(root.path(), "step-4", &[("a", "old"), ("only-old", "x")]);
    // A stale `.old` from an interrupted earlier replace is removed first.
    staged(root.path(), "step-4.old", &[("junk", "j")]);
    let tmp = staged(root.path(), "step-4.tmp", &[("a", "new")]);
    publish_dir(&tmp, &dest).unwrap();
    assert_eq!(names(root.path()), ["step-4"]);
    assert_eq!(names(&dest), ["a"]);
    assert_eq!(fs::read_to_string(dest.join("a")).unwrap(), "new");
}

#[test]
fn a_missing_staging_directory_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let dest = staged(root.path(), "step-2", &[("a", "kept")]);
    let err = publish_dir(root.path().join("step-2.tmp"), &dest).unwrap_err();
    assert_eq!(err.path, root.path().join("step-2.tmp"));
    assert_eq!(err.source.kind(), std::io::ErrorKind::NotFound);
    assert_eq!(names(root.path()), ["step-2"]);
    assert_eq!(fs::read_to_string(dest.join("a")).unwrap(), "kept");
}
