//! The project's architecture rules as data: edit this file (and only this file) when crates
//! move, when a cycle gets an accepted reason, or when the atomic-write home is designated.
//!
//! Paths are relative to the workspace root and `/`-separated; the root package is `.`.

/// Workspace members the checker leaves alone: a member is skipped when it equals an entry or
/// lies under it (`tools/arch-check` lies under `tools`).
pub const SKIP_MEMBERS: &[&str] = &["tools", "fuzz"];

/// An accepted file-level import cycle: the exact set of files of one strongly connected
/// component, and why the cycle is fine.
#[derive(Debug, Clone, Copy)]
pub struct CycleException {
    /// Every file of the component (workspace-relative); the component must match exactly, so
    /// a cycle that grows is reviewed again.
    pub files: &'static [&'static str],
    /// Why this cycle is acceptable.
    pub reason: &'static str,
}

/// Rule 1: accepted file-level import cycles. None are accepted today.
pub const CYCLE_EXCEPTIONS: &[CycleException] = &[];

/// Rule 3: a source file may have at most this many lines without a stated reason.
pub const MAX_LINES: usize = 600;

/// Rule 3: the phrase (matched case-insensitively, in a comment line) that introduces the reason
/// a file is longer, e.g. `//! Over 600 lines: the CoreNLP rule table is one unit.`
pub const SIZE_MARKER: &str = "over 600 lines:";

/// Rule 3: the marker must appear within this many lines from the top of the file.
pub const SIZE_MARKER_WINDOW: usize = 15;

/// Rule 3: the directories of each member crate whose `.rs` files are measured (recursively),
/// besides the crate's `build.rs`.
pub const SIZE_DIRS: &[&str] = &["src", "tests", "examples", "benches"];

/// Rule 4: the only files under any crate's `src/` allowed to call `rename(` or `.persist(`:
/// the `visualglm-files` crate (atomic file writes, checkpoint directory publishing).
pub const ATOMIC_WRITE_HOME: &[&str] = &["files/src/lib.rs"];

/// Rule 5: the package (its Cargo name) that is the core library.
pub const CORE_PACKAGE: &str = "visualglm";

/// Rule 5: crates that must not appear among the core package's normal dependencies, direct or
/// transitive: servers, CLIs, progress bars, plotting, log subscribers.
pub const CORE_DENIED_CRATES: &[&str] = &[
    "axum",
    "tokio",
    "hyper",
    "clap",
    "plotters",
    "indicatif",
    "tracing-subscriber",
];

/// Rule 6: the directory of the generic layer crate.
pub const LAYER_CRATE_DIR: &str = "nn";

/// Rule 6: words removed from each line before the names are matched: the workspace's own
/// test-helper crate (`visualglm_testing`, NaN-aware comparisons) and the layer crate's own
/// package name (`visualglm-nn`, in test commands) are named after the project,
/// not after a model part, and the layer crate's tests use it; so is the environment variable
/// that overrides the kernels' instruction set (`VISUALGLM_CPU`, read in `nn/src/kernels/isa.rs`).
pub const LAYER_ALLOWED_WORDS: &[&str] = &["visualglm_testing", "visualglm-nn", "VISUALGLM_CPU"];
/// Rule 6: names that tie code to VisualGLM and must not appear anywhere in the layer crate's
/// `src/` (code, comments or strings). Matched case-insensitively, as a whole word or a
/// `snake_case`/`CamelCase` segment: `sat` matches `sat_names` and `SAT` but not `saturate`.
pub const LAYER_DENIED_NAMES: &[&str] = &[
    "visualglm",
    "chatglm",
    "qformer",
    "query_key_value",
    "dense_h_to_4h",
    "dense_4h_to_h",
    "glm_proj",
    "ln_vision",
    "eva_clip",
    "transformer.layers",
    "sat",
];
