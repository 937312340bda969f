//! Checks the workspace's architecture rules, std only; the rules' configuration (crate names,
//! accepted exceptions) is data in [`rules`].
//!
//! 1. No import cycle between the files of a crate ([`cycles`], over [`modules`] and [`scan`]).
//! 2. No import cycle between crates: Cargo already rejects those, so no check.
//! 3. No source file over 600 lines without a reason in its header ([`sizes`]).
//! 4. One atomic write: one home for `rename(`/`.persist(` ([`atomic`]).
//! 5. The core library's `cargo tree` has no server/CLI/plot crates ([`deps`]).
//! 6. The layer crate has no VisualGLM names ([`names`]).
//!
//! Run as `cargo test -p visualglm-arch-check` (one test per rule) or
//! `cargo run -p visualglm-arch-check` (a report of every violation).

#![warn(missing_docs)]

pub mod atomic;
pub mod cycles;
pub mod deps;
pub mod modules;
pub mod names;
pub mod rules;
pub mod scan;
pub mod sizes;
pub mod source;
pub mod workspace;

#[cfg(test)]
mod testutil;

use std::path::{Path, PathBuf};

/// The workspace root: two levels above this crate (`tools/arch-check`), canonicalized.
pub fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// One rule the checker enforces.
#[derive(Debug, Clone, Copy)]
pub struct Check {
    /// A short name.
    pub name: &'static str,
    /// The rule as the architecture issue states it.
    pub rule: &'static str,
    /// Its violations, or why the check could not run.
    pub run: fn(&Path) -> Result<Vec<String>, String>,
}

/// Every check, in the order.
pub const CHECKS: &[Check] = &[
    Check {
        name: "import-cycles",
        rule: "no import cycle between the files of a crate (exceptions listed in rules.rs)",
        run: cycles::check,
    },
    Check {
        name: "file-sizes",
        rule: "no source file over 600 lines without a reason in its header",
        run: sizes::check,
    },
    Check {
        name: "one-atomic-write",
        rule: "only the atomic-write home calls rename( / .persist(",
        run: atomic::check,
    },
    Check {
        name: "core-dependencies",
        rule: "the core library's cargo tree shows no server/CLI/plot crates",
        run: deps::check,
    },
    Check {
        name: "layer-names",
        rule: "the layer crate has no VisualGLM names",
        run: names::check,
    },
];

/// `violations` as an indented list, for assertion messages and the report.
pub fn format_list(violations: &[String]) -> String {
    violations
        .iter()
        .map(|v| format!("  - {}\n", v.replace('\n', "\n    ")))
        .collect()
}
