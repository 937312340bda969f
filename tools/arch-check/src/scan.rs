//! What one source file declares (`mod` items) and references (paths), read from its tokens.
//!
//! References are `use` trees (grouped ones included) and `crate::`, `self::`, `super::` and
//! child-module paths anywhere in code; comments, string literals and `#[cfg(test)]` items are
//! left out first ([`crate::source`]).

use crate::source::{self, Kind, Token};

/// A `mod name;` declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModDecl {
    /// Inline modules (`mod a { ... }`) the declaration sits in, outermost first.
    pub scope: Vec<String>,
    /// The module's name.
    pub name: String,
    /// The value of a `#[path = "..."]` attribute on it.
    pub path_attr: Option<String>,
}

/// A path written in a file, before resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRef {
    /// Inline modules the path sits in, outermost first.
    pub scope: Vec<String>,
    /// The segments as written, `$crate` read as `crate`, `self` after the first segment
    /// dropped, and `::` as the first segment for a `::`-rooted path.
    pub segs: Vec<String>,
    /// 1-based line.
    pub line: usize,
}

/// What one file declares and references.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Out-of-line module declarations.
    pub decls: Vec<ModDecl>,
    /// Inline modules, each as its path relative to the file's module.
    pub inline: Vec<Vec<String>>,
    /// Candidate module paths (resolution drops the ones that name no module).
    pub refs: Vec<RawRef>,
    /// Names that module-level `use` items of the file's own module bind (glob imports
    /// excluded), for explaining edges that only exist because of a re-export.
    pub imports: Vec<Import>,
}

/// A name bound by a module-level `use` (`use a::b::C;`, `pub use a::D as E;`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The bound name (`C`, `E`).
    pub name: String,
    /// The imported path as written (`a::b::C`, `a::D`).
    pub path: String,
}

/// Scans one file's source.
pub fn scan(src: &str) -> Scan {
    let toks = source::drop_cfg_test(source::tokenize(&source::strip(src)));
    let mut out = Scan::default();
    let mut stack: Vec<Option<String>> = Vec::new();
    let mut pending_path: Option<String> = None;
    let scope = |stack: &[Option<String>]| stack.iter().flatten().cloned().collect::<Vec<_>>();
    let at = |k: usize| toks.get(k);
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        if t.is_punct('#') {
            let inner = at(i + 1).is_some_and(|t| t.is_punct('!'));
            let open = i + 1 + usize::from(inner);
            if at(open).is_some_and(|t| t.is_punct('[')) {
                let close = source::matching(&toks, open);
                let a = &toks[open + 1..close];
                if !inner
                    && a.len() == 3
                    && a[0].is("path")
                    && a[1].is_punct('=')
                    && a[2].kind == Kind::Str
                {
                    pending_path = Some(source::string_value(src, &a[2].span));
                }
                i = close + 1;
                continue;
            }
        }
        match &t.kind {
            Kind::Ident(w) if w == "mod" => {
                if let (Some(name), Some(next)) = (at(i + 1).and_then(Token::ident), at(i + 2)) {
                    if next.is_punct(';') {
                        out.decls.push(ModDecl {
                            scope: scope(&stack),
                            name: name.to_string(),
                            path_attr: pending_path.take(),
                        });
                        i += 3;
                        continue;
                    }
                    if next.is_punct('{') {
                        let mut s = scope(&stack);
                        s.push(name.to_string());
                        out.inline.push(s);
                        stack.push(Some(name.to_string()));
                        pending_path = None;
                        i += 3;
                        continue;
                    }
                }
            }
            Kind::Ident(w) if w == "use" => {
                let mut k = i + 1;
                let mut paths = Vec::new();
                use_tree(&toks, &mut k, Vec::new(), &mut paths);
                for (segs, alias) in paths {
                    let segs = normalize(segs);
                    let glob = alias.as_deref() == Some("*");
                    if stack.is_empty() && !glob {
                        let name = alias.or_else(|| segs.last().cloned());
                        if let Some(name) = name.filter(|n| n != "_" && n != "self") {
                            out.imports.push(Import {
                                name,
                                path: segs.join("::"),
                            });
                        }
                    }
                    out.refs.push(RawRef {
                        scope: scope(&stack),
                        segs,
                        line: t.line,
                    });
                }
                while k < toks.len() && !toks[k].is_punct(';') {
                    k += 1;
                }
                i = k + 1;
                continue;
            }
            Kind::Ident(w) if starts_path(&toks, i) => {
                let mut segs = vec![w.clone()];
                let mut k = i + 1;
                while at(k).is_some_and(|t| t.kind == Kind::PathSep) {
                    match at(k + 1).and_then(Token::ident) {
                        Some(s) => segs.push(s.to_string()),
                        None => break,
                    }
                    k += 2;
                }
                out.refs.push(RawRef {
                    scope: scope(&stack),
                    segs: normalize(segs),
                    line: t.line,
                });
                i = k;
                continue;
            }
            Kind::Punct('{') => {
                stack.push(None);
                pending_path = None;
            }
            Kind::Punct('}') => {
                stack.pop();
            }
            Kind::Punct(';') => pending_path = None,
            _ => {}
        }
        i += 1;
    }
    out
}

