//! Rule 4: one atomic write. Only the files in [`rules::ATOMIC_WRITE_HOME`] may call
//! `rename(` (`std::fs::rename`, `fs::rename`, a wrapper named `rename`) or `.persist(`
//! (tempfile) under any crate's `src/`. Comments, strings and `#[cfg(test)]` items are
//! ignored: a test's rename is no write path.

use std::fs;
use std::path::Path;

use crate::source::{self, Kind};
use crate::{rules, workspace};

/// The lines of `src` that call `rename(` or `.persist(`, with the call's name.
pub fn rename_calls(src: &str) -> Vec<(usize, &'static str)> {
    let toks = source::drop_cfg_test(source::tokenize(&source::strip(src)));
    let mut out = Vec::new();
    for (k, t) in toks.iter().enumerate() {
        let call = toks.get(k + 1).is_some_and(|t| t.is_punct('('));
        if !call {
            continue;
        }
        if t.is("rename") {
            out.push((t.line, "rename("));
        } else if t.is("persist") && k > 0 && toks[k - 1].kind == Kind::Punct('.') {
            out.push((t.line, ".persist("));
        }
    }
    out
}

/// Rule 4's violations: `path: rename( on lines 12, 40` for every file outside the home.
pub fn check(root: &Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for m in workspace::members(root)? {
        for path in workspace::rs_files(&m.dir.join("src")) {
            let rel = workspace::display(root, &path);
            if rules::ATOMIC_WRITE_HOME.contains(&rel.as_str()) {
                continue;
            }
            let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let calls = rename_calls(&text);
            if calls.is_empty() {
                continue;
            }
            let lines: Vec<String> = calls
                .iter()
                .map(|(line, what)| format!("{what} line {line}"))
                .collect();
            out.push(format!("{rel}: {}", lines.join(", ")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_not_comments_strings_or_tests() {
        let src = "// fs::rename(a, b)\nfn f() {\n    std::fs::rename(&tmp, out)?;\n    let s = \"rename(x)\";\n    file.persist(&p)?;\n    persist(x); renamed(y);\n}\n#[cfg(test)]\nmod tests { fn t() { fs::rename(a, b); } }\n";
        assert_eq!(rename_calls(src), [(3, "rename("), (5, ".persist(")]);
    }
}
