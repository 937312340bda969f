//! The file-level module graph of one crate target (a library or a binary).
//!
//! Files are found the way rustc finds them: from the target's root (`src/lib.rs`,
//! `src/main.rs`, `src/bin/*.rs`) through its `mod x;` declarations (`x.rs` or `x/mod.rs`,
//! inline `mod a { mod b; }`, `#[path = "..."]`). Items gated by `#[cfg(test)]` are ignored,
//! module files included.
//!
//! An edge `a.rs -> b.rs` means `a.rs` names a path that resolves into `b.rs`: `use` trees
//! (grouped ones included), and `crate::`, `self::`, `super::` and child-module paths anywhere
//! in code (comments and string literals are blanked first). A path resolves to the longest
//! prefix that is a module, so `crate::a::Item` is an edge to `a`'s file. Not edges: `mod x;`
//! declarations, references to the file itself, and references that resolve to the crate root
//! file (re-exports in `lib.rs` would otherwise make every file part of one cycle). An edge
//! whose name is only imported by a `use` in the target file (often a re-export) carries a note
//! saying so: importing from the defining module instead often breaks such a cycle.
//! Limitation: targets with a custom `path` in `Cargo.toml` are not read.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

use crate::scan::{scan, ModDecl, RawRef, Scan};

/// One file of a [`ModuleGraph`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileNode {
    /// Canonical path.
    pub path: PathBuf,
    /// Its module path; empty for the crate root.
    pub module: Vec<String>,
}

/// One edge of a [`ModuleGraph`], with the first reference that makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// The referring file (index into [`ModuleGraph::files`]).
    pub from: usize,
    /// The referred-to file.
    pub to: usize,
    /// The line of the first reference.
    pub line: usize,
    /// That reference as written (`::`-joined).
    pub via: String,
    /// Set when the referenced name is not defined in the target file but imported there by a
    /// `use` (often a re-export): `Name is imported there from a::Name`.
    pub note: Option<String>,
}

/// The files of one crate target and the references between them.
#[derive(Debug, Clone, Default)]
pub struct ModuleGraph {
    /// The files; index 0 is the target's root.
    pub files: Vec<FileNode>,
    /// Edges, one per ordered pair of files, sorted by (from, to).
    pub edges: Vec<Edge>,
    /// `mod` declarations whose file was not found, as `file:line-free description`.
    pub missing: Vec<String>,
}

impl ModuleGraph {
    /// Successor lists, for [`crate::cycles::tarjan`].
    pub fn adjacency(&self) -> Vec<Vec<usize>> {
        let mut adj = vec![Vec::new(); self.files.len()];
        for e in &self.edges {
            adj[e.from].push(e.to);
        }
        adj
    }
}

/// The root files of a crate's targets: `src/lib.rs`, `src/main.rs`, `src/bin/*.rs` and
/// `src/bin/*/main.rs`, those that exist.
pub fn targets(crate_dir: &Path) -> Vec<PathBuf> {
    let src = crate_dir.join("src");
    let mut out: Vec<PathBuf> = ["lib.rs", "main.rs"]
        .iter()
        .map(|f| src.join(f))
        .filter(|p| p.is_file())
        .collect();
    if let Ok(entries) = fs::read_dir(src.join("bin")) {
        let mut bins: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter_map(|p| match p.is_dir() {
                true => Some(p.join("main.rs")).filter(|m| m.is_file()),
                false => Some(p).filter(|p| p.extension().is_some_and(|e| e == "rs")),
            })
            .collect();
        bins.sort();
        out.extend(bins);
    }
    out
}