/// Whether the identifier at `i` starts a path `a::b` (not the middle of one, not a field
/// access, not a macro metavariable other than `$crate`, not `pub(in path)`).
fn starts_path(toks: &[Token], i: usize) -> bool {
    let next_is_path = toks.get(i + 1).is_some_and(|t| t.kind == Kind::PathSep)
        && toks.get(i + 2).and_then(Token::ident).is_some();
    if !next_is_path {
        return false;
    }
    let Some(prev) = i.checked_sub(1).map(|p| &toks[p]) else {
        return true;
    };
    if prev.kind == Kind::PathSep || prev.is_punct('.') {
        return false;
    }
    if prev.is_punct('$') {
        return toks[i].is("crate");
    }
    let pub_in = prev.is("in") && i >= 2 && toks[i - 2].is_punct('(');
    !pub_in
}

/// A path a `use` names, with its `as` name (`*` for a glob import).
type UsePath = (Vec<String>, Option<String>);

/// Parses one use tree at `*i`, pushing every full path it names onto `out`.
fn use_tree(toks: &[Token], i: &mut usize, mut path: Vec<String>, out: &mut Vec<UsePath>) {
    if toks.get(*i).is_some_and(|t| t.kind == Kind::PathSep) {
        if path.is_empty() {
            path.push("::".into());
        }
        *i += 1;
    }
    while let Some(t) = toks.get(*i) {
        match &t.kind {
            Kind::Ident(s) => {
                path.push(s.clone());
                *i += 1;
                if toks.get(*i).is_some_and(|t| t.kind == Kind::PathSep) {
                    *i += 1;
                    continue;
                }
                let mut alias = None;
                if toks.get(*i).is_some_and(|t| t.is("as")) {
                    alias = toks.get(*i + 1).and_then(Token::ident).map(str::to_string);
                    *i += 2;
                }
                out.push((path, alias));
                return;
            }
            Kind::Punct('*') => {
                *i += 1;
                out.push((path, Some("*".into())));
                return;
            }
            Kind::Punct('{') => {
                *i += 1;
                while let Some(t) = toks.get(*i) {
                    if t.is_punct('}') {
                        *i += 1;
                        return;
                    }
                    if t.is_punct(',') {
                        *i += 1;
                        continue;
                    }
                    let before = *i;
                    use_tree(toks, i, path.clone(), out);
                    if *i == before {
                        *i += 1;
                    }
                }
                return;
            }
            _ => return,
        }
    }
}

fn normalize(segs: Vec<String>) -> Vec<String> {
    segs.into_iter()
        .enumerate()
        .filter(|(k, s)| *k == 0 || s != "self")
        .map(|(_, s)| if s == "$crate" { "crate".into() } else { s })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(src: &str) -> Vec<String> {
        scan(src).refs.iter().map(|r| r.segs.join("::")).collect()
    }

    #[test]
    fn grouped_use_trees() {
        let got = paths("use crate::{a::x, b::{y, z as w, self}, c::*};\nuse ::std::io;");
        assert_eq!(
            got,
            [
                "crate::a::x",
                "crate::b::y",
                "crate::b::z",
                "crate::b",
                "crate::c",
                "::::std::io"
            ]
        );
    }

    #[test]
    fn inline_paths_not_in_comments_or_strings() {
        let src = "fn f() {\n // crate::a::x\n let s = \"crate::b\"; let r = r#\"super::c\"#;\n crate::d::g(); super::super::e::h(); x.y::<T>(); Vec::<u8>::new(); $crate::m::n!(); }";
        assert_eq!(
            paths(src),
            ["crate::d::g", "super::super::e::h", "crate::m::n"]
        );
        assert_eq!(scan(src).refs[0].line, 4);
    }

    #[test]
    fn cfg_test_modules_and_pub_in_are_skipped() {
        let src = "pub(in crate::a) fn f() {}\n#[cfg(test)]\nmod tests { use super::*; use crate::b; }\nuse crate::c;";
        assert_eq!(paths(src), ["crate::c"]);
    }

    #[test]
    fn mod_declarations_inline_and_path() {
        let s = scan("mod a;\n#[path = \"x/y.rs\"]\npub mod b;\nmod c { pub mod d; use super::a; }\n#[cfg(test)]\nmod e;");
        let decls: Vec<(Vec<String>, &str, Option<&str>)> = s
            .decls
            .iter()
            .map(|d| (d.scope.clone(), d.name.as_str(), d.path_attr.as_deref()))
            .collect();
        assert_eq!(
            decls,
            [
                (vec![], "a", None),
                (vec![], "b", Some("x/y.rs")),
                (vec!["c".to_string()], "d", None)
            ]
        );
        assert_eq!(s.inline, [vec!["c".to_string()]]);
        assert_eq!(s.refs[0].scope, ["c"]);
    }

    #[test]
    fn module_level_imports() {
        let s = scan("pub use a::{B, c::D as E, f::*, g::{self}};\nfn h() { use x::Y; }\nmod m { use z::W; }");
        let got: Vec<(&str, &str)> = s
            .imports
            .iter()
            .map(|i| (i.name.as_str(), i.path.as_str()))
            .collect();
        assert_eq!(got, [("B", "a::B"), ("E", "a::c::D"), ("g", "a::g")]);
    }
}
