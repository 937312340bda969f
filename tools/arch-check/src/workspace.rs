//! The workspace's member crates (from the root `Cargo.toml`) and their `.rs` files.

use std::fs;
use std::path::{Path, PathBuf};

use crate::rules;

/// One checked crate of the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Directory relative to the workspace root, `/`-separated; `.` for the root package.
    pub rel: String,
    /// Absolute directory.
    pub dir: PathBuf,
}

/// The root package (if the root manifest has `[package]`) and the `[workspace] members`,
/// minus [`rules::SKIP_MEMBERS`]. A trailing `/*` in a member expands to the subdirectories
/// that hold a `Cargo.toml`.
pub fn members(root: &Path) -> Result<Vec<Member>, String> {
    let manifest = root.join("Cargo.toml");
    let text = fs::read_to_string(&manifest)
        .map_err(|e| format!("reading {}: {e}", manifest.display()))?;
    let mut out = Vec::new();
    if text
        .lines()
        .any(|l| strip_toml_comment(l).trim() == "[package]")
    {
        out.push(Member {
            rel: ".".into(),
            dir: root.to_path_buf(),
        });
    }
    for m in parse_members(&text)? {
        let m = m.trim_end_matches('/').to_string();
        let rels = match m.strip_suffix("/*") {
            Some(parent) => {
                let mut subs: Vec<String> = fs::read_dir(root.join(parent))
                    .map_err(|e| format!("expanding member {m}: {e}"))?
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().join("Cargo.toml").is_file())
                    .map(|e| format!("{parent}/{}", e.file_name().to_string_lossy()))
                    .collect();
                subs.sort();
                subs
            }
            None => vec![m],
        };
        for rel in rels {
            if skipped(&rel) {
                continue;
            }
            let dir = root.join(&rel);
            if !dir.join("Cargo.toml").is_file() {
                return Err(format!("workspace member `{rel}` has no Cargo.toml"));
            }
            out.push(Member { rel, dir });
        }
    }
    Ok(out)
}

/// Whether a member is left alone per [`rules::SKIP_MEMBERS`].
pub fn skipped(rel: &str) -> bool {
    rules::SKIP_MEMBERS
        .iter()
        .any(|s| rel == *s || rel.starts_with(&format!("{s}/")))
}

/// The strings of the `members = [...]` array of the `[workspace]` table (a tiny parser for
/// that one array: double- or single-quoted strings, commas, newlines and `#` comments).
pub fn parse_members(toml: &str) -> Result<Vec<String>, String> {
    let mut in_workspace = false;
    let mut lines = toml.lines();
    while let Some(line) = lines.next() {
        let t = strip_toml_comment(line).trim();
        if t.starts_with('[') {
            in_workspace = t == "[workspace]";
            continue;
        }
        let Some(rest) = t.strip_prefix("members").filter(|_| in_workspace) else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix('=') else {
            continue;
        };
        let mut buf = rest.to_string();
        while !buf.contains(']') {
            let next = lines
                .next()
                .ok_or("unterminated `members` array in Cargo.toml")?;
            buf.push('\n');
            buf.push_str(strip_toml_comment(next));
        }
        return parse_string_array(&buf);
    }
    Ok(Vec::new())
}

fn parse_string_array(s: &str) -> Result<Vec<String>, String> {
    let s = s.trim();
    let inner = s
        .strip_prefix('[')
        .and_then(|s| s.split(']').next())
        .ok_or_else(|| format!("`members` is not an array: {s}"))?;
    let mut out = Vec::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                let item: String = chars.by_ref().take_while(|&d| d != c).collect();
                out.push(item);
            }
            ',' => {}
            c if c.is_whitespace() => {}
            c => return Err(format!("unexpected `{c}` in `members` array")),
        }
    }
    Ok(out)
}

/// `line` without a `#` comment (a `#` inside a quoted string is kept).
fn strip_toml_comment(line: &str) -> &str {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Every `.rs` file under `dir`, recursively, sorted; `target` and hidden directories are
/// skipped. A missing `dir` gives no files.
pub fn rs_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                walk(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// `path` relative to `root`, `/`-separated, for reports and for matching [`rules`] entries.
pub fn display(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .filter(|c| c != ".")
        .collect();
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_array_single_and_multi_line() {
        let toml = "[package]\nname = \"x\"\n\n[workspace]\nmembers = [\"a\", 'b/c']\n";
        assert_eq!(parse_members(toml).unwrap(), ["a", "b/c"]);
        let toml = "[workspace]\nresolver = \"2\"\nmembers = [\n  \"a\", # the first\n  \"b\",\n]\n[workspace.package]\nmembers = [\"no\"]\n";
        assert_eq!(parse_members(toml).unwrap(), ["a", "b"]);
    }

    #[test]
    fn members_only_in_the_workspace_table() {
        let toml = "[package]\nmembers = [\"no\"]\n[workspace]\nexclude = [\"fuzz\"]\n";
        assert!(parse_members(toml).unwrap().is_empty());
    }

    #[test]
    fn skip_list() {
        assert!(skipped("tools/arch-check"));
        assert!(skipped("fuzz"));
        assert!(!skipped("fuzzy"));
        assert!(!skipped("lora"));
    }
}
