//! Rule 1: no import cycle between the files of a crate, except those listed with a reason in
//! [`rules::CYCLE_EXCEPTIONS`].
//!
//! Rule 2 (no cycle between crates) needs no check: Cargo rejects a cycle of normal
//! dependencies between packages, and a dev-dependency cycle cannot reach a library build.

use std::path::Path;

use crate::{modules, rules, workspace};

/// The strongly connected components of a graph given as successor lists (Tarjan's
/// algorithm, iterative). Each component is sorted; components come in reverse topological
/// order.
pub fn tarjan(adj: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = adj.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    let mut next = 0;
    for start in 0..n {
        if index[start] != usize::MAX {
            continue;
        }
        // (node, how many successors already visited)
        let mut call = vec![(start, 0usize)];
        index[start] = next;
        low[start] = next;
        next += 1;
        stack.push(start);
        on_stack[start] = true;
        while let Some(&mut (v, ref mut k)) = call.last_mut() {
            if let Some(&w) = adj[v].get(*k) {
                *k += 1;
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    call.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            call.pop();
            if let Some(&(parent, _)) = call.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut comp = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp.push(w);
                    if w == v {
                        break;
                    }
                }
                comp.sort_unstable();
                out.push(comp);
            }
        }
    }
    out
}

/// One file-level cycle: its files (workspace-relative, sorted) and a printable description.
#[derive(Debug, Clone)]
pub struct Cycle {
    /// The files of the component.
    pub files: Vec<String>,
    /// Where it was found and the edges inside it, one per line.
    pub description: String,
}

/// Every cycle of more than one file in every target of every member crate, plus `mod`
/// declarations whose file was not found (as errors in the second list).
pub fn find(root: &Path) -> Result<(Vec<Cycle>, Vec<String>), String> {
    let mut cycles = Vec::new();
    let mut missing = Vec::new();
    for member in workspace::members(root)? {
        for target in modules::targets(&member.dir) {
            let g = modules::build(&target)?;
            let name = |i: usize| workspace::display(root, &g.files[i].path);
            missing.extend(g.missing.iter().cloned());
            for comp in tarjan(&g.adjacency()) {
                if comp.len() < 2 {
                    continue;
                }
                let mut files: Vec<String> = comp.iter().map(|&i| name(i)).collect();
                files.sort();
                let mut description = format!(
                    "cycle of {} files in crate `{}` (target {}):",
                    comp.len(),
                    member.rel,
                    workspace::display(root, &target)
                );
                let mut lines: Vec<String> = g
                    .edges
                    .iter()
                    .filter(|e| comp.contains(&e.from) && comp.contains(&e.to))
                    .map(|e| {
                        let note = e.note.as_ref().map_or(String::new(), |n| format!("; {n}"));
                        format!(
                            "\n    {} -> {}  (line {}: {}{note})",
                            name(e.from),
                            name(e.to),
                            e.line,
                            e.via
                        )
                    })
                    .collect();
                lines.sort();
                description.extend(lines);
                cycles.push(Cycle { files, description });
            }
        }
    }
    Ok((cycles, missing))
}

/// Rule 1's violations: cycles not in [`rules::CYCLE_EXCEPTIONS`], exceptions that match no
/// cycle any more, and `mod` declarations the checker could not follow.
pub fn check(root: &Path) -> Result<Vec<String>, String> {
    let (cycles, missing) = find(root)?;
    let mut out = Vec::new();
    let excepted = |c: &Cycle| {
        rules::CYCLE_EXCEPTIONS.iter().any(|x| {
            let mut files: Vec<&str> = x.files.to_vec();
            files.sort_unstable();
            files == c.files
        })
    };
    for c in &cycles {
        if !excepted(c) {
            out.push(c.description.clone());
        }
    }
    for x in rules::CYCLE_EXCEPTIONS {
        let mut files: Vec<&str> = x.files.to_vec();
        files.sort_unstable();
        if !cycles.iter().any(|c| c.files == files) {
            out.push(format!(
                "stale exception in rules.rs (no such cycle now): {:?} ({})",
                x.files, x.reason
            ));
        }
    }
    out.extend(missing);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempCrate;

    #[test]
    fn three_cycle_and_a_tail() {
        // 0 -> 1 -> 2 -> 0, 2 -> 3, 4 -> 4 (a self-loop is a one-node component).
        let adj = vec![vec![1], vec![2], vec![0, 3], vec![], vec![4]];
        let mut comps = tarjan(&adj);
        comps.sort();
        assert_eq!(comps, vec![vec![0, 1, 2], vec![3], vec![4]]);
    }

    #[test]
    fn two_separate_cycles() {
        let adj = vec![vec![1], vec![0, 2], vec![3], vec![2]];
        let mut comps = tarjan(&adj);
        comps.sort();
        assert_eq!(comps, vec![vec![0, 1], vec![2, 3]]);
    }

    #[test]
    fn cycles_across_files_of_a_workspace() {
        let t = TempCrate::new(&[
            (
                "Cargo.toml",
                "[package]\nname = \"x\"\n[workspace]\nmembers = [\"tools/skipme\"]\n",
            ),
            ("src/lib.rs", "mod a;\nmod b;\nmod c;\nmod d;\n"),
            ("src/a.rs", "use crate::b::B;\npub struct A;\n"),
            ("src/b.rs", "pub struct B(crate::c::C);\n"),
            (
                "src/c.rs",
                "pub struct C;\nfn f() -> super::a::A { todo!() }\n#[cfg(test)]\nmod tests { use crate::d::D; }\n",
            ),
            ("src/d.rs", "use crate::a::A;\npub struct D;\n"),
            ("tools/skipme/Cargo.toml", "[package]\nname = \"s\"\n"),
            ("tools/skipme/src/lib.rs", "mod p;\n"),
        ]);
        let (cycles, missing) = find(t.root()).unwrap();
        assert_eq!(cycles.len(), 1, "{cycles:?}");
        assert_eq!(cycles[0].files, ["src/a.rs", "src/b.rs", "src/c.rs"]);
        assert!(cycles[0]
            .description
            .contains("src/c.rs -> src/a.rs  (line 2: super::a::A)"));
        assert!(missing.is_empty());
    }
}
