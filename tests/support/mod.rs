//! Test helpers shared by the end-to-end tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A path under `../shared/golden`.
pub fn golden(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/golden")).join(rel)
}

/// The committed tokenizer whose ids fit the tiny golden model (see
/// `examples/make_tiny_tokenizer.rs`). The directory argument is kept for call sites that
/// used to write it there.
pub fn tiny_tokenizer(_dir: &Path) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/tiny/tokenizer.model"
    ))
}