/// Builds the graph of the target rooted at `root_file`.
pub fn build(root_file: &Path) -> Result<ModuleGraph, String> {
    let canon = |p: &Path| fs::canonicalize(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut g = ModuleGraph::default();
    let mut index: HashMap<PathBuf, usize> = HashMap::new();
    let mut modules: HashMap<Vec<String>, usize> = HashMap::new();
    let mut scans: Vec<Scan> = Vec::new();
    let root = canon(root_file)?;
    index.insert(root.clone(), 0);
    modules.insert(Vec::new(), 0);
    g.files.push(FileNode {
        path: root,
        module: Vec::new(),
    });
    let mut queue = VecDeque::from([0usize]);
    while let Some(id) = queue.pop_front() {
        let path = g.files[id].path.clone();
        let module = g.files[id].module.clone();
        let src = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let s = scan(&src);
        for inline in &s.inline {
            modules.insert([module.clone(), inline.clone()].concat(), id);
        }
        for decl in &s.decls {
            let child: Vec<String> =
                [module.clone(), decl.scope.clone(), vec![decl.name.clone()]].concat();
            let Some(file) = decl_file(&path, id == 0, decl) else {
                g.missing.push(format!(
                    "{}: no file for `mod {};`",
                    path.display(),
                    child.join("::")
                ));
                continue;
            };
            let file = canon(&file)?;
            let next = g.files.len();
            let child_id = *index.entry(file.clone()).or_insert(next);
            if child_id == next {
                g.files.push(FileNode {
                    path: file,
                    module: child.clone(),
                });
                queue.push_back(child_id);
            }
            modules.insert(child, child_id);
        }
        while scans.len() <= id {
            scans.push(Scan::default());
        }
        scans[id] = s;
    }
    let mut edges: BTreeMap<(usize, usize), Edge> = BTreeMap::new();
    for (from, s) in scans.iter().enumerate() {
        for r in &s.refs {
            let Some((to, rest)) = resolve(&modules, &g.files[from].module, r) else {
                continue;
            };
            if to == from || to == 0 {
                continue;
            }
            let note = rest.first().and_then(|name| {
                let import = scans[to].imports.iter().find(|i| &i.name == name)?;
                Some(format!("`{name}` is imported there from {}", import.path))
            });
            edges.entry((from, to)).or_insert_with(|| Edge {
                from,
                to,
                line: r.line,
                via: r.segs.join("::"),
                note,
            });
        }
    }
    g.edges = edges.into_values().collect();
    Ok(g)
}

/// The file a `mod` declaration in `file` loads, if it exists.
fn decl_file(file: &Path, is_root: bool, decl: &ModDecl) -> Option<PathBuf> {
    let dir = file.parent()?;
    let mod_rs = is_root || file.file_name().is_some_and(|n| n == "mod.rs");
    let mut base = match mod_rs {
        true => dir.to_path_buf(),
        false => dir.join(file.file_stem()?),
    };
    for s in &decl.scope {
        base.push(s);
    }
    if let Some(p) = &decl.path_attr {
        let from = if decl.scope.is_empty() { dir } else { &base };
        return Some(from.join(p)).filter(|p| p.is_file());
    }
    [
        base.join(format!("{}.rs", decl.name)),
        base.join(&decl.name).join("mod.rs"),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// The file that `r`, written in a file of module `module`, resolves into (the longest prefix
/// of its absolute path that is a known module) and the segments after that prefix, when the
/// prefix is the file's own module (not an inline module inside it). `None` for paths outside
/// the crate.
pub fn resolve(
    modules: &HashMap<Vec<String>, usize>,
    module: &[String],
    r: &RawRef,
) -> Option<(usize, Vec<String>)> {
    let mut scope: Vec<String> = [module, &r.scope[..]].concat();
    let segs = &r.segs;
    let abs: Vec<String> = match segs.first()?.as_str() {
        "crate" => segs[1..].to_vec(),
        "self" => [scope, segs[1..].to_vec()].concat(),
        "super" => {
            let mut k = 0;
            while segs.get(k).is_some_and(|s| s == "super") {
                scope.pop()?;
                k += 1;
            }
            [scope, segs[k..].to_vec()].concat()
        }
        "::" => return None,
        first => {
            scope.push(first.to_string());
            if !modules.contains_key(&scope) {
                return None;
            }
            [scope, segs[1..].to_vec()].concat()
        }
    };
    let n = (0..=abs.len())
        .rev()
        .find(|&n| modules.contains_key(&abs[..n]))?;
    let file = modules[&abs[..n]];
    let own = n == 0 || modules.get(&abs[..n - 1]) != Some(&file);
    let rest = if own { abs[n..].to_vec() } else { Vec::new() };
    Some((file, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempCrate;

    #[test]
    fn resolution_and_edges() {
        let t = TempCrate::new(&[
            ("src/lib.rs", "pub mod a;\npub mod b;\npub use a::Thing;\n"),
            (
                "src/a.rs",
                "mod inner;\nuse crate::Root;\npub struct Thing;\npub fn f() { inner::g(); }\n",
            ),
            (
                "src/a/inner.rs",
                "use super::super::b::Other;\nuse super::Thing;\n",
            ),
            (
                "src/b/mod.rs",
                "#[path = \"elsewhere.rs\"]\nmod c;\npub struct Other;\npub use std::fmt::{Display as Shown, *};\nfn q() { use crate::a::Thing; }\n",
            ),
            (
                "src/b/elsewhere.rs",
                "pub fn h() { crate::a::f(); self::x(); }\nfn x() {}\nuse super::Shown;\n",
            ),
        ]);
        let g = build(&t.path("src/lib.rs")).unwrap();
        let name = |i: usize| g.files[i].module.join("::");
        let edges: Vec<(String, String, String)> = g
            .edges
            .iter()
            .map(|e| (name(e.from), name(e.to), e.via.clone()))
            .collect();
        let want = [
            ("", "a", "a::Thing"),
            ("a", "a::inner", "inner::g"),
            ("a::inner", "a", "super::Thing"),
            ("a::inner", "b", "super::super::b::Other"),
            ("b", "a", "crate::a::Thing"),
            ("b::c", "a", "crate::a::f"),
            ("b::c", "b", "super::Shown"),
        ];
        let mut got = edges.clone();
        got.sort();
        let mut want: Vec<(String, String, String)> = want
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        want.sort();
        assert_eq!(got, want);
        assert!(g.missing.is_empty(), "{:?}", g.missing);
        let notes: Vec<&str> = g.edges.iter().filter_map(|e| e.note.as_deref()).collect();
        assert_eq!(notes, ["`Shown` is imported there from std::fmt::Display"]);
    }

    #[test]
    fn missing_module_file_is_reported() {
        let t = TempCrate::new(&[("src/lib.rs", "mod gone;\n")]);
        let g = build(&t.path("src/lib.rs")).unwrap();
        assert_eq!(g.missing.len(), 1);
    }
}
