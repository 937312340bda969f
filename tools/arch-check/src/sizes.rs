//! Rule 3: no source file over [`rules::MAX_LINES`] lines without a reason in its header.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{rules, workspace};

/// Whether one of the first [`rules::SIZE_MARKER_WINDOW`] lines is a comment holding
/// [`rules::SIZE_MARKER`] (any case) followed by a reason.
pub fn has_reason(text: &str) -> bool {
    text.lines().take(rules::SIZE_MARKER_WINDOW).any(|line| {
        let t = line.trim_start();
        let comment = t.starts_with("//") || t.starts_with("/*") || t.starts_with('*');
        let lower = t.to_lowercase();
        comment
            && lower.find(rules::SIZE_MARKER).is_some_and(|at| {
                let reason = &lower[at + rules::SIZE_MARKER.len()..];
                !reason
                    .trim_matches(|c: char| c.is_whitespace() || c == '*' || c == '/')
                    .is_empty()
            })
    })
}

/// The `.rs` files rule 3 measures: [`rules::SIZE_DIRS`] and `build.rs` of every member.
pub fn files(root: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for m in workspace::members(root)? {
        for dir in rules::SIZE_DIRS {
            out.extend(workspace::rs_files(&m.dir.join(dir)));
        }
        let build = m.dir.join("build.rs");
        if build.is_file() {
            out.push(build);
        }
    }
    Ok(out)
}

/// Rule 3's violations: `path: N lines, no "over 600 lines: <reason>" comment in the first
/// 15 lines`.
pub fn check(root: &Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for path in files(root)? {
        let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let lines = text.lines().count();
        if lines > rules::MAX_LINES && !has_reason(&text) {
            out.push(format!(
                "{}: {lines} lines, no `{}` comment with a reason in its first {} lines",
                workspace::display(root, &path),
                rules::SIZE_MARKER,
                rules::SIZE_MARKER_WINDOW
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempCrate;

    #[test]
    fn the_marker() {
        assert!(has_reason(
            "//! Tokenizer rules.\n//!\n//! Over 600 lines: the CoreNLP rule table is one unit.\n"
        ));
        assert!(has_reason("// OVER 600 LINES: one table\nfn f() {}"));
        assert!(!has_reason("//! Over 600 lines:\n"), "a reason must follow");
        assert!(
            !has_reason("const S: &str = \"over 600 lines: no\";\n"),
            "not a comment"
        );
        let late = format!("{}// over 600 lines: too late\n", "\n".repeat(15));
        assert!(!has_reason(&late));
    }

    #[test]
    fn long_files_need_the_marker() {
        let body = "fn f() {}\n".repeat(601);
        let ok = format!("//! Over 600 lines: one unit.\n{body}");
        let short = "fn f() {}\n".repeat(600);
        let t = TempCrate::new(&[
            ("Cargo.toml", "[package]\nname = \"x\"\n"),
            ("src/lib.rs", &body),
            ("src/ok.rs", &ok),
            ("src/short.rs", &short),
            ("tests/long.rs", &body),
            ("target/debug/gen.rs", &body),
        ]);
        let v = check(t.root()).unwrap();
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[0].starts_with("src/lib.rs: 601 lines"), "{v:?}");
        assert!(v[1].starts_with("tests/long.rs: 601 lines"), "{v:?}");
    }
}
