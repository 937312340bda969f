//! [`validate`]: does a checkpoint hold exactly the tensors a model expects?

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;

use super::error::{CheckpointError, MAX_LISTED};
use super::tensors::CanonicalTensors;

/// Checks that `ck` holds every `(name, shape)` of `expected`, nothing else, with those
/// shapes. The error lists up to a few offenders per kind, each with the file it came from.
pub fn validate(
    ck: &impl CanonicalTensors,
    expected: &[(String, Vec<usize>)],
) -> Result<(), CheckpointError> {
    let source = |n: &str| ck.sources().get(n).cloned().unwrap_or_default();
    let want: HashMap<&str, &[usize]> = expected
        .iter()
        .map(|(n, s)| (n.as_str(), s.as_slice()))
        .collect();
    let mut missing: Vec<&str> = want
        .keys()
        .copied()
        .filter(|n| ck.shape_of(n).is_none())
        .collect();
    missing.sort_unstable();
    let mut unexpected = Vec::new();
    let mut mis_shaped = Vec::new();
    for name in ck.sorted_names() {
        let dims = ck.shape_of(name).unwrap_or(&[]);
        match want.get(name) {
            None => unexpected.push(name),
            Some(shape) if *shape != dims => mis_shaped.push((name, *shape, dims)),
            Some(_) => {}
        }
    }
    if missing.is_empty() && unexpected.is_empty() && mis_shaped.is_empty() {
        return Ok(());
    }

    let mut report = String::new();
    if !missing.is_empty() {
        let files: BTreeSet<String> = ck
            .sources()
            .values()
            .map(|p| p.display().to_string())
            .collect();
        let files: Vec<String> = files.into_iter().take(3).collect();
        let _ = write!(
            report,
            "\n  {} missing (looked in {}):",
            missing.len(),
            if files.is_empty() {
                "no files".to_string()
            } else {
                files.join(", ")
            }
        );
        for n in missing.iter().take(MAX_LISTED) {
            let _ = write!(report, "\n    `{n}`");
        }
        more(&mut report, missing.len());
    }
    if !unexpected.is_empty() {
        let _ = write!(report, "\n  {} unexpected:", unexpected.len());
        for n in unexpected.iter().take(MAX_LISTED) {
            let _ = write!(report, "\n    `{n}` from {}", source(n).display());
        }
        more(&mut report, unexpected.len());
    }
    if !mis_shaped.is_empty() {
        let _ = write!(report, "\n  {} with the wrong shape:", mis_shaped.len());
        for (n, want, got) in mis_shaped.iter().take(MAX_LISTED) {
            let _ = write!(
                report,
                "\n    `{n}` from {}: expected {want:?}, found {got:?}",
                source(n).display()
            );
        }
        more(&mut report, mis_shaped.len());
    }
    Err(CheckpointError::Validation {
        report,
        missing: missing.len(),
        unexpected: unexpected.len(),
        mis_shaped: mis_shaped.len(),
    })
}

fn more(report: &mut String, count: usize) {
    if count > MAX_LISTED {
        let _ = write!(report, "\n    … and {} more", count - MAX_LISTED);
    }
}
