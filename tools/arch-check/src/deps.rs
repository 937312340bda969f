//! Rule 5: the core library ([`rules::CORE_PACKAGE`]) pulls in no server, CLI, progress-bar,
//! plotting or log-subscriber crate ([`rules::CORE_DENIED_CRATES`]) among its normal
//! dependencies, as `cargo tree -e normal --locked --offline` shows them.

use std::path::Path;
use std::process::Command;

use crate::rules;

/// One package line of `cargo tree --prefix depth`: its depth and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeLine {
    /// 0 for the root package.
    pub depth: usize,
    /// The crate name.
    pub name: String,
}

/// Parses `cargo tree --prefix depth` output (`1axum v0.8.9`, `2bytes v1.12.2 (*)`).
pub fn parse_tree(out: &str) -> Vec<TreeLine> {
    out.lines()
        .filter_map(|l| {
            let digits = l.len() - l.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let depth = l[..digits].parse().ok()?;
            let name = l[digits..].split_whitespace().next()?.to_string();
            Some(TreeLine { depth, name })
        })
        .collect()
}

/// For each denied crate in `tree` (once each, first occurrence), the dependency chain that
/// reaches it from the root, e.g. `visualglm -> indicatif`.
pub fn denied_chains(tree: &[TreeLine], denied: &[&str]) -> Vec<String> {
    let mut path: Vec<&str> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for t in tree {
        path.truncate(t.depth);
        path.push(&t.name);
        if denied.contains(&t.name.as_str()) && !seen.contains(&t.name.as_str()) {
            seen.push(&t.name);
            out.push(path.join(" -> "));
        }
    }
    out
}

/// Runs `cargo tree` for the core package from the workspace root (with `$CARGO`, which
/// Cargo sets for tests and `cargo run`, else `cargo`).
pub fn cargo_tree(root: &Path) -> Result<String, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .current_dir(root)
        .args(["tree", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .args([
            "-p",
            rules::CORE_PACKAGE,
            "-e",
            "normal",
            "--prefix",
            "depth",
        ])
        .args(["--locked", "--offline", "--color", "never"])
        .output()
        .map_err(|e| format!("running {}: {e}", cargo.to_string_lossy()))?;
    if !out.status.success() {
        return Err(format!(
            "`cargo tree -p {}` failed ({}):\n{}",
            rules::CORE_PACKAGE,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Rule 5's violations: one chain per denied crate found.
pub fn check(root: &Path) -> Result<Vec<String>, String> {
    let tree = parse_tree(&cargo_tree(root)?);
    Ok(denied_chains(&tree, rules::CORE_DENIED_CRATES)
        .into_iter()
        .map(|chain| {
            let name = chain.rsplit(" -> ").next().unwrap_or_default();
            format!("`{name}` reached: {chain}")
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_to_denied_crates() {
        let out = "0core v0.1.0 (/w)\n1anyhow v1.0.0\n1server v0.1.0 (/w/server)\n2axum v0.8.9\n3tokio v1.0.0\n2tokio v1.0.0 (*)\n1clap v4.0.0\n";
        let tree = parse_tree(out);
        assert_eq!(
            tree[3],
            TreeLine {
                depth: 2,
                name: "axum".into()
            }
        );
        assert_eq!(
            denied_chains(&tree, &["axum", "tokio", "clap", "hyper"]),
            [
                "core -> server -> axum",
                "core -> server -> axum -> tokio",
                "core -> clap"
            ]
        );
    }
}
